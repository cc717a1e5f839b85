//! The usage drop guard: a usage report that lists far fewer customers than the
//! last comparable run did is more often incomplete (the first days of a month,
//! a fault on Sophos' side) than true, so a run that meets one lowers no
//! quantity (see `plan::lowered_to`) and says why. Decided once per run, before
//! any customer, and carried over to the run's later invocations.
//!
//! Memory stays bounded for any partner size: the set of tenants with usage now
//! is at most the Sophos tenant list the run holds already; the compared run's
//! customers are read a page at a time and only counted; at most
//! [`RUNS_READ`] run records are read to find the run to compare with.

use super::{Ctx, Reads};
use crate::store::{MAX_PAGE, RunRecord, StoreError, StoreResult};
use crate::sync::plan::{self, UsageDrop};
use crate::sync::report::{CustomerReport, RunReport, Warning};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

/// The most run records read to find the run to compare with (latest first).
const RUNS_READ: usize = 100;
/// Run records read per call.
const RUNS_PAGE: usize = 50;

impl Ctx<'_> {
    /// Counts the customers with usage into the report and decides whether this
    /// run may lower quantities (`lowering_held`).
    pub(super) async fn guard_usage(
        &self,
        reads: &Reads,
        report: &mut RunReport,
    ) -> StoreResult<()> {
        if self.decided_before(report) {
            return Ok(());
        }
        // A month without usage data changes nothing anyway: nothing to count.
        let Some(usage) = &reads.usage else {
            return Ok(());
        };
        let now = plan::customers_with_usage(&reads.tenants, usage, &self.engine.settings.products);
        report.customers_with_usage = Some(now.len() as u64);
        let guard = self.engine.settings.usage_drop_guard;
        if guard <= 0.0 || self.opts.accept_usage_drop {
            return Ok(());
        }
        let Some(compared) = self.compared_run().await? else {
            return Ok(()); // the first run (of this month and the one before): nothing to compare
        };
        let drop = self.usage_drop(&compared.run_id, &now).await?;
        if !drop.exceeds(guard) {
            return Ok(());
        }
        tracing::warn!(
            run_id = %self.opts.run_id,
            compared = %compared.run_id,
            previous = drop.previous,
            missing = drop.missing,
            "the usage report shrank past usageDropGuard: no quantity is lowered in this run"
        );
        report.usage_drop_guarded = true;
        report.warn(Warning::usage_report_shrank(
            now.len() as u64,
            drop.previous,
            drop.missing,
            &compared.run_id,
            guard,
        ));
        self.lowering_held.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// A resumed invocation keeps the decision its run's first invocation made
    /// (carried in the report): the usage or the runs stored meanwhile must not
    /// give a different answer halfway through the customers.
    fn decided_before(&self, report: &RunReport) -> bool {
        let decided = self
            .opts
            .resume
            .as_ref()
            .is_some_and(|previous| previous.customers_with_usage.is_some());
        if decided {
            self.lowering_held
                .store(report.usage_drop_guarded, Ordering::SeqCst);
        }
        decided
    }

    /// The latest comparable run (`plan::comparable_run`) of this run's month or,
    /// when this month has none, of the month before; at most [`RUNS_READ`]
    /// records read, latest first.
    async fn compared_run(&self) -> StoreResult<Option<RunRecord>> {
        let store = self.engine.store;
        let month = self.opts.month.to_string();
        let month_before = self.opts.month.previous().to_string();
        let mut fallback: Option<RunRecord> = None;
        let mut before: Option<String> = None;
        let mut read = 0;
        while read < RUNS_READ {
            let page = store.list_runs(RUNS_PAGE, before.as_deref()).await?;
            let last_page = page.len() < RUNS_PAGE;
            read += page.len();
            before = page.last().map(|r| r.run_id.clone());
            for r in page
                .into_iter()
                .filter(|r| plan::comparable_run(r, &self.opts.run_id))
            {
                if r.month == month {
                    return Ok(Some(r));
                }
                if r.month == month_before && fallback.is_none() {
                    fallback = Some(r);
                }
            }
            if last_page || before.is_none() {
                break;
            }
        }
        Ok(fallback)
    }

    /// Reads the compared run's customers a page at a time and counts which of
    /// those with usage then have none now.
    async fn usage_drop(&self, run_id: &str, now: &BTreeSet<String>) -> StoreResult<UsageDrop> {
        let store = self.engine.store;
        let mut drop = UsageDrop::default();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_run_customers(run_id, MAX_PAGE, after.as_deref())
                .await?;
            for stored in page.items {
                let c: CustomerReport = serde_json::from_value(stored.report).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the result of customer {} in run {run_id} (compared by the usage drop guard): {e}",
                        stored.tenant_id
                    ))
                })?;
                drop.count(&c, now);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(drop),
            }
        }
    }
}
