//! Reading stored customer results page by page for a filtered view: a page of the
//! console costs the same whatever the partner's size, because one request reads
//! at most [`SCAN_BUDGET`] stored results and then offers "more" with a cursor.

use super::page::ConsoleError;
use crate::store::{MAX_PAGE, Page, Store, StoreResult};
use crate::sync::report::CustomerReport;

/// Rows per page of a filtered list.
pub const ROWS: usize = 50;
/// At most this many stored results are read for one page.
pub const SCAN_BUDGET: usize = 5_000;

/// One page of a filtered list: the rows, the cursor to continue from (None: the
/// end), and how many stored results were read.
pub struct Scan {
    pub rows: Vec<CustomerReport>,
    pub next: Option<String>,
    pub scanned: usize,
}

/// Which stored results to read.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Each customer's latest result.
    Statuses,
    /// The customers of one run.
    Run(&'a str),
}

impl Source<'_> {
    /// One page of `(tenant id, stored report)` in tenant-id order.
    async fn page(
        self,
        store: &dyn Store,
        after: Option<&str>,
    ) -> StoreResult<Page<(String, serde_json::Value)>> {
        Ok(match self {
            Source::Statuses => {
                let page = store.list_customer_statuses(MAX_PAGE, after).await?;
                Page {
                    items: page
                        .items
                        .into_iter()
                        .map(|s| (s.tenant_id, s.report))
                        .collect(),
                    next: page.next,
                }
            }
            Source::Run(run_id) => {
                let page = store.list_run_customers(run_id, MAX_PAGE, after).await?;
                Page {
                    items: page
                        .items
                        .into_iter()
                        .map(|c| (c.tenant_id, c.report))
                        .collect(),
                    next: page.next,
                }
            }
        })
    }
}

/// Reads `source` page by page from `after` until [`ROWS`] reports pass `keep` or
/// the budget is spent. A stored report that cannot be read is logged and left
/// out, never guessed at.
pub async fn scan_reports(
    store: &dyn Store,
    source: Source<'_>,
    keep: impl Fn(&CustomerReport) -> bool,
    after: Option<&str>,
) -> Result<Scan, ConsoleError> {
    let mut rows = Vec::new();
    let mut cursor = after.map(str::to_owned);
    let mut scanned = 0;
    loop {
        let page = source.page(store, cursor.as_deref()).await?;
        let mut stopped_at = None;
        for (tenant_id, report) in &page.items {
            scanned += 1;
            if let Some(report) = decode(tenant_id, report) {
                if keep(&report) {
                    rows.push(report);
                }
            }
            if rows.len() == ROWS {
                stopped_at = Some(tenant_id.clone());
                break;
            }
        }
        if let Some(last) = stopped_at {
            // Full: more may follow unless this was the very last result.
            let more = page.next.is_some() || page.items.last().map(|(t, _)| t) != Some(&last);
            return Ok(Scan {
                rows,
                next: more.then_some(last),
                scanned,
            });
        }
        match page.next {
            Some(next) if scanned < SCAN_BUDGET => cursor = Some(next),
            next => {
                return Ok(Scan {
                    rows,
                    next,
                    scanned,
                });
            }
        }
    }
}

fn decode(tenant_id: &str, report: &serde_json::Value) -> Option<CustomerReport> {
    serde_json::from_value(report.clone())
        .inspect_err(|e| tracing::warn!(tenant_id, error = %e, "console: a stored customer result is unreadable"))
        .ok()
}
