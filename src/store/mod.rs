//! The `Store` port: everything the service remembers between cycles.
//!
//! Two adapters implement it: [`sqlite::SqliteStore`] (one local file, the default
//! for the CLI) and [`dynamodb::DynamoStore`] (one table, for the Lambda). Both pass
//! the same conformance suite (`tests/store_conformance.rs`). Records are plain serde
//! structs ([`records`]) so the adapters stay thin: they store keys plus a JSON body.

pub mod dynamodb;
pub mod records;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use records::*;

/// What an audited change does to the remembered additions
/// ([`Store::audit_addition`]).
#[derive(Debug, Clone, Copy)]
pub enum AdditionChange<'a> {
    /// Remember the addition as it now stands (a put replaces the previous record).
    Remember(&'a AdditionRecord),
    /// Forget the tenant's addition of this product.
    Forget {
        tenant_id: &'a str,
        identifier: &'a str,
    },
}

/// Why a store call failed. `Unavailable` is worth retrying; the others are not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store holds a record it cannot read ({0}); fix or delete that record")]
    Corrupt(String),
    #[error("the store is misconfigured: {0}")]
    Config(String),
    /// The store refused a record as it is (e.g. DynamoDB's 400 KB item limit):
    /// retrying the same write will not help.
    #[error("the store rejected a write: {0}")]
    Rejected(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The largest page a paged list returns: small enough for one DynamoDB query page
/// and one API response (API Gateway answers at most 6 MB).
pub const MAX_PAGE: usize = 500;

/// The most ids one [`Store::get_held_changes`] call takes (DynamoDB's
/// BatchGetItem takes 100 keys).
pub const MAX_HELD_IDS: usize = 100;

/// How many records of the kinds that grow with the partner an adapter has read
/// (bodies decoded), since it was opened: lets tests show that a resumed run or a
/// console page reads a bounded number of them, not how long it took.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Run customer results read with their bodies (`list_run_customers`).
    pub run_customers: AtomicU64,
}

impl ReadCounters {
    pub fn run_customers(&self) -> u64 {
        self.run_customers.load(Ordering::Relaxed)
    }
    pub(crate) fn read_run_customers(&self, n: usize) {
        self.run_customers.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// `limit` brought into 1..=[`MAX_PAGE`].
pub fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

#[async_trait]
pub trait Store: Send + Sync {
    // --- settings (one document) ---
    async fn get_settings(&self) -> StoreResult<Option<crate::config::Settings>>;
    async fn put_settings(&self, settings: &crate::config::Settings) -> StoreResult<()>;

    // --- tenant -> company/agreement mappings (manual, discovered, ignored) ---
    async fn get_mapping(&self, tenant_id: &str) -> StoreResult<Option<Mapping>>;
    async fn list_mappings(&self) -> StoreResult<Vec<Mapping>>;
    async fn put_mapping(&self, mapping: &Mapping) -> StoreResult<()>;
    /// Returns whether a mapping existed.
    async fn delete_mapping(&self, tenant_id: &str) -> StoreResult<bool>;

    // --- remembered ConnectWise ids ---
    async fn list_catalog_items(&self) -> StoreResult<Vec<CatalogRecord>>;
    async fn put_catalog_item(&self, record: &CatalogRecord) -> StoreResult<()>;
    async fn list_additions(&self) -> StoreResult<Vec<AdditionRecord>>;
    /// One tenant's remembered additions. A cycle reads them as it syncs that
    /// customer, so it never holds a large partner's records whole.
    async fn list_additions_of(&self, tenant_id: &str) -> StoreResult<Vec<AdditionRecord>>;
    /// Keyed by (tenant_id, identifier); a put replaces the previous record.
    async fn put_addition(&self, record: &AdditionRecord) -> StoreResult<()>;
    async fn delete_addition(&self, tenant_id: &str, identifier: &str) -> StoreResult<()>;
    /// Puts `entry` on the audit trail and applies `change` to the remembered
    /// additions. The trail is never behind the store's memory: the entry lands
    /// first (DynamoDB: two requests) or both land at once (SQLite: one
    /// transaction, half the commits).
    async fn audit_addition(
        &self,
        entry: &AuditEntry,
        change: AdditionChange<'_>,
    ) -> StoreResult<()> {
        self.append_audit(entry).await?;
        match change {
            AdditionChange::Remember(record) => self.put_addition(record).await,
            AdditionChange::Forget {
                tenant_id,
                identifier,
            } => self.delete_addition(tenant_id, identifier).await,
        }
    }

    // --- per-customer status of the latest (non-dry) run, keyed by tenant_id ---
    async fn put_customer_status(&self, status: &CustomerStatus) -> StoreResult<()>;
    /// Several at once (DynamoDB: batches of 25); a put replaces the previous one.
    async fn put_customer_statuses(&self, statuses: &[CustomerStatus]) -> StoreResult<()>;
    async fn get_customer_status(&self, tenant_id: &str) -> StoreResult<Option<CustomerStatus>>;
    /// In tenant-id order, at most `limit` (1..=[`MAX_PAGE`]) after the exclusive
    /// cursor `after`.
    async fn list_customer_statuses(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<CustomerStatus>>;

    // --- per-customer results of one run, keyed by (run_id, tenant_id) ---
    /// A put replaces the same customer's earlier result in that run.
    async fn put_run_customers(&self, customers: &[RunCustomer]) -> StoreResult<()>;
    /// In tenant-id order, at most `limit` (1..=[`MAX_PAGE`]) after `after`.
    async fn list_run_customers(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<RunCustomer>>;
    /// The tenant ids of the customers stored for `run_id`, paged like
    /// [`Store::list_run_customers`] but without their results: what a resumed
    /// invocation needs to know is done, read without the bodies.
    async fn list_run_customer_ids(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<String>>;

    // --- runs: run ids sort by start time, so "latest first" is "id descending" ---
    async fn put_run(&self, run: &RunRecord) -> StoreResult<()>;
    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>>;
    /// Latest first; `before` is an exclusive run-id cursor for the next page.
    async fn list_runs(&self, limit: usize, before: Option<&str>) -> StoreResult<Vec<RunRecord>>;

    // --- audit trail: append only, keyed by `{at}#{runId}#{seq:06}` ---
    /// A second entry with the same key (same instant, run and seq) replaces the first.
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Latest first, at most `limit` (1..=[`MAX_PAGE`]) entries matching `filter`,
    /// strictly older than the exclusive cursor `before`; `next` is the cursor of the
    /// following page. The cursor is opaque (an entry's key); an empty one is the same
    /// as None.
    ///
    /// `next` is None only when no matching entry is left. Without a filter a page is
    /// full unless it is the last. With a filter, SQLite's pages are full too, but
    /// DynamoDB bounds the entries one call reads (filters apply after reading), so
    /// its page may hold fewer than `limit` entries, even none, with a `next`: keep
    /// following `next` until it is None to see every match.
    async fn list_audit_page(
        &self,
        filter: &AuditFilter,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Page<AuditEntry>>;
    /// Latest first, at most `limit`; with `run_id`, only that run's entries (with
    /// `Some("")`, the console's own). Reads page after page of
    /// [`Store::list_audit_page`]: for tools and tests, not for a partner's whole
    /// trail.
    async fn list_audit(&self, limit: usize, run_id: Option<&str>) -> StoreResult<Vec<AuditEntry>> {
        let filter = AuditFilter {
            run_id: run_id.map(str::to_owned),
            ..AuditFilter::default()
        };
        self.list_audit_matching(&filter, limit).await
    }
    /// Latest first, at most `limit` entries matching `filter`, read page after
    /// page like [`Store::list_audit`].
    async fn list_audit_matching(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut out = Vec::new();
        let mut before: Option<String> = None;
        while out.len() < limit {
            let page = self
                .list_audit_page(filter, limit - out.len(), before.as_deref())
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    // --- changes held for review, keyed by id ---
    /// Writes `change` if the stored record's `version` is still `expected` (None:
    /// no record with its id exists); the caller has already bumped
    /// `change.version` past `expected`. Returns false, writing nothing, when
    /// someone else wrote in between: read again and decide again.
    async fn put_held_change(
        &self,
        change: &HeldChange,
        expected: Option<u64>,
    ) -> StoreResult<bool>;
    async fn get_held_change(&self, id: &str) -> StoreResult<Option<HeldChange>>;
    /// Those of `ids` that exist, in any order; at most [`MAX_HELD_IDS`] ids a call.
    async fn get_held_changes(&self, ids: &[String]) -> StoreResult<Vec<HeldChange>>;
    /// In descending id order (ids begin with their month: latest month first), at
    /// most `limit` (1..=[`MAX_PAGE`]) after the exclusive cursor `after` (the last
    /// id of the previous page, `next`); with `open_only`, only the
    /// changes still held or approved. Like [`Store::list_audit_page`], a filtered
    /// DynamoDB page may be short (even empty) with a `next`: follow `next` until None.
    async fn list_held_changes(
        &self,
        open_only: bool,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<HeldChange>>;
    /// How many changes are still held or approved, counted by the store without
    /// reading them (the console's banner asks on every view).
    async fn count_open_held_changes(&self) -> StoreResult<u64>;

    // --- the one-cycle-at-a-time lease (conditional write) ---
    /// Takes the lease for `run_id` when it is free or expired at `now`.
    async fn acquire_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome>;
    /// Extends the lease if `run_id` still holds it; false if it lost it.
    async fn renew_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool>;
    /// Releases the lease only if `run_id` holds it.
    async fn release_lease(&self, run_id: &str) -> StoreResult<()>;

    // --- de-duplication of deliveries (e.g. the same scheduled event twice) ---
    /// Records `key` -> `run_id` unless `key` is already recorded (and not expired);
    /// returns the run id already recorded in that case.
    async fn claim_once(
        &self,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<Option<String>>;
    /// The run id recorded for `key` if a claim is recorded and not expired at
    /// `now`; records nothing (a read, e.g. "was this console session ended?").
    async fn claimed(&self, key: &str, now: DateTime<Utc>) -> StoreResult<Option<String>>;

    // --- counters of events within a window (e.g. failed sign-ins) ---
    /// Adds one event to the counter `key` and returns how many it holds now,
    /// atomically (two containers counting at once both count). A counter's window
    /// starts at its first event; an event at or after `window` later starts a new
    /// window at 1.
    async fn count_event(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> StoreResult<u32>;
}
