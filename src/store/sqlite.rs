//! The embedded store: one SQLite file (the CLI default).
//!
//! Every record is kept as its key columns plus a JSON `body` column, one table per
//! record kind. The file is opened in WAL mode with a busy timeout, so two processes
//! (e.g. two CLI cycles started at once) can share it; opening retries the switch to
//! WAL and the schema's creation while the other process holds them (SQLite answers
//! those busy without waiting), so a new file opened twice at once never fails on
//! the lock. The lease and `claim_once` are single conditional upserts inside
//! `BEGIN IMMEDIATE` transactions, so only one process can win them.
//!
//! rusqlite is synchronous. One connection behind a mutex serves every call: a
//! one-row statement runs on the calling thread when the connection and the file
//! are free, anything else (and a one-row statement that would wait) on tokio's
//! blocking pool (`SqliteStore::call_now`).
//!
//! Schema (`PRAGMA user_version` = [`SCHEMA_VERSION`]):
//!
//! | table               | key columns                  | other columns                 |
//! |---------------------|------------------------------|-------------------------------|
//! | `settings`          | `id` (always 1)              | `body`                        |
//! | `mappings`          | `tenant_id`                  | `body`                        |
//! | `catalog_items`     | `identifier`                 | `body`                        |
//! | `additions`         | `tenant_id`, `identifier`    | `body`                        |
//! | `customer_statuses` | `tenant_id`                  | `body`                        |
//! | `runs`              | `run_id`                     | `expires_at` (epoch s), `body`|
//! | `run_customers`     | `run_id`, `tenant_id`        | `expires_at` (epoch s), `body`|
//! | `audit`             | `sort_key` (`{at}#{run}#{seq:06}`) | `run_id`, `tenant_id`, `action`, `actor`, `body` |
//! | `held_changes`      | `id`                         | `open` (0/1), `version`, `body` |
//! | `lease`             | `id` (always 1)              | `run_id`, `expires_at` (epoch ms) |
//! | `claims`            | `key`                        | `run_id`, `expires_at` (epoch ms) |
//! | `counters`          | `key`                        | `count`, `window_ends` (epoch ms) |
//!
//! Run records are not dropped when `expires_at` passes (DynamoDB TTL does that);
//! the column is kept for a future prune.
//!
//! The audit trail is filtered by run, customer, action and actor in SQL, on columns of
//! their own (`tenant_id` is `''` for an entry about no customer), each with an index
//! `(column, sort_key)`: a filtered page walks one index latest first and stops when
//! the page is full, whatever the size of the trail. Schema 1 had only `run_id`;
//! opening such a file adds `tenant_id` and `action` and fills them from each
//! entry's JSON body, once (a body that is not JSON is left with `''` and reported
//! as corrupt when read); schema 2 had no `actor`, added and filled the same way.

use super::{
    AdditionChange, AdditionRecord, AuditEntry, AuditFilter, CatalogRecord, CustomerStatus,
    HeldChange, Lease, LeaseOutcome, Mapping, Page, RunCustomer, RunRecord, Store, StoreError,
    StoreResult, page_limit,
};
use crate::config::Settings;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The schema this build writes; stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 3;

/// How long a call waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Remembers one addition (?1 tenant, ?2 identifier, ?3 body), replacing the last.
const PUT_ADDITION: &str = "INSERT INTO additions (tenant_id, identifier, body) VALUES (?1, ?2, ?3)
     ON CONFLICT (tenant_id, identifier) DO UPDATE SET body = excluded.body";
/// Forgets one addition (?1 tenant, ?2 identifier).
const DELETE_ADDITION: &str = "DELETE FROM additions WHERE tenant_id = ?1 AND identifier = ?2";
/// Pages of write-ahead log between automatic checkpoints (SQLite's default: 1,000).
const WAL_CHECKPOINT_PAGES: i64 = 8_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mappings (
    tenant_id TEXT PRIMARY KEY,
    body      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_items (
    identifier TEXT PRIMARY KEY,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS additions (
    tenant_id  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, identifier)
);
CREATE TABLE IF NOT EXISTS customer_statuses (
    tenant_id TEXT PRIMARY KEY,
    body      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    expires_at INTEGER,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_customers (
    run_id     TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    expires_at INTEGER,
    body       TEXT NOT NULL,
    PRIMARY KEY (run_id, tenant_id)
);
CREATE TABLE IF NOT EXISTS audit (
    sort_key  TEXT PRIMARY KEY,
    run_id    TEXT NOT NULL,
    tenant_id TEXT NOT NULL DEFAULT '',
    action    TEXT NOT NULL DEFAULT '',
    actor     TEXT NOT NULL DEFAULT '',
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (run_id, sort_key);
CREATE TABLE IF NOT EXISTS held_changes (
    id      TEXT PRIMARY KEY,
    open    INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS held_changes_open ON held_changes (open, id);
CREATE TABLE IF NOT EXISTS lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    run_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    key         TEXT PRIMARY KEY,
    count       INTEGER NOT NULL,
    window_ends INTEGER NOT NULL
);
";

/// Schema 1 -> 2: the audit trail's filter columns, filled from the JSON bodies.
const AUDIT_FILTER_COLUMNS: &str = "
ALTER TABLE audit ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN action TEXT NOT NULL DEFAULT '';
UPDATE audit SET
    tenant_id = COALESCE(json_extract(body, '$.tenantId'), ''),
    action    = COALESCE(json_extract(body, '$.action'), '')
WHERE json_valid(body);
";

/// Schema 2 -> 3: the audit trail's actor column, filled from the JSON bodies.
const AUDIT_ACTOR_COLUMN: &str = "
ALTER TABLE audit ADD COLUMN actor TEXT NOT NULL DEFAULT '';
UPDATE audit SET actor = COALESCE(json_extract(body, '$.actor'), '') WHERE json_valid(body);
";

/// Created after [`AUDIT_FILTER_COLUMNS`] and [`AUDIT_ACTOR_COLUMN`], which an
/// older file needs first.
const AUDIT_FILTER_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant_id, sort_key);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, sort_key);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, sort_key);
";

/// The SQLite adapter of [`Store`]. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The file path (or `:memory:`), for error messages.
    location: Arc<str>,
    reads: Arc<super::ReadCounters>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// What a closure on the connection can fail with; turned into a [`StoreError`]
/// with the file location by [`SqliteStore::call`].
enum Fail {
    Sql(rusqlite::Error),
    Corrupt(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

type FResult<T> = Result<T, Fail>;

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path` and its schema.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let location: Arc<str> = path.display().to_string().into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(StoreError::Config(format!(
                "cannot create the SQLite store {location}: the directory {} does not exist; \
                 create it or choose another store path",
                parent.display()
            )));
        }
        if path.is_dir() {
            return Err(StoreError::Config(format!(
                "the SQLite store path {location} is a directory; give a file path instead"
            )));
        }
        let conn = Connection::open(path).map_err(|e| map_sql(&location, e))?;
        Self::init(conn, location, true)
    }

    /// What this store has read so far (tests of bounded reads).
    pub fn reads(&self) -> &super::ReadCounters {
        &self.reads
    }

    /// A private, empty store that lives as long as this value (tests, dry runs).
    pub fn open_in_memory() -> StoreResult<Self> {
        let location: Arc<str> = ":memory:".into();
        let conn = Connection::open_in_memory().map_err(|e| map_sql(&location, e))?;
        Self::init(conn, location, false)
    }

    /// The file path (or `:memory:`) this store uses.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn init(mut conn: Connection, location: Arc<str>, file: bool) -> StoreResult<Self> {
        let setup = |conn: &mut Connection| -> FResult<()> {
            // First, so that every step below waits for another process's lock.
            conn.busy_timeout(BUSY_TIMEOUT)?;
            if file {
                // WAL lets readers and one writer overlap. Two processes opening a
                // new file at once race on this switch, and SQLite answers busy to
                // one of them without waiting: retry it.
                retry_while_busy(|| {
                    Ok(conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?)
                })?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                // A checkpoint every 8,000 pages (32 MB of log) instead of 1,000:
                // a cycle rewrites the same few pages (the ends of the audit
                // indexes) in every commit, and a checkpoint copies each page once,
                // so rarer checkpoints copy (and fsync) far less. Durability is
                // the same: the log is on disk either way.
                conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
            }
            // One process at a time creates or upgrades the schema (the transaction
            // is IMMEDIATE); the other then finds it made.
            retry_while_busy(|| create_schema(conn))
        };
        // Room for every statement this store prepares (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
        setup(&mut conn).map_err(|f| match f {
            Fail::Sql(e) => map_sql(&location, e),
            Fail::Corrupt(m) => StoreError::Config(format!("the SQLite store {location}: {m}")),
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            location,
            reads: Arc::default(),
        })
    }

    /// Runs `f` on the connection on the blocking pool: for calls that may take a
    /// while (lists, pages, batches, transactions).
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> FResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic in an earlier call cannot leave the connection half-written
            // (transactions roll back on drop), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "the SQLite store {}: worker task failed: {e}",
                self.location
            ))
        })?;
        self.finish(joined)
    }

    /// Runs `f`, one statement on a row or a few, on the calling thread. Such a statement
    /// takes microseconds, much less than handing it to the blocking pool and back:
    /// at 50,000 customers those hand-offs (a thread woken and parked per call) were
    /// about a third of a sync's CPU. It never waits on this thread, though: when
    /// another task holds the connection, or another process holds the file's write
    /// lock (SQLite answers busy at once here, its busy timeout off for this try), `f`
    /// goes to the pool as [`call`](Self::call) and waits there. A statement that
    /// answered busy did nothing, so running it again is safe; `f` must be one
    /// statement, reads only, or one `BEGIN IMMEDIATE` transaction (busy at its
    /// BEGIN, or rolled back) for that to hold.
    async fn call_now<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> FResult<T> + Send + 'static,
    {
        let tried = match self.conn.try_lock() {
            Ok(mut conn) => Some(try_without_waiting(&mut conn, &f)),
            Err(_) => None, // held by another call (or poisoned: the pool copes)
        };
        match tried {
            Some(Err(Fail::Sql(e))) if is_busy(&e) => self.call(f).await,
            Some(done) => self.finish(done),
            None => self.call(f).await,
        }
    }

    /// A closure's outcome, its failure told with the file's location.
    fn finish<T>(&self, done: FResult<T>) -> StoreResult<T> {
        let location = &self.location;
        done.map_err(|f| match f {
            Fail::Sql(e) => map_sql(location, e),
            Fail::Corrupt(m) => StoreError::Corrupt(format!("{m} in the SQLite store {location}")),
        })
    }

    async fn put_body<T: Serialize>(
        &self,
        sql: &'static str,
        keys: Vec<String>,
        record: &T,
    ) -> StoreResult<()> {
        let body = to_json(record)?;
        self.call_now(move |c| {
            let mut args: Vec<&dyn rusqlite::ToSql> =
                keys.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
            args.push(&body);
            c.prepare_cached(sql)?.execute(args.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Reads the one body `sql` selects for `key` (`?1`) and decodes it.
    async fn get_body<T>(
        &self,
        what: &'static str,
        sql: &'static str,
        key: &str,
    ) -> StoreResult<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let key = key.to_owned();
        self.call_now(move |c| {
            let body: Option<String> = c
                .prepare_cached(sql)?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            body.map(|b| decode(what, &key, &b)).transpose()
        })
        .await
    }

    /// Reads `(key, body)` rows and decodes each body.
    async fn list_bodies<T>(&self, what: &'static str, sql: &'static str) -> StoreResult<Vec<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.list_bodies_where(what, sql, Vec::new()).await
    }

    /// [`list_bodies`](Self::list_bodies) of a query with parameters `?1`, `?2`...
    async fn list_bodies_where<T>(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<String>,
    ) -> StoreResult<Vec<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.call(move |c| read_bodies(c, what, sql, &params)).await
    }
}

/// One page of `(key, body)` rows: `sql` takes `?1` (the scope, e.g. a run id),
/// `?2` (the exclusive cursor or NULL) and `?3` (the limit), ordered by key.
fn page_of<T: DeserializeOwned>(
    c: &Connection,
    what: &str,
    sql: &str,
    scope: &str,
    limit: usize,
    after: Option<&str>,
) -> FResult<Page<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params![scope, after, sql_limit(limit)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut items = Vec::new();
    let mut last = None;
    for row in rows {
        let (key, body) = row?;
        items.push(decode(what, &key, &body)?);
        last = Some(key);
    }
    let next = last.filter(|_| items.len() == limit);
    Ok(Page { items, next })
}

fn has_column(c: &Connection, table: &str, column: &str) -> FResult<bool> {
    let mut stmt = c.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    Ok(stmt.exists(params![table, column])?)
}

/// One audit page's query, latest first: an equality per filter that is set, the
/// cursor, then `LIMIT` as the last parameter. Each equality is on an indexed
/// `(column, sort_key)` pair, so SQLite walks one index in order and stops at the
/// limit instead of reading the trail (see `filtered_audit_queries_use_an_index`).
///
/// With several filters, SQLite (without statistics) would pick any of the indexes;
/// the query names the one to walk by keeping the others' columns out of index use
/// (`+column`): the customer's (a customer has few entries), else the run's (bounded
/// by one run), else the person's, else the action's.
fn audit_page_query(filter: &AuditFilter, before: Option<&str>) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    let columns = [
        ("tenant_id", &filter.tenant_id),
        ("run_id", &filter.run_id),
        ("actor", &filter.actor),
        ("action", &filter.action),
    ];
    for (column, value) in columns {
        if let Some(v) = value {
            let walked = if args.is_empty() { "" } else { "+" };
            args.push(v.clone());
            conds.push(format!("{walked}{column} = ?{}", args.len()));
        }
    }
    if let Some(b) = before {
        args.push(b.to_owned());
        conds.push(format!("sort_key < ?{}", args.len()));
    }
    let filter_sql = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT sort_key, body FROM audit {filter_sql}ORDER BY sort_key DESC LIMIT ?{}",
        args.len() + 1
    );
    (sql, args)
}

fn to_json<T: Serialize>(record: &T) -> StoreResult<String> {
    serde_json::to_string(record)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode a record as JSON: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, body: &str) -> FResult<T> {
    serde_json::from_str(body).map_err(|e| {
        Fail::Corrupt(format!(
            "{what} {key:?} is not valid JSON for its type ({e})"
        ))
    })
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn expiry_millis(now: DateTime<Utc>, ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    millis(now).saturating_add(ttl)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn sql_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The audit ordering key, the same one the DynamoDB adapter uses as its sort key:
/// fixed-width UTC time with millis, then run id, then zero-padded sequence.
pub(crate) fn audit_sort_key(entry: &AuditEntry) -> String {
    format!(
        "{}#{}#{:06}",
        entry.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        entry.run_id,
        entry.seq
    )
}

/// Maps a rusqlite error to a store error that says what went wrong and how to fix it.
/// Creates the tables of a new file, or upgrades an older schema, in one write
/// transaction.
fn create_schema(conn: &mut Connection) -> FResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fail::Corrupt(format!(
            "schema version {version} is newer than this build understands \
             ({SCHEMA_VERSION}); upgrade sophos-cw-sync"
        )));
    }
    tx.execute_batch(SCHEMA)?;
    if !has_column(&tx, "audit", "tenant_id")? {
        tx.execute_batch(AUDIT_FILTER_COLUMNS)?;
    }
    if !has_column(&tx, "audit", "actor")? {
        tx.execute_batch(AUDIT_ACTOR_COLUMN)?;
    }
    tx.execute_batch(AUDIT_FILTER_INDEXES)?;
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Runs `step` again while SQLite answers busy or locked, for up to
/// [`BUSY_TIMEOUT`]: the steps of opening a file where SQLite gives up at once
/// instead of calling the busy handler (another process is switching the same
/// new file to WAL or creating its schema).
fn retry_while_busy<T>(mut step: impl FnMut() -> FResult<T>) -> FResult<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match step() {
            Err(Fail::Sql(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The `(key, body)` rows `sql` selects with `params`, each body decoded.
fn read_bodies<T: DeserializeOwned>(
    c: &mut Connection,
    what: &'static str,
    sql: &str,
    params: &[String],
) -> FResult<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, body) = row?;
        out.push(decode(what, &key, &body)?);
    }
    Ok(out)
}

/// One audit entry as the `audit` table holds it: the columns the filters use, and
/// the whole entry as JSON.
struct AuditRow {
    sort_key: String,
    run_id: String,
    tenant_id: String,
    action: String,
    actor: String,
    body: String,
}

impl AuditRow {
    fn of(entry: &AuditEntry) -> StoreResult<Self> {
        Ok(Self {
            sort_key: audit_sort_key(entry),
            run_id: entry.run_id.clone(),
            tenant_id: entry.tenant_id.clone().unwrap_or_default(),
            action: entry.action.clone(),
            actor: entry.actor.clone(),
            body: to_json(entry)?,
        })
    }

    fn insert(&self, c: &Connection) -> FResult<()> {
        // Same key, same entry: a repeated append replaces (as a DynamoDB put does).
        c.prepare_cached(
            "INSERT INTO audit (sort_key, run_id, tenant_id, action, actor, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (sort_key) DO UPDATE SET run_id = excluded.run_id,
                 tenant_id = excluded.tenant_id, action = excluded.action,
                 actor = excluded.actor, body = excluded.body",
        )?
        .execute(params![
            self.sort_key,
            self.run_id,
            self.tenant_id,
            self.action,
            self.actor,
            self.body
        ])?;
        Ok(())
    }
}

/// Runs `f` with SQLite's busy timeout off, so that a file locked by another process
/// answers busy at once instead of blocking this thread; the timeout is back on
/// before the connection is handed on.
fn try_without_waiting<T>(
    conn: &mut Connection,
    f: &impl Fn(&mut Connection) -> FResult<T>,
) -> FResult<T> {
    conn.busy_timeout(Duration::ZERO)?;
    let done = f(conn);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    done
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn map_sql(location: &str, e: rusqlite::Error) -> StoreError {
    let code = e.sqlite_error_code();
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!(
                "the SQLite store {location} is locked by another process or connection ({e}); \
             retry when the other sync cycle has finished"
            ))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::Unavailable(format!(
                "cannot open or write the SQLite store {location} ({e}); check the file \
                 permissions of the file, its directory and its -wal/-shm companions"
            ))
        }
        Some(ErrorCode::DiskFull) => StoreError::Unavailable(format!(
            "the disk holding the SQLite store {location} is full ({e}); free some space"
        )),
        Some(ErrorCode::SystemIoFailure) => StoreError::Unavailable(format!(
            "I/O error on the SQLite store {location} ({e}); check the disk and the file \
             permissions"
        )),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!(
            "{location} is not a usable SQLite database ({e}); move it aside and let the \
             store be recreated, or point the store at another file"
        )),
        _ => StoreError::Unavailable(format!("the SQLite store {location} failed: {e}")),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_settings(&self) -> StoreResult<Option<Settings>> {
        self.call(|c| {
            let body: Option<String> = c
                .query_row("SELECT body FROM settings WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            body.map(|b| decode("settings", "settings", &b)).transpose()
        })
        .await
    }

    async fn put_settings(&self, settings: &Settings) -> StoreResult<()> {
        self.put_body(
            "INSERT INTO settings (id, body) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![],
            settings,
        )
        .await
    }

    async fn get_mapping(&self, tenant_id: &str) -> StoreResult<Option<Mapping>> {
        let sql = "SELECT body FROM mappings WHERE tenant_id = ?1";
        self.get_body("mapping", sql, tenant_id).await
    }

    async fn list_mappings(&self) -> StoreResult<Vec<Mapping>> {
        self.list_bodies(
            "mapping",
            "SELECT tenant_id, body FROM mappings ORDER BY tenant_id",
        )
        .await
    }

    async fn put_mapping(&self, mapping: &Mapping) -> StoreResult<()> {
        self.put_body(
            "INSERT INTO mappings (tenant_id, body) VALUES (?1, ?2)
             ON CONFLICT (tenant_id) DO UPDATE SET body = excluded.body",
            vec![mapping.tenant_id.clone()],
            mapping,
        )
        .await
    }

    async fn delete_mapping(&self, tenant_id: &str) -> StoreResult<bool> {
        let tenant_id = tenant_id.to_owned();
        self.call_now(move |c| {
            let n = c.execute("DELETE FROM mappings WHERE tenant_id = ?1", [&tenant_id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_catalog_items(&self) -> StoreResult<Vec<CatalogRecord>> {
        self.list_bodies(
            "catalog item",
            "SELECT identifier, body FROM catalog_items ORDER BY identifier",
        )
        .await
    }

    async fn put_catalog_item(&self, record: &CatalogRecord) -> StoreResult<()> {
        self.put_body(
            "INSERT INTO catalog_items (identifier, body) VALUES (?1, ?2)
             ON CONFLICT (identifier) DO UPDATE SET body = excluded.body",
            vec![record.identifier.clone()],
            record,
        )
        .await
    }

    async fn list_additions(&self) -> StoreResult<Vec<AdditionRecord>> {
        self.list_bodies(
            "addition",
            "SELECT tenant_id || '#' || identifier, body FROM additions
             ORDER BY tenant_id, identifier",
        )
        .await
    }

    async fn list_additions_of(&self, tenant_id: &str) -> StoreResult<Vec<AdditionRecord>> {
        let params = [tenant_id.to_owned()];
        // One customer's few rows, read once per customer: on this thread.
        self.call_now(move |c| {
            read_bodies(
                c,
                "addition",
                "SELECT tenant_id || '#' || identifier, body FROM additions
                 WHERE tenant_id = ?1 ORDER BY identifier",
                &params,
            )
        })
        .await
    }

    async fn put_addition(&self, record: &AdditionRecord) -> StoreResult<()> {
        self.put_body(
            PUT_ADDITION,
            vec![record.tenant_id.clone(), record.identifier.clone()],
            record,
        )
        .await
    }

    async fn audit_addition(
        &self,
        entry: &AuditEntry,
        change: AdditionChange<'_>,
    ) -> StoreResult<()> {
        let row = AuditRow::of(entry)?;
        // (tenant, identifier, body to remember, or None to forget)
        let (tenant_id, identifier, body) = match change {
            AdditionChange::Remember(r) => {
                (r.tenant_id.clone(), r.identifier.clone(), Some(to_json(r)?))
            }
            AdditionChange::Forget {
                tenant_id,
                identifier,
            } => (tenant_id.to_owned(), identifier.to_owned(), None),
        };
        // One IMMEDIATE transaction: busy at BEGIN (another process writing) has
        // done nothing, so `call_now` may run it again on the pool.
        self.call_now(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            row.insert(&tx)?;
            match &body {
                Some(body) => tx
                    .prepare_cached(PUT_ADDITION)?
                    .execute(params![tenant_id, identifier, body])?,
                None => tx
                    .prepare_cached(DELETE_ADDITION)?
                    .execute(params![tenant_id, identifier])?,
            };
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_addition(&self, tenant_id: &str, identifier: &str) -> StoreResult<()> {
        let (tenant_id, identifier) = (tenant_id.to_owned(), identifier.to_owned());
        self.call_now(move |c| {
            c.execute(DELETE_ADDITION, [&tenant_id, &identifier])?;
            Ok(())
        })
        .await
    }

    async fn put_customer_status(&self, status: &CustomerStatus) -> StoreResult<()> {
        self.put_body(
            "INSERT INTO customer_statuses (tenant_id, body) VALUES (?1, ?2)
             ON CONFLICT (tenant_id) DO UPDATE SET body = excluded.body",
            vec![status.tenant_id.clone()],
            status,
        )
        .await
    }

    async fn put_customer_statuses(&self, statuses: &[CustomerStatus]) -> StoreResult<()> {
        let rows = statuses
            .iter()
            .map(|st| Ok((st.tenant_id.clone(), to_json(st)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO customer_statuses (tenant_id, body) VALUES (?1, ?2)
                     ON CONFLICT (tenant_id) DO UPDATE SET body = excluded.body",
                )?;
                for (tenant_id, body) in &rows {
                    stmt.execute(params![tenant_id, body])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_customer_status(&self, tenant_id: &str) -> StoreResult<Option<CustomerStatus>> {
        let sql = "SELECT body FROM customer_statuses WHERE tenant_id = ?1";
        self.get_body("customer status", sql, tenant_id).await
    }

    async fn list_customer_statuses(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<CustomerStatus>> {
        let (limit, after) = (page_limit(limit), after.map(str::to_owned));
        self.call(move |c| {
            page_of(
                c,
                "customer status",
                "SELECT tenant_id, body FROM customer_statuses
                 WHERE ?1 = ?1 AND (?2 IS NULL OR tenant_id > ?2) ORDER BY tenant_id LIMIT ?3",
                "",
                limit,
                after.as_deref(),
            )
        })
        .await
    }

    async fn put_run_customers(&self, customers: &[RunCustomer]) -> StoreResult<()> {
        let rows = customers
            .iter()
            .map(|rc| {
                let expires = rc.expires_at.map(|t| t.timestamp());
                Ok((
                    rc.run_id.clone(),
                    rc.tenant_id.clone(),
                    expires,
                    to_json(rc)?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO run_customers (run_id, tenant_id, expires_at, body)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (run_id, tenant_id) DO UPDATE
                     SET expires_at = excluded.expires_at, body = excluded.body",
                )?;
                for (run_id, tenant_id, expires, body) in &rows {
                    stmt.execute(params![run_id, tenant_id, expires, body])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_run_customers(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<RunCustomer>> {
        let (limit, after) = (page_limit(limit), after.map(str::to_owned));
        let run_id = run_id.to_owned();
        let page: Page<RunCustomer> = self
            .call(move |c| {
                page_of(
                    c,
                    "run customer",
                    "SELECT tenant_id, body FROM run_customers
                 WHERE run_id = ?1 AND (?2 IS NULL OR tenant_id > ?2) ORDER BY tenant_id LIMIT ?3",
                    &run_id,
                    limit,
                    after.as_deref(),
                )
            })
            .await?;
        self.reads.read_run_customers(page.items.len());
        Ok(page)
    }

    async fn list_run_customer_ids(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<String>> {
        let (limit, after) = (page_limit(limit), after.map(str::to_owned));
        let run_id = run_id.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT tenant_id FROM run_customers
                 WHERE run_id = ?1 AND (?2 IS NULL OR tenant_id > ?2) ORDER BY tenant_id LIMIT ?3",
            )?;
            let ids = stmt
                .query_map(params![run_id, after, sql_limit(limit)], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let next = ids.last().filter(|_| ids.len() == limit).cloned();
            Ok(Page { items: ids, next })
        })
        .await
    }

    async fn put_run(&self, run: &RunRecord) -> StoreResult<()> {
        let body = to_json(run)?;
        let run_id = run.run_id.clone();
        let expires_at = run.expires_at.map(|t| t.timestamp());
        self.call_now(move |c| {
            c.execute(
                "INSERT INTO runs (run_id, expires_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE
                 SET expires_at = excluded.expires_at, body = excluded.body",
                params![run_id, expires_at, body],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let sql = "SELECT body FROM runs WHERE run_id = ?1";
        self.get_body("run", sql, run_id).await
    }

    async fn list_runs(&self, limit: usize, before: Option<&str>) -> StoreResult<Vec<RunRecord>> {
        let before = before.map(str::to_owned);
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, body FROM runs WHERE ?1 IS NULL OR run_id < ?1
                 ORDER BY run_id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![before, sql_limit(limit)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, body) = row?;
                out.push(decode("run", &key, &body)?);
            }
            Ok(out)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let row = AuditRow::of(entry)?;
        self.call_now(move |c| row.insert(c)).await
    }

    async fn list_audit_page(
        &self,
        filter: &AuditFilter,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Page<AuditEntry>> {
        let limit = page_limit(limit);
        let (sql, args) = audit_page_query(filter, before.filter(|b| !b.is_empty()));
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut values: Vec<rusqlite::types::Value> =
                args.into_iter().map(rusqlite::types::Value::Text).collect();
            // One row more than the page tells whether another page follows.
            values.push(rusqlite::types::Value::Integer(sql_limit(limit + 1)));
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut items = Vec::with_capacity(limit);
            let mut last_key = None;
            for row in rows {
                let (key, body) = row?;
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next: last_key,
                    });
                }
                items.push(decode("audit entry", &key, &body)?);
                last_key = Some(key);
            }
            Ok(Page { items, next: None })
        })
        .await
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome> {
        let run_id = run_id.to_owned();
        let now_ms = millis(now);
        let expires = expiry_millis(now, ttl);
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "INSERT INTO lease (id, run_id, expires_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE
                 SET run_id = excluded.run_id, expires_at = excluded.expires_at
                 WHERE lease.expires_at < ?3 OR lease.run_id = ?1",
                params![run_id, expires, now_ms],
            )?;
            let outcome = if changed == 1 {
                LeaseOutcome::Acquired
            } else {
                let (holder, until): (String, i64) = tx.query_row(
                    "SELECT run_id, expires_at FROM lease WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                LeaseOutcome::HeldBy(Lease {
                    run_id: holder,
                    expires_at: from_millis(until),
                })
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn renew_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let run_id = run_id.to_owned();
        let expires = expiry_millis(now, ttl);
        self.call(move |c| {
            let n = c.execute(
                "UPDATE lease SET expires_at = ?2 WHERE id = 1 AND run_id = ?1",
                params![run_id, expires],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, run_id: &str) -> StoreResult<()> {
        let run_id = run_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM lease WHERE id = 1 AND run_id = ?1", [&run_id])?;
            Ok(())
        })
        .await
    }

    async fn put_held_change(
        &self,
        change: &HeldChange,
        expected: Option<u64>,
    ) -> StoreResult<bool> {
        let body = to_json(change)?;
        let id = change.id.clone();
        let open = i64::from(change.status.is_open());
        let version = sql_version(change.version);
        let expected = expected.map(sql_version);
        self.call(move |c| {
            // One statement: it writes only over the version the caller read.
            let n = match expected {
                None => c.execute(
                    "INSERT INTO held_changes (id, open, version, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![id, open, version, body],
                )?,
                Some(v) => c.execute(
                    "UPDATE held_changes SET open = ?2, version = ?3, body = ?4
                     WHERE id = ?1 AND version = ?5",
                    params![id, open, version, body, v],
                )?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn get_held_change(&self, id: &str) -> StoreResult<Option<HeldChange>> {
        let sql = "SELECT body FROM held_changes WHERE id = ?1";
        self.get_body("held change", sql, id).await
    }

    async fn get_held_changes(&self, ids: &[String]) -> StoreResult<Vec<HeldChange>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call(move |c| {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql = format!("SELECT id, body FROM held_changes WHERE id IN ({marks})");
            read_bodies(c, "held change", &sql, &ids)
        })
        .await
    }

    async fn count_open_held_changes(&self) -> StoreResult<u64> {
        self.call(|c| {
            // Counted on the `(open, id)` index, without touching the bodies.
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM held_changes WHERE open = 1",
                [],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn list_held_changes(
        &self,
        open_only: bool,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<HeldChange>> {
        let limit = page_limit(limit);
        let after = after.filter(|a| !a.is_empty()).map(str::to_owned);
        // `open >= ?1`: 1 selects the open ones (walking the index), 0 all.
        let open = i64::from(open_only);
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, body FROM held_changes
                 WHERE open >= ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![open, after, sql_limit(limit)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut items = Vec::new();
            let mut last = None;
            for row in rows {
                let (key, body) = row?;
                items.push(decode("held change", &key, &body)?);
                last = Some(key);
            }
            let next = last.filter(|_| items.len() == limit);
            Ok(Page { items, next })
        })
        .await
    }

    async fn claimed(&self, key: &str, now: DateTime<Utc>) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        let now_ms = millis(now);
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT run_id FROM claims WHERE key = ?1 AND expires_at >= ?2",
                params![key, now_ms],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
        })
        .await
    }

    async fn claim_once(
        &self,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<Option<String>> {
        let (key, run_id) = (key.to_owned(), run_id.to_owned());
        let now_ms = millis(now);
        let expires = expiry_millis(now, ttl);
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "INSERT INTO claims (key, run_id, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE
                 SET run_id = excluded.run_id, expires_at = excluded.expires_at
                 WHERE claims.expires_at < ?4",
                params![key, run_id, expires, now_ms],
            )?;
            let existing = if changed == 1 {
                None
            } else {
                Some(
                    tx.query_row("SELECT run_id FROM claims WHERE key = ?1", [&key], |r| {
                        r.get::<_, String>(0)
                    })?,
                )
            };
            tx.commit()?;
            Ok(existing)
        })
        .await
    }

    async fn count_event(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> StoreResult<u32> {
        let key = key.to_owned();
        let now_ms = millis(now);
        let ends = expiry_millis(now, window);
        self.call(move |c| {
            // One upsert in a write transaction: two processes counting at once
            // both count; a window that has ended starts again at 1.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO counters (key, count, window_ends) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET
                     count = CASE WHEN counters.window_ends <= ?3 THEN 1
                                  ELSE counters.count + 1 END,
                     window_ends = CASE WHEN counters.window_ends <= ?3 THEN ?2
                                        ELSE counters.window_ends END",
                params![key, ends, now_ms],
            )?;
            let count: i64 =
                tx.query_row("SELECT count FROM counters WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })?;
            tx.commit()?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two CLI cycles started at once both open the new file: every opener must
    /// get a working store in WAL mode with the whole schema, none "database is
    /// locked". Without the retries, 16 openers meet the race within a few rounds.
    #[test]
    fn many_threads_open_one_new_file_at_once() {
        const OPENERS: usize = 16;
        for round in 0..40 {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join(format!("round-{round}.db"));
            let start = Arc::new(std::sync::Barrier::new(OPENERS));
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    let (path, start) = (path.clone(), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        SqliteStore::open(&path)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("opener thread");
                assert_eq!(opened, Ok(()), "round {round}");
            }
            let conn = Connection::open(&path).unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal", "round {round}");
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION, "round {round}");
            assert!(
                matches!(has_column(&conn, "audit", "actor"), Ok(true)),
                "round {round}"
            );
        }
    }

    /// A one-row write while another process holds the file's write lock neither
    /// fails nor blocks the thread it was called on: it waits on the blocking pool
    /// and lands once the lock is given back. On a current-thread runtime, a write
    /// that waited on its own thread would hold the only thread for the whole busy
    /// timeout, the holder below could not give the lock back, and the write would
    /// end "locked".
    #[test]
    fn a_write_under_another_processs_lock_waits_off_the_calling_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("locked.db");
        let store = SqliteStore::open(&path).expect("store");
        let other = Connection::open(&path).expect("second connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let writer = tokio::spawn({
                let store = store.clone();
                async move { store.put_settings(&Settings::default()).await }
            });
            // The writer's turns: it tries, meets the lock, and goes to wait elsewhere.
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            assert!(!writer.is_finished(), "{:?}", writer.await);
            other.execute_batch("COMMIT").expect("lock given back");
            writer
                .await
                .expect("writer task")
                .expect("the write lands once the lock is given back");
        });
        let stored = runtime.block_on(store.get_settings()).expect("read");
        assert_eq!(stored, Some(Settings::default()));
    }

    #[test]
    fn audit_sort_key_is_fixed_width() {
        let entry = AuditEntry {
            run_id: "r1".into(),
            seq: 7,
            at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
            actor: "cli".into(),
            action: "createAddition".into(),
            tenant_id: None,
            agreement_id: None,
            identifier: "X".into(),
            entity_id: None,
            old_quantity: None,
            new_quantity: None,
            detail: None,
        };
        assert_eq!(audit_sort_key(&entry), "2024-01-02T03:04:05.000Z#r1#000007");
    }

    /// Every audit page, filtered or not, walks an index in key order (no full scan
    /// of the trail, no sort of it), whichever filters and cursor it has.
    #[test]
    fn filtered_audit_queries_use_an_index() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(AUDIT_FILTER_INDEXES).unwrap();
        let v = |x: &str| Some(x.to_owned());
        for run_id in [None, v("r1")] {
            for tenant_id in [None, v("t1")] {
                for (action, actor) in [
                    (None, None),
                    (v("login"), None),
                    (None, v("cli:bob")),
                    (v("login"), v("cli:bob")),
                ] {
                    for before in [None, Some("2024-01-01")] {
                        let filter = AuditFilter {
                            run_id: run_id.clone(),
                            tenant_id: tenant_id.clone(),
                            action: action.clone(),
                            actor: actor.clone(),
                        };
                        let (sql, args) = audit_page_query(&filter, before);
                        let mut values: Vec<rusqlite::types::Value> =
                            args.into_iter().map(rusqlite::types::Value::Text).collect();
                        values.push(rusqlite::types::Value::Integer(11));
                        let plan: Vec<String> = c
                            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                            .unwrap()
                            .query_map(rusqlite::params_from_iter(values), |r| r.get(3))
                            .unwrap()
                            .collect::<Result<_, _>>()
                            .unwrap();
                        let plan = plan.join("; ");
                        assert!(plan.contains("USING INDEX"), "{filter:?}: {plan}");
                        assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");
                        if !filter.is_empty() || before.is_some() {
                            assert!(plan.starts_with("SEARCH audit"), "{filter:?}: {plan}");
                        }
                        let walked = if filter.tenant_id.is_some() {
                            "audit_by_tenant"
                        } else if filter.run_id.is_some() {
                            "audit_by_run"
                        } else if filter.actor.is_some() {
                            "audit_by_actor"
                        } else if filter.action.is_some() {
                            "audit_by_action"
                        } else {
                            "sqlite_autoindex_audit_1"
                        };
                        assert!(plan.contains(walked), "{filter:?}: {plan}");
                    }
                }
            }
        }
    }
}
