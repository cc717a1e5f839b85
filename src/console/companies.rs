//! ConnectWise's companies for the mapping suggestions, read once and kept a few
//! minutes (a mapping session looks at many customers against the same list).

use tokio::sync::Mutex;

#[derive(Default)]
#[allow(dead_code)]
pub struct CompanyCache {
    pub(crate) cached: Mutex<
        Option<(
            tokio::time::Instant,
            std::sync::Arc<Vec<crate::connectwise::model::Company>>,
        )>,
    >,
}
