//! View helpers more than one page uses (quantities, product actions, links to
//! held changes, the open-changes count), kept here so that pages import this
//! module and not one another.

use crate::console::page::{self, ConsoleError};
use crate::store::Store;
use crate::sync::report::{ProductAction, ProductReport};

/// The review page.
pub const REVIEW_PATH: &str = "/console/review";
/// Store reads for one count or page at most (a filtered DynamoDB page may come
/// back short).
pub const READS: usize = 20;

/// A quantity as a person reads it: whole numbers without decimals, "–" for none.
pub fn qty(q: Option<f64>) -> String {
    match q {
        None => "–".into(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v}"),
    }
}

/// The held change of a product held or rejected in review: (id, its review link).
pub fn held_link(p: &ProductReport) -> Option<(String, String)> {
    p.held_change_id
        .as_ref()
        .map(|id| (id.clone(), change_link(id)))
}

pub fn action_name(a: ProductAction) -> &'static str {
    match a {
        ProductAction::Create => "created",
        ProductAction::Update => "updated",
        ProductAction::Unchanged => "unchanged",
        ProductAction::Zero => "set to zero",
        ProductAction::Cancel => "cancelled",
        ProductAction::Adopt => "adopted",
        ProductAction::Skip => "skipped",
        ProductAction::Hold => "held for review",
        ProductAction::Rejected => "rejected in review",
        ProductAction::Guarded => "not lowered: the usage report shrank",
    }
}

/// The link to one held change on the review page.
pub fn change_link(id: &str) -> String {
    format!("{REVIEW_PATH}?id={}", page::encode(id))
}

/// The open held changes, counted by the store (the home page's banner asks on
/// every view, so nothing is read back).
pub async fn count_open(store: &dyn Store) -> Result<u64, ConsoleError> {
    Ok(store.count_open_held_changes().await?)
}
