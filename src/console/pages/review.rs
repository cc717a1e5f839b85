//! Changes held for review: grouped by customer, each with ConnectWise's quantity
//! against the proposal, the rule and its reason, the usage lines behind it and the
//! run that proposed it; approve or reject one, or approve the selected ones (one
//! plain form, no script needed), optionally starting a sync right after. Every
//! decision goes through `sync::review::decide` (the CLI's and the API's too).

use crate::app::StartOutcome;
use crate::config::operators::Role;
use crate::console::page::{
    self, Authed, ConsoleError, Layout, SignedForm, query_get, query_pairs, render, see_other,
    wire_name,
};
use crate::console::pages::runs::{request_sync, run_link};
use crate::console::pages::view::{self, qty};
use crate::domain::month::Month;
use crate::state::Web;
use crate::store::{HeldChange, HeldStatus, MAX_HELD_IDS, Store};
use crate::sync::review::{Decision, DecisionOutcome, decide};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;

const PATH: &str = view::REVIEW_PATH;

pub fn routes() -> Router<Web> {
    // The page: every role. Approving and rejecting (and the sync after
    // approving): approver.
    Router::new().route(PATH, get(review_page).post(decide_form))
}

/// Held changes per page.
const ROWS: usize = 50;
/// Store reads for one page at most (a filtered DynamoDB page may come back short).
const READS: usize = view::READS;
/// Changes one "Approve selected" decides at most (a page shows [`ROWS`]).
const MAX_SELECTED: usize = 2 * ROWS;
/// Ids named in a flash message at most.
const FLASH_IDS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum View {
    /// Held or approved: what still waits.
    Open,
    /// Every status, decided and over ones too.
    All,
}

impl View {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ConsoleError> {
        match query_get(pairs, "view") {
            None | Some("open") => Ok(View::Open),
            Some("all") => Ok(View::All),
            Some(other) => Err(ConsoleError::BadRequest(format!(
                "there is no review view {other:?}: use view=open (the default) or view=all"
            ))),
        }
    }

    fn word(self) -> &'static str {
        match self {
            View::Open => "open",
            View::All => "all",
        }
    }

    fn link(self, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if self == View::All {
            pairs.push(("view", "all"));
        }
        if let Some(a) = after {
            pairs.push(("after", a));
        }
        match serde_urlencoded::to_string(&pairs).unwrap_or_default() {
            qs if qs.is_empty() => PATH.to_owned(),
            qs => format!("{PATH}?{qs}"),
        }
    }
}

/// One customer's (and month's) held changes.
pub struct Group {
    pub month: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub company: String,
    pub agreement_id: i64,
    pub rows: Vec<Row>,
}

pub struct Row {
    pub id: String,
    pub identifier: String,
    pub op: String,
    pub current: String,
    pub proposed: String,
    pub difference: String,
    pub rule: String,
    pub reason: String,
    pub lines: Vec<Line>,
    pub lines_omitted: u64,
    pub status: String,
    pub run_id: String,
    pub run_link: String,
    pub decided: Option<String>,
    pub note: Option<String>,
    pub can_approve: bool,
    pub can_reject: bool,
}

pub struct Line {
    pub code: String,
    pub description: String,
    pub quantity: String,
}

fn row(h: &HeldChange) -> Row {
    let diff = h.proposed_quantity - h.current_quantity;
    Row {
        id: h.id.clone(),
        identifier: h.identifier.clone(),
        op: wire_name(&h.op),
        current: qty(Some(h.current_quantity)),
        proposed: qty(Some(h.proposed_quantity)),
        difference: if diff > 0.0 {
            format!("+{}", qty(Some(diff)))
        } else {
            qty(Some(diff))
        },
        rule: wire_name(&h.rule),
        reason: h.reason.clone(),
        lines: h
            .usage_lines
            .iter()
            .map(|l| Line {
                code: l
                    .product_code
                    .clone()
                    .or_else(|| l.sku.clone())
                    .unwrap_or_else(|| "–".into()),
                description: l.product_description.clone().unwrap_or_default(),
                quantity: qty(Some(l.quantity)),
            })
            .collect(),
        lines_omitted: h.usage_lines_omitted,
        status: wire_name(&h.status),
        run_id: h.run_id.clone(),
        run_link: run_link(&h.run_id),
        decided: h.decided_by.as_ref().map(|by| match h.decided_at {
            Some(at) => format!("{by}, {}", at.format("%Y-%m-%d %H:%M UTC")),
            None => by.clone(),
        }),
        note: h.note.clone(),
        can_approve: matches!(h.status, HeldStatus::Held | HeldStatus::Rejected),
        can_reject: matches!(h.status, HeldStatus::Held | HeldStatus::Approved),
    }
}

/// Groups changes by month and customer, keeping the store's order of months
/// (latest first) and putting customers in name order within a month.
fn groups(mut changes: Vec<HeldChange>) -> Vec<Group> {
    changes.sort_by(|a, b| {
        b.month
            .cmp(&a.month)
            .then_with(|| a.tenant_name.cmp(&b.tenant_name))
            .then_with(|| a.tenant_id.cmp(&b.tenant_id))
            .then_with(|| a.agreement_id.cmp(&b.agreement_id))
            .then_with(|| a.identifier.cmp(&b.identifier))
    });
    let mut out: Vec<Group> = Vec::new();
    for h in &changes {
        let same = out.last().is_some_and(|g| {
            g.month == h.month && g.tenant_id == h.tenant_id && g.agreement_id == h.agreement_id
        });
        if !same {
            out.push(Group {
                month: h.month.clone(),
                tenant_id: h.tenant_id.clone(),
                tenant_name: h.tenant_name.clone(),
                company: h.company_identifier.clone().unwrap_or_else(|| {
                    h.company_id
                        .map_or_else(|| "–".into(), |id| format!("company #{id}"))
                }),
                agreement_id: h.agreement_id,
                rows: Vec::new(),
            });
        }
        if let Some(g) = out.last_mut() {
            g.rows.push(row(h));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    layout: Layout,
    view: &'static str,
    /// Showing one change (`?id=`), not a list.
    single: bool,
    groups: Vec<Group>,
    selectable: bool,
    next_link: Option<String>,
    flash: Option<Flash>,
}

/// What the last decision did, from the redirect's query string (counts, ids and a
/// run id only: no free text from the address reaches the page).
pub struct Flash {
    pub text: String,
    pub refused: Vec<String>,
    pub run_id: Option<String>,
    pub busy: bool,
}

fn flash(pairs: &[(String, String)]) -> Option<Flash> {
    let verb = match query_get(pairs, "done")? {
        "approve" => "Approved",
        "reject" => "Rejected",
        _ => return None,
    };
    let n: usize = query_get(pairs, "n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let noun = if n == 1 { "change" } else { "changes" };
    let mut text = format!("{verb} {n} {noun}.");
    let busy = query_get(pairs, "busy").is_some();
    if verb == "Approved" && n > 0 {
        text.push_str(if query_get(pairs, "run").is_some() && !busy {
            " A sync was requested to write them now."
        } else {
            " The next sync of their month writes them."
        });
    }
    if verb == "Rejected" && n > 0 {
        text.push_str(" These proposals are not made again this month.");
    }
    let refused = pairs
        .iter()
        .filter(|(k, _)| k == "refused")
        .map(|(_, v)| v.clone())
        .take(FLASH_IDS)
        .collect();
    Some(Flash {
        text,
        refused,
        run_id: query_get(pairs, "run").map(str::to_owned),
        busy,
    })
}

async fn review_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let pairs = query_pairs(&uri)?;
    let view = View::parse(&pairs)?;
    let store = web.app.store.as_ref();
    let (changes, next, single) = if let Some(id) = query_get(&pairs, "id") {
        let Some(change) = store.get_held_change(id).await? else {
            return Err(ConsoleError::NotFound(format!(
                "no held change has the id {id:?}; it may have expired: see the review page's All view"
            )));
        };
        (vec![change], None, true)
    } else {
        let mut changes = Vec::new();
        let mut after = query_get(&pairs, "after").map(str::to_owned);
        let mut next = None;
        for _ in 0..READS {
            let page = store
                .list_held_changes(view == View::Open, ROWS - changes.len(), after.as_deref())
                .await?;
            changes.extend(page.items);
            next = page.next;
            match &next {
                Some(n) if changes.len() < ROWS => after = Some(n.clone()),
                _ => break,
            }
        }
        (changes, next, false)
    };
    let selectable = changes
        .iter()
        .any(|h| matches!(h.status, HeldStatus::Held | HeldStatus::Rejected));
    Ok(render(&ReviewPage {
        layout: authed.layout("review"),
        view: view.word(),
        single,
        groups: groups(changes),
        selectable,
        next_link: next.as_deref().map(|n| view.link(Some(n))),
        flash: flash(&pairs),
    }))
}

/// The form's one decision: a row's button (`act=approve:<id>` / `reject:<id>`)
/// or "Approve selected" (`act=approve-selected` with the checked `id`s).
fn what(form: &page::Form) -> Result<(Decision, Vec<String>), ConsoleError> {
    let act = form.required("act", "decision (use the Approve or Reject buttons)")?;
    if act == "approve-selected" {
        let ids: Vec<String> = form
            .all("id")
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Err(ConsoleError::BadRequest(
                "no change is selected: tick the boxes of the changes to approve, then press Approve selected".into(),
            ));
        }
        if ids.len() > MAX_SELECTED {
            return Err(ConsoleError::BadRequest(format!(
                "{} changes are selected; approve at most {MAX_SELECTED} at once (a page lists {ROWS})",
                ids.len()
            )));
        }
        return Ok((Decision::Approve, ids));
    }
    let (verb, id) = act.split_once(':').unwrap_or((act, ""));
    let decision = match verb {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => {
            return Err(ConsoleError::BadRequest(format!(
                "there is no review decision {verb:?}: use the Approve or Reject buttons"
            )));
        }
    };
    if id.trim().is_empty() {
        return Err(ConsoleError::BadRequest(
            "the decision names no held change: use the buttons of a change's row".into(),
        ));
    }
    Ok((decision, vec![id.trim().to_owned()]))
}

async fn decide_form(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Approver, "approve or reject held changes")?;
    let (decision, ids) = what(&form)?;
    let sync = decision == Decision::Approve && form.get("sync").is_some_and(|v| !v.is_empty());
    let back = match form.get("view") {
        Some("all") => View::All,
        _ => View::Open,
    };
    let store = web.app.store.as_ref();
    let outcomes = decide(store, &ids, decision, &authed.actor()).await?;
    let (decided, refused): (Vec<&DecisionOutcome>, Vec<&DecisionOutcome>) =
        outcomes.iter().partition(|o| o.ok());
    if decided.is_empty() {
        return Err(refusal(store, &refused).await?);
    }
    let mut pairs: Vec<(String, String)> = vec![
        ("done".into(), wire_name(&decision)),
        ("n".into(), decided.len().to_string()),
    ];
    if back == View::All {
        pairs.push(("view".into(), "all".into()));
    }
    for o in refused.iter().take(FLASH_IDS) {
        pairs.push(("refused".into(), o.id.clone()));
    }
    if sync {
        // The latest month among the approved ones (a run of another month would be
        // a second run: the next run of that month writes it).
        let month = decided
            .iter()
            .filter_map(|o| o.change.as_ref())
            .filter(|c| c.status == HeldStatus::Approved)
            .map(|c| c.month.clone())
            .max();
        if let Some(month) = month {
            let month = month.parse::<Month>().ok();
            match request_sync(&web, &authed, month, false, false).await? {
                StartOutcome::Started { run_id } => pairs.push(("run".into(), run_id)),
                StartOutcome::Busy { run_id } => {
                    pairs.push(("run".into(), run_id));
                    pairs.push(("busy".into(), "1".into()));
                }
                // The banner of every page says the sync is paused; the approvals
                // wait for the first run after it is resumed.
                StartOutcome::Paused { .. } => {}
            }
        }
    }
    let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    Ok(see_other(&format!("{PATH}?{qs}")))
}

/// Nothing was decided: 404 when an id is unknown, else 409 (applied, closed or
/// changing under a run), with the reasons.
async fn refusal(
    store: &dyn Store,
    refused: &[&DecisionOutcome],
) -> Result<ConsoleError, ConsoleError> {
    let ids: Vec<String> = refused
        .iter()
        .map(|o| o.id.clone())
        .take(MAX_HELD_IDS)
        .collect();
    let known = store.get_held_changes(&ids).await?;
    let reasons: Vec<String> = refused
        .iter()
        .filter_map(|o| o.error.clone())
        .take(FLASH_IDS)
        .collect();
    let message = format!(
        "nothing was decided: {}. Reload the review page to see where each change stands.",
        reasons.join("; ")
    );
    Ok(if known.len() < ids.len() {
        ConsoleError::NotFound(message)
    } else {
        ConsoleError::Conflict(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn the_flash_is_made_of_counts_and_ids_only() {
        let f = flash(&pairs("done=approve&n=2&refused=2026-11-aa&run=r1")).unwrap();
        assert_eq!(
            f.text,
            "Approved 2 changes. A sync was requested to write them now."
        );
        assert_eq!(f.refused, vec!["2026-11-aa".to_owned()]);
        assert_eq!(f.run_id.as_deref(), Some("r1"));
        assert!(!f.busy);
        let f = flash(&pairs("done=approve&n=1&run=r1&busy=1")).unwrap();
        assert_eq!(
            f.text,
            "Approved 1 change. The next sync of their month writes them."
        );
        assert!(f.busy);
        let f = flash(&pairs("done=reject&n=1")).unwrap();
        assert!(f.text.starts_with("Rejected 1 change."), "{}", f.text);
        assert!(flash(&pairs("done=<script>&n=1")).is_none());
        assert!(flash(&pairs("n=1")).is_none());
    }

    #[test]
    fn views_parse_and_link() {
        assert_eq!(View::parse(&pairs("")).unwrap(), View::Open);
        assert_eq!(View::parse(&pairs("view=all")).unwrap(), View::All);
        assert!(View::parse(&pairs("view=nope")).is_err());
        assert_eq!(
            View::All.link(Some("2026-11-a b")),
            format!("{PATH}?view=all&after=2026-11-a+b")
        );
        assert_eq!(View::Open.link(None), PATH);
    }
}
