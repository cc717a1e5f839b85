//! One conformance suite for every `Store` adapter.
//!
//! Each check is a plain async function over a [`Fixture`]; the `conformance!` macro
//! instantiates every check for every adapter (SQLite file, SQLite in memory,
//! DynamoDB on moto with a fresh table per test), so a new check covers them all.
//! Adapter-specific tests (raw item layout, corrupt records, setup errors) follow.
//!
//! The race checks assert "exactly one winner" only where the backend makes
//! conditional writes atomic: SQLite does; moto (standing in for DynamoDB, which
//! does) does not lock its tables between concurrent requests, so against moto they
//! only assert that every loser is told about a winner.

mod support;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::store::dynamodb::DynamoStore;
use sophos_cw_sync::store::sqlite::SqliteStore;
use sophos_cw_sync::store::{
    AdditionChange, AdditionRecord, AuditEntry, AuditFilter, CatalogRecord, CustomerStatus,
    HeldChange, HeldOp, HeldStatus, HeldUsageLine, Lease, LeaseOutcome, MAX_PAGE, Mapping,
    MappingKind, Page, ReviewRule, RunCustomer, RunRecord, RunStatus, Store, StoreError,
};
use sophos_cw_sync::sync::report::{
    CustomerReport, CustomerState, ErrorCode, ErrorReport, ProductAction, ProductReport,
};
use std::sync::Arc;
use std::time::Duration;
use support::moto;

// ---------------------------------------------------------------- fixtures

struct Fixture {
    store: Arc<dyn Store>,
    /// A second, independent handle on the same storage (another process's view):
    /// a second `SqliteStore::open` of the same file, or a second DynamoDB client.
    other: Option<Arc<dyn Store>>,
    /// Whether the backend makes conditional writes atomic under concurrent requests.
    /// SQLite does (and so does real DynamoDB), but moto's server handles requests on
    /// threads without locking its tables: two racing conditional puts can both pass.
    /// Against such a backend the race checks assert only what it can guarantee.
    atomic_conditional_writes: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

async fn fixture_sqlite_file() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).expect("open sqlite file");
    let other = SqliteStore::open(&path).expect("open sqlite file twice");
    Fixture {
        store: Arc::new(store),
        other: Some(Arc::new(other)),
        atomic_conditional_writes: true,
        _dir: Some(dir),
    }
}

async fn fixture_sqlite_memory() -> Fixture {
    Fixture {
        store: Arc::new(SqliteStore::open_in_memory().expect("open sqlite in memory")),
        other: None,
        atomic_conditional_writes: true,
        _dir: None,
    }
}

async fn new_dynamo_table() -> (aws_config::SdkConfig, DynamoStore) {
    let conf = moto::aws_config().await;
    let store = DynamoStore::new(Client::new(&conf), moto::unique_name("conformance-"));
    store.create_table_if_missing().await.expect("create table");
    store.enable_ttl().await.expect("enable ttl");
    (conf, store)
}

async fn fixture_dynamodb() -> Fixture {
    let (conf, store) = new_dynamo_table().await;
    let other = DynamoStore::new(Client::new(&conf), store.table_name());
    Fixture {
        store: Arc::new(store),
        other: Some(Arc::new(other)),
        // moto, not DynamoDB: see `atomic_conditional_writes`.
        atomic_conditional_writes: false,
        _dir: None,
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&super::fixture_sqlite_file().await).await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&super::fixture_sqlite_memory().await).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&super::fixture_dynamodb().await).await;
                }
            )*
        }
    };
}

conformance!(
    settings_round_trip,
    mappings_put_get_list_delete,
    catalog_items_put_replace_list,
    additions_put_replace_list_delete,
    audited_addition_changes_land_with_their_entries,
    customer_statuses_replace_per_tenant,
    runs_put_get_replace,
    runs_list_latest_first_with_paging,
    audit_append_and_list_latest_first,
    audit_many_entries,
    audit_console_entries_round_trip_and_belong_to_no_run,
    audit_pages_filter_by_tenant_action_and_run,
    audit_pages_walk_1200_entries_once_each_latest_first,
    audit_pages_filter_by_actor,
    runs_keep_who_started_them,
    count_event_counts_within_a_window_then_starts_again,
    count_event_race_counts_every_event,
    lists_span_several_pages,
    run_customers_page_by_tenant_within_their_run,
    run_customer_ids_page_like_the_results_without_them,
    a_run_of_5000_customers_is_recorded_whole_and_read_back_in_pages,
    lease_lifecycle,
    lease_expired_can_be_taken_over,
    lease_race_has_one_winner,
    claim_once_dedups_until_expiry,
    claimed_reads_a_claim_until_it_expires,
    claim_once_race_has_one_winner,
    held_changes_write_over_the_version_read,
    held_changes_list_open_ones_latest_month_first_in_pages,
    open_held_changes_are_counted_through_their_transitions,
    held_change_race_has_one_winner,
);

// ---------------------------------------------------------------- data

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

const MINUTE: Duration = Duration::from_secs(60);

fn mapping(tenant: &str, kind: MappingKind, company: Option<i64>) -> Mapping {
    Mapping {
        tenant_id: tenant.to_owned(),
        kind,
        company_id: company,
        agreement_id: company.map(|c| c * 10),
        updated_at: t0(),
    }
}

fn addition(tenant: &str, identifier: &str, quantity: f64) -> AdditionRecord {
    AdditionRecord {
        tenant_id: tenant.to_owned(),
        identifier: identifier.to_owned(),
        agreement_id: 7,
        addition_id: 100,
        product_id: 200,
        quantity,
        updated_at: t0(),
    }
}

fn run(run_id: &str, status: RunStatus) -> RunRecord {
    RunRecord {
        run_id: run_id.to_owned(),
        status,
        started_at: t0(),
        finished_at: None,
        month: "2024-05".to_owned(),
        dry_run: false,
        trigger: "cli".to_owned(),
        started_by: None,
        report: serde_json::Value::Null,
        expires_at: None,
    }
}

fn audit(run_id: &str, seq: u32, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        run_id: run_id.to_owned(),
        seq,
        at,
        actor: "cli:test@host".to_owned(),
        action: "createAddition".to_owned(),
        tenant_id: Some("tenant-a".to_owned()),
        agreement_id: Some(7),
        identifier: "CIXA".to_owned(),
        entity_id: Some(42),
        old_quantity: None,
        new_quantity: Some(3.0),
        detail: None,
    }
}

/// An entry of the operator console: no run, no product, a sentence.
fn console_audit(seq: u32, at: DateTime<Utc>, action: &str, tenant: Option<&str>) -> AuditEntry {
    AuditEntry {
        run_id: String::new(),
        seq,
        at,
        actor: "console:alice".to_owned(),
        action: action.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        agreement_id: None,
        identifier: String::new(),
        entity_id: None,
        old_quantity: None,
        new_quantity: None,
        detail: Some(format!("{action} by alice")),
    }
}

fn audit_filter(run: Option<&str>, tenant: Option<&str>, action: Option<&str>) -> AuditFilter {
    AuditFilter {
        run_id: run.map(str::to_owned),
        tenant_id: tenant.map(str::to_owned),
        action: action.map(str::to_owned),
        actor: None,
    }
}

fn by_actor(actor: &str, base: AuditFilter) -> AuditFilter {
    AuditFilter {
        actor: Some(actor.to_owned()),
        ..base
    }
}

/// Every page of `filter`, following `next` from the first page until it is None.
async fn walk_audit(s: &dyn Store, filter: &AuditFilter, limit: usize) -> Vec<Page<AuditEntry>> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = s
            .list_audit_page(filter, limit, before.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= limit, "{filter:?}: page over {limit}");
        assert!(
            pages.len() < 10_000,
            "{filter:?}: following `next` does not end"
        );
        let next = page.next.clone();
        pages.push(page);
        match next {
            Some(n) => {
                assert_ne!(
                    before.as_deref(),
                    Some(n.as_str()),
                    "{filter:?}: cursor stuck"
                );
                before = Some(n);
            }
            None => return pages,
        }
    }
}

fn walked(pages: &[Page<AuditEntry>]) -> Vec<AuditEntry> {
    pages.iter().flat_map(|p| p.items.iter().cloned()).collect()
}

/// An audit entry of `run` about `tenant`, `at` seconds after [`t0`].
fn tagged_audit(run: &str, seq: u32, at: i64, tenant: &str, action: &str) -> AuditEntry {
    let mut e = audit(run, seq, t0() + secs(at));
    e.tenant_id = Some(tenant.to_owned());
    e.action = action.to_owned();
    e
}

/// A JSON value of roughly `bytes` bytes (DynamoDB items are at most 400 KB).
fn big_value(bytes: usize) -> serde_json::Value {
    serde_json::json!({ "padding": "x".repeat(bytes) })
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| id(i).to_owned()).collect()
}

// ---------------------------------------------------------------- checks

async fn settings_round_trip(f: &Fixture) {
    let s = f.store();
    assert_eq!(s.get_settings().await.unwrap(), None);

    let mut settings = Settings {
        products: ["CIXA".to_owned(), "CIXE".to_owned()].into(),
        agreement_type: Some("Managed Security".to_owned()),
        month: "previous".to_owned(),
        ..Settings::default()
    };
    settings
        .product_codes
        .insert("CIXAXXXX".to_owned(), "CIXA".to_owned());
    s.put_settings(&settings).await.unwrap();
    assert_eq!(s.get_settings().await.unwrap(), Some(settings.clone()));

    settings.products.clear();
    s.put_settings(&settings).await.unwrap();
    assert_eq!(s.get_settings().await.unwrap(), Some(settings));
}

async fn mappings_put_get_list_delete(f: &Fixture) {
    let s = f.store();
    assert_eq!(s.get_mapping("t1").await.unwrap(), None);
    assert!(s.list_mappings().await.unwrap().is_empty());

    let manual = mapping("t1", MappingKind::Manual, Some(11));
    let discovered = mapping("t2", MappingKind::Discovered, Some(22));
    let ignored = mapping("t3", MappingKind::Ignored, None);
    for m in [&manual, &discovered, &ignored] {
        s.put_mapping(m).await.unwrap();
    }
    assert_eq!(s.get_mapping("t1").await.unwrap(), Some(manual.clone()));
    assert_eq!(s.get_mapping("t3").await.unwrap(), Some(ignored.clone()));

    let mut all = s.list_mappings().await.unwrap();
    all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    assert_eq!(
        all,
        vec![manual.clone(), discovered.clone(), ignored.clone()]
    );

    // A put replaces.
    let remapped = Mapping {
        kind: MappingKind::Manual,
        company_id: Some(99),
        agreement_id: Some(990),
        updated_at: t0() + secs(5),
        ..discovered.clone()
    };
    s.put_mapping(&remapped).await.unwrap();
    assert_eq!(s.get_mapping("t2").await.unwrap(), Some(remapped));
    assert_eq!(s.list_mappings().await.unwrap().len(), 3);

    assert!(s.delete_mapping("t1").await.unwrap());
    assert!(!s.delete_mapping("t1").await.unwrap());
    assert!(!s.delete_mapping("never-there").await.unwrap());
    assert_eq!(s.get_mapping("t1").await.unwrap(), None);
    let left = ids(&s.list_mappings().await.unwrap(), |m| &m.tenant_id);
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&"t1".to_owned()));
}

async fn catalog_items_put_replace_list(f: &Fixture) {
    let s = f.store();
    assert!(s.list_catalog_items().await.unwrap().is_empty());
    let a = CatalogRecord {
        identifier: "CIXA".to_owned(),
        catalog_item_id: 1,
        updated_at: t0(),
    };
    let b = CatalogRecord {
        identifier: "CIXE".to_owned(),
        catalog_item_id: 2,
        updated_at: t0(),
    };
    s.put_catalog_item(&a).await.unwrap();
    s.put_catalog_item(&b).await.unwrap();
    let a2 = CatalogRecord {
        catalog_item_id: 10,
        updated_at: t0() + secs(1),
        ..a
    };
    s.put_catalog_item(&a2).await.unwrap();

    let mut all = s.list_catalog_items().await.unwrap();
    all.sort_by(|x, y| x.identifier.cmp(&y.identifier));
    assert_eq!(all, vec![a2, b]);
}

async fn additions_put_replace_list_delete(f: &Fixture) {
    let s = f.store();
    assert!(s.list_additions().await.unwrap().is_empty());
    let a = addition("t1", "CIXA", 5.0);
    let b = addition("t1", "CIXE", 2.5);
    let c = addition("t2", "CIXA", 1.0);
    for r in [&a, &b, &c] {
        s.put_addition(r).await.unwrap();
    }
    // Keyed by (tenant, identifier): replaces only that one.
    let a2 = AdditionRecord {
        quantity: 8.0,
        addition_id: 101,
        ..a.clone()
    };
    s.put_addition(&a2).await.unwrap();

    let sorted = |mut v: Vec<AdditionRecord>| {
        v.sort_by(|x, y| (&x.tenant_id, &x.identifier).cmp(&(&y.tenant_id, &y.identifier)));
        v
    };
    assert_eq!(
        sorted(s.list_additions().await.unwrap()),
        vec![a2.clone(), b.clone(), c.clone()]
    );

    // One tenant's, and only its own: not a tenant whose id starts with it and `#`
    // (DynamoDB finds them by a sort-key prefix).
    let lookalike = addition("t1#2", "CIXA", 9.0);
    s.put_addition(&lookalike).await.unwrap();
    assert_eq!(
        sorted(s.list_additions_of("t1").await.unwrap()),
        vec![a2.clone(), b.clone()]
    );
    assert_eq!(s.list_additions_of("t1#2").await.unwrap(), vec![lookalike]);
    assert!(s.list_additions_of("t9").await.unwrap().is_empty());
    s.delete_addition("t1#2", "CIXA").await.unwrap();

    s.delete_addition("t1", "CIXE").await.unwrap();
    // Deleting what is not there is fine.
    s.delete_addition("t1", "CIXE").await.unwrap();
    s.delete_addition("t9", "CIXA").await.unwrap();
    assert_eq!(sorted(s.list_additions().await.unwrap()), vec![a2, c]);
}

/// `audit_addition` (one transaction on SQLite, the entry then the record on
/// DynamoDB): each change lands with its entry, and the entry is found by the
/// trail's filters like an appended one.
async fn audited_addition_changes_land_with_their_entries(f: &Fixture) {
    let s = f.store();
    let entry = |seq: u32, action: &str, new: Option<f64>| AuditEntry {
        action: action.to_owned(),
        tenant_id: Some("t1".to_owned()),
        new_quantity: new,
        ..audit("run-x", seq, t0() + secs(i64::from(seq)))
    };
    let a = addition("t1", "CIXA", 5.0);
    let other = addition("t2", "CIXA", 1.0);
    s.put_addition(&other).await.unwrap();

    s.audit_addition(
        &entry(0, "createAddition", Some(5.0)),
        AdditionChange::Remember(&a),
    )
    .await
    .unwrap();
    assert_eq!(s.list_additions_of("t1").await.unwrap(), vec![a.clone()]);

    // A put replaces the record.
    let a8 = AdditionRecord {
        quantity: 8.0,
        ..a.clone()
    };
    s.audit_addition(
        &entry(1, "updateAddition", Some(8.0)),
        AdditionChange::Remember(&a8),
    )
    .await
    .unwrap();
    assert_eq!(s.list_additions_of("t1").await.unwrap(), vec![a8]);

    // Forgetting removes only that tenant's product, and forgetting what is gone
    // still puts its entry on the trail.
    let forget = AdditionChange::Forget {
        tenant_id: "t1",
        identifier: "CIXA",
    };
    s.audit_addition(&entry(2, "cancelAddition", None), forget)
        .await
        .unwrap();
    s.audit_addition(&entry(3, "reconcileAddition", None), forget)
        .await
        .unwrap();
    assert!(s.list_additions_of("t1").await.unwrap().is_empty());
    assert_eq!(s.list_additions_of("t2").await.unwrap(), vec![other]);

    let trail = s.list_audit(10, Some("run-x")).await.unwrap();
    let actions: Vec<(&str, Option<f64>)> = trail
        .iter()
        .map(|e| (e.action.as_str(), e.new_quantity))
        .collect();
    assert_eq!(
        actions,
        [
            ("reconcileAddition", None),
            ("cancelAddition", None),
            ("updateAddition", Some(8.0)),
            ("createAddition", Some(5.0)),
        ],
        "latest first"
    );
    let cancels = walked(
        &walk_audit(
            s,
            &audit_filter(Some("run-x"), Some("t1"), Some("cancelAddition")),
            5,
        )
        .await,
    );
    assert_eq!(cancels, vec![trail[1].clone()]);
}

async fn customer_statuses_replace_per_tenant(f: &Fixture) {
    let s = f.store();
    assert!(
        s.list_customer_statuses(10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let status = |tenant: &str, run_id: &str, n: i64| CustomerStatus {
        tenant_id: tenant.to_owned(),
        run_id: run_id.to_owned(),
        updated_at: t0() + secs(n),
        report: serde_json::json!({ "tenant": tenant, "changes": n }),
    };
    s.put_customer_status(&status("t1", "r1", 1)).await.unwrap();
    s.put_customer_status(&status("t2", "r1", 2)).await.unwrap();
    s.put_customer_status(&status("t1", "r2", 3)).await.unwrap();

    let all = s.list_customer_statuses(10, None).await.unwrap();
    assert_eq!(
        all.items,
        vec![status("t1", "r2", 3), status("t2", "r1", 2)]
    );
    assert_eq!(all.next, None, "the last page");
    assert_eq!(
        s.get_customer_status("t2").await.unwrap(),
        Some(status("t2", "r1", 2))
    );
    assert_eq!(s.get_customer_status("t9").await.unwrap(), None);
    // Pages follow the tenant-id cursor.
    let first = s.list_customer_statuses(1, None).await.unwrap();
    assert_eq!(first.items, vec![status("t1", "r2", 3)]);
    assert_eq!(first.next.as_deref(), Some("t1"));
    let second = s.list_customer_statuses(1, Some("t1")).await.unwrap();
    assert_eq!(second.items, vec![status("t2", "r1", 2)]);
    let batch: Vec<CustomerStatus> = (3..6).map(|i| status(&format!("t{i}"), "r3", i)).collect();
    s.put_customer_statuses(&batch).await.unwrap();
    let after = s.list_customer_statuses(10, Some("t2")).await.unwrap();
    assert_eq!(after.items, batch);
}

async fn runs_put_get_replace(f: &Fixture) {
    let s = f.store();
    assert_eq!(s.get_run("r1").await.unwrap(), None);
    let started = run("r1", RunStatus::Running);
    s.put_run(&started).await.unwrap();
    assert_eq!(s.get_run("r1").await.unwrap(), Some(started.clone()));

    let finished = RunRecord {
        status: RunStatus::Partial,
        finished_at: Some(t0() + secs(90)),
        report: serde_json::json!({ "customers": [{ "tenantId": "t1", "errors": 1 }] }),
        expires_at: Some(t0() + chrono::Duration::days(90)),
        ..started
    };
    s.put_run(&finished).await.unwrap();
    assert_eq!(s.get_run("r1").await.unwrap(), Some(finished));
    assert_eq!(s.list_runs(10, None).await.unwrap().len(), 1);
}

async fn runs_list_latest_first_with_paging(f: &Fixture) {
    let s = f.store();
    assert!(s.list_runs(3, None).await.unwrap().is_empty());
    // Insert out of order: listing must not depend on insertion order.
    for i in [3, 1, 7, 5, 2, 6, 4] {
        let mut r = run(&format!("20240501T06000{i}Z-run"), RunStatus::Succeeded);
        r.started_at = t0() + secs(i);
        s.put_run(&r).await.unwrap();
    }
    let id = |i: i64| format!("20240501T06000{i}Z-run");
    let page = |runs: Vec<RunRecord>| ids(&runs, |r| &r.run_id);

    let p1 = page(s.list_runs(3, None).await.unwrap());
    assert_eq!(p1, vec![id(7), id(6), id(5)]);
    let p2 = page(s.list_runs(3, Some(&p1[2])).await.unwrap());
    assert_eq!(p2, vec![id(4), id(3), id(2)]);
    let p3 = page(s.list_runs(3, Some(&p2[2])).await.unwrap());
    assert_eq!(p3, vec![id(1)]);
    assert!(s.list_runs(3, Some(&p3[0])).await.unwrap().is_empty());

    assert_eq!(s.list_runs(100, None).await.unwrap().len(), 7);
    assert!(s.list_runs(0, None).await.unwrap().is_empty());
    // The cursor is exclusive and need not be an existing id.
    let p = page(s.list_runs(2, Some("20240501T060004Z-zzz")).await.unwrap());
    assert_eq!(p, vec![id(4), id(3)]);
}

async fn audit_append_and_list_latest_first(f: &Fixture) {
    let s = f.store();
    assert!(s.list_audit(10, None).await.unwrap().is_empty());
    let entries = [
        audit("r1", 1, t0() + secs(1)),
        audit("r1", 2, t0() + secs(2)),
        // Same instant: ordered by run then seq.
        audit("r1", 3, t0() + secs(2)),
        audit("r2", 1, t0() + secs(10)),
        audit("r2", 2, t0() + secs(11)),
    ];
    // Append out of order.
    for i in [2, 0, 4, 1, 3] {
        s.append_audit(&entries[i]).await.unwrap();
    }
    let key = |e: &AuditEntry| (e.run_id.clone(), e.seq);
    let keys = |v: Vec<AuditEntry>| v.iter().map(key).collect::<Vec<_>>();

    let all = s.list_audit(10, None).await.unwrap();
    assert_eq!(all[0], entries[4]);
    assert_eq!(
        keys(all),
        vec![
            ("r2".to_owned(), 2),
            ("r2".to_owned(), 1),
            ("r1".to_owned(), 3),
            ("r1".to_owned(), 2),
            ("r1".to_owned(), 1),
        ]
    );
    assert_eq!(
        keys(s.list_audit(2, None).await.unwrap()),
        vec![("r2".to_owned(), 2), ("r2".to_owned(), 1)]
    );
    assert_eq!(
        keys(s.list_audit(10, Some("r1")).await.unwrap()),
        vec![
            ("r1".to_owned(), 3),
            ("r1".to_owned(), 2),
            ("r1".to_owned(), 1)
        ]
    );
    assert_eq!(
        keys(s.list_audit(1, Some("r1")).await.unwrap()),
        vec![("r1".to_owned(), 3)]
    );
    assert!(s.list_audit(10, Some("r9")).await.unwrap().is_empty());
    assert!(s.list_audit(0, None).await.unwrap().is_empty());
}

async fn audit_many_entries(f: &Fixture) {
    let s = f.store();
    for i in 0..120u32 {
        let run_id = if i % 3 == 0 { "ra" } else { "rb" };
        s.append_audit(&audit(
            run_id,
            i,
            t0() + chrono::Duration::milliseconds(i64::from(i)),
        ))
        .await
        .unwrap();
    }
    let all = s.list_audit(200, None).await.unwrap();
    assert_eq!(all.len(), 120);
    let seqs: Vec<u32> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..120).rev().collect::<Vec<_>>());

    assert_eq!(s.list_audit(50, None).await.unwrap().len(), 50);
    let ra = s.list_audit(200, Some("ra")).await.unwrap();
    assert_eq!(ra.len(), 40);
    assert!(ra.iter().all(|e| e.run_id == "ra"));
    let ra_top = s.list_audit(15, Some("ra")).await.unwrap();
    assert_eq!(ra_top.first().map(|e| e.seq), Some(117));
    assert_eq!(ra_top.len(), 15);
}

async fn audit_console_entries_round_trip_and_belong_to_no_run(f: &Fixture) {
    let s = f.store();
    let at = t0() + secs(5);
    // A console entry at the same instant and seq as a run's entry: both are kept.
    let login = console_audit(1, at, "login", None);
    let mut mapped = console_audit(2, at, "putMapping", Some("tenant-a"));
    mapped.detail = Some("mapped to company 110, agreement 210".to_owned());
    let mut failed = console_audit(3, at, "login", None);
    failed.detail = Some("wrong password".to_owned());
    let run_entry = audit("r1", 1, at);
    for e in [&login, &run_entry, &mapped, &failed] {
        s.append_audit(e).await.unwrap();
    }

    let all = s
        .list_audit_page(&AuditFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(all.next, None);
    assert_eq!(all.items.len(), 4, "{:?}", all.items);
    for e in [&login, &run_entry, &mapped, &failed] {
        assert!(all.items.contains(e), "{e:?} round-trips: {:?}", all.items);
    }
    let got_failed = all.items.iter().find(|e| e.seq == 3).unwrap();
    assert_eq!(got_failed.detail.as_deref(), Some("wrong password"));
    assert_eq!(got_failed.run_id, "");
    assert_eq!(got_failed.identifier, "");

    // A run's entries never include the console's.
    assert_eq!(
        s.list_audit(10, Some("r1")).await.unwrap(),
        vec![run_entry.clone()]
    );
    let r1 = s
        .list_audit_page(&audit_filter(Some("r1"), None, None), 10, None)
        .await
        .unwrap();
    assert_eq!(r1.items, vec![run_entry.clone()]);
    // The empty run id selects the console's own entries.
    let console = s
        .list_audit_page(&audit_filter(Some(""), None, None), 10, None)
        .await
        .unwrap();
    assert_eq!(
        console.items,
        vec![failed.clone(), mapped.clone(), login.clone()]
    );
    assert_eq!(console.next, None);
    assert_eq!(
        s.list_audit(10, Some("")).await.unwrap(),
        vec![failed.clone(), mapped.clone(), login.clone()]
    );
    // An empty tenant id selects the entries about no customer.
    let no_customer = s
        .list_audit_page(&audit_filter(None, Some(""), None), 10, None)
        .await
        .unwrap();
    assert_eq!(no_customer.items, vec![failed.clone(), login.clone()]);
    let customer = s
        .list_audit_page(&audit_filter(None, Some("tenant-a"), None), 10, None)
        .await
        .unwrap();
    assert_eq!(customer.items, vec![run_entry.clone(), mapped.clone()]);
    // An empty cursor is no cursor.
    assert_eq!(
        s.list_audit_page(&AuditFilter::default(), 10, Some(""))
            .await
            .unwrap(),
        all
    );
}

async fn audit_pages_filter_by_tenant_action_and_run(f: &Fixture) {
    let s = f.store();
    let mut mapped = console_audit(1, t0() + secs(6), "putMapping", Some("t2"));
    mapped.detail = Some("mapped to company 110, agreement 210".to_owned());
    let mut login = console_audit(1, t0() + secs(4), "login", None);
    login.detail = Some("wrong password".to_owned());
    let entry = tagged_audit;
    let e = [
        entry("r1", 1, 1, "t1", "createAddition"),
        entry("r1", 2, 2, "t2", "updateAddition"),
        entry("r1", 3, 3, "t1", "updateAddition"),
        login,
        entry("r2", 1, 5, "t1", "createAddition"),
        mapped,
        entry("r2", 2, 7, "t2", "cancelAddition"),
        entry("r2", 3, 8, "t3", "createAddition"),
    ];
    for i in [3, 0, 7, 1, 5, 2, 6, 4] {
        s.append_audit(&e[i]).await.unwrap();
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| e[i].clone()).collect::<Vec<_>>();
    let cases: Vec<(AuditFilter, Vec<usize>)> = vec![
        (audit_filter(None, None, None), vec![7, 6, 5, 4, 3, 2, 1, 0]),
        (audit_filter(None, Some("t1"), None), vec![4, 2, 0]),
        (audit_filter(None, Some("t2"), None), vec![6, 5, 1]),
        (audit_filter(None, Some(""), None), vec![3]),
        (
            audit_filter(None, None, Some("createAddition")),
            vec![7, 4, 0],
        ),
        (audit_filter(None, None, Some("login")), vec![3]),
        (audit_filter(Some("r1"), None, None), vec![2, 1, 0]),
        (audit_filter(Some("r2"), None, None), vec![7, 6, 4]),
        (audit_filter(Some(""), None, None), vec![5, 3]),
        (audit_filter(Some("r2"), Some("t1"), None), vec![4]),
        (
            audit_filter(Some("r1"), None, Some("updateAddition")),
            vec![2, 1],
        ),
        (
            audit_filter(None, Some("t1"), Some("updateAddition")),
            vec![2],
        ),
        (audit_filter(None, Some("t2"), Some("putMapping")), vec![5]),
        (
            audit_filter(Some("r1"), Some("t2"), Some("updateAddition")),
            vec![1],
        ),
        // Each filter matches something, not all of them together.
        (
            audit_filter(Some("r2"), Some("t1"), Some("cancelAddition")),
            vec![],
        ),
        (audit_filter(None, Some("t9"), None), vec![]),
        (audit_filter(Some("r9"), None, None), vec![]),
        (audit_filter(None, None, Some("zeroAddition")), vec![]),
    ];
    for (filter, expected) in &cases {
        let page = s.list_audit_page(filter, 10, None).await.unwrap();
        assert_eq!(page.items, pick(expected), "{filter:?}");
        assert_eq!(page.next, None, "{filter:?}: nothing follows");
        // Small pages: the same entries, in the same order, each once.
        let pages = walk_audit(s, filter, 2).await;
        assert_eq!(walked(&pages), pick(expected), "{filter:?} in pages of 2");
    }

    // Pages of a filter, from a cursor.
    let t1 = audit_filter(None, Some("t1"), None);
    let first = s.list_audit_page(&t1, 1, None).await.unwrap();
    assert_eq!(first.items, pick(&[4]));
    let cursor = first.next.expect("more entries of t1 follow");
    let rest = s.list_audit_page(&t1, 10, Some(&cursor)).await.unwrap();
    assert_eq!(rest.items, pick(&[2, 0]));
    assert_eq!(rest.next, None);
    // The cursor is exclusive and need not be an entry's key: this one sorts just
    // after e[2] (same instant, a run id after "r1").
    let between = format!(
        "{}#r1~",
        (t0() + secs(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let older = s
        .list_audit_page(&AuditFilter::default(), 10, Some(&between))
        .await
        .unwrap();
    assert_eq!(older.items, pick(&[2, 1, 0]));
    // A limit of 0 means 1 and one over MAX_PAGE means MAX_PAGE, as for other lists.
    let one = s
        .list_audit_page(&AuditFilter::default(), 0, None)
        .await
        .unwrap();
    assert_eq!(one.items, pick(&[7]));
    assert!(one.next.is_some());
}

async fn audit_pages_walk_1200_entries_once_each_latest_first(f: &Fixture) {
    let s = f.store();
    const N: usize = 1200;
    const ACTIONS: [&str; 4] = [
        "createAddition",
        "updateAddition",
        "zeroAddition",
        "cancelAddition",
    ];
    // Entry i is later than entry i - 1: two entries an instant, a run every 100.
    let entries: Vec<AuditEntry> = (0..N)
        .map(|i| {
            let mut e = audit(
                &format!("r{:02}", i / 100),
                (i % 100) as u32,
                t0() + secs((i / 2) as i64),
            );
            e.tenant_id = Some(format!("t{}", i % 3));
            e.action = ACTIONS[i % 4].to_owned();
            e
        })
        .collect();
    // Appended in an order other than time's.
    for offset in 0..3 {
        for e in entries.iter().skip(offset).step_by(3).rev() {
            s.append_audit(e).await.unwrap();
        }
    }
    let latest_first = |keep: &dyn Fn(usize) -> bool| {
        (0..N)
            .rev()
            .filter(|&i| keep(i))
            .map(|i| entries[i].clone())
            .collect::<Vec<_>>()
    };

    // Everything, in pages of MAX_PAGE: full pages, then the rest, then no cursor.
    assert_eq!(MAX_PAGE, 500);
    let pages = walk_audit(s, &AuditFilter::default(), MAX_PAGE).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, vec![500, 500, 200]);
    assert!(pages[..2].iter().all(|p| p.next.is_some()));
    assert_eq!(pages[2].next, None);
    let all = walked(&pages);
    assert_eq!(all.len(), N);
    assert!(
        all == latest_first(&|_| true),
        "each entry once, latest first"
    );

    // A filter's entries, each once and in order, however the pages fall.
    let by_tenant = walked(&walk_audit(s, &audit_filter(None, Some("t0"), None), 150).await);
    assert_eq!(by_tenant.len(), 400);
    assert!(by_tenant == latest_first(&|i| i % 3 == 0));
    let by_action =
        walked(&walk_audit(s, &audit_filter(None, None, Some("zeroAddition")), MAX_PAGE).await);
    assert!(by_action == latest_first(&|i| i % 4 == 2));
    let combined = audit_filter(Some("r05"), Some("t1"), Some("updateAddition"));
    let combined = walked(&walk_audit(s, &combined, 7).await);
    let expected = latest_first(&|i| i / 100 == 5 && i % 3 == 1 && i % 4 == 1);
    assert!(!expected.is_empty());
    assert!(combined == expected);

    // Filters that match nothing: empty pages (on DynamoDB possibly several, each
    // with a cursor) until `next` is None.
    for filter in [
        audit_filter(None, Some("nobody"), None),
        audit_filter(None, None, Some("login")),
        audit_filter(Some(""), None, None),
        // Run ids match whole: "r1" is no prefix of "r10".
        audit_filter(Some("r1"), None, None),
        audit_filter(Some("r0"), Some("t1"), Some("updateAddition")),
    ] {
        let pages = walk_audit(s, &filter, MAX_PAGE).await;
        assert!(walked(&pages).is_empty(), "{filter:?}");
        assert_eq!(pages.last().unwrap().next, None);
    }
}

/// Enough data that a DynamoDB query needs several 1 MB pages.
async fn lists_span_several_pages(f: &Fixture) {
    let s = f.store();
    let n = 14;
    for i in 0..n {
        s.put_customer_status(&CustomerStatus {
            tenant_id: format!("t{i:02}"),
            run_id: "r1".to_owned(),
            updated_at: t0(),
            report: big_value(150_000),
        })
        .await
        .unwrap();
        let mut r = run(&format!("run-{i:02}"), RunStatus::Succeeded);
        r.report = big_value(150_000);
        s.put_run(&r).await.unwrap();
        let mut big = audit("big", i, t0() + secs(i64::from(i)));
        big.actor = "y".repeat(150_000);
        s.append_audit(&big).await.unwrap();
        s.append_audit(&audit("small", i, t0() + secs(i64::from(i))))
            .await
            .unwrap();
    }
    let statuses = s.list_customer_statuses(100, None).await.unwrap();
    assert_eq!(statuses.items.len(), n as usize);

    let runs = s.list_runs(100, None).await.unwrap();
    let expected: Vec<String> = (0..n).rev().map(|i| format!("run-{i:02}")).collect();
    assert_eq!(ids(&runs, |r| &r.run_id), expected);
    let older = s.list_runs(9, Some("run-12")).await.unwrap();
    assert_eq!(ids(&older, |r| &r.run_id), expected[2..11].to_vec());

    let small = s.list_audit(100, Some("small")).await.unwrap();
    assert_eq!(small.len(), n as usize);
    assert!(small.iter().all(|e| e.run_id == "small"));
    assert_eq!(
        s.list_audit(100, Some("big")).await.unwrap().len(),
        n as usize
    );
    assert_eq!(s.list_audit(100, None).await.unwrap().len(), 2 * n as usize);
}

fn run_customer(run_id: &str, tenant: &str, report: serde_json::Value) -> RunCustomer {
    RunCustomer {
        run_id: run_id.to_owned(),
        tenant_id: tenant.to_owned(),
        report,
        expires_at: Some(t0() + chrono::Duration::days(90)),
    }
}

async fn run_customers_page_by_tenant_within_their_run(f: &Fixture) {
    let s = f.store();
    let empty = s.list_run_customers("r1", 10, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
    let r1: Vec<RunCustomer> = ["t3", "t1", "t2"]
        .iter()
        .map(|t| run_customer("r1", t, serde_json::json!({"tenantId": t, "v": 1})))
        .collect();
    s.put_run_customers(&r1).await.unwrap();
    s.put_run_customers(&[run_customer("r2", "t0", serde_json::json!({"other": true}))])
        .await
        .unwrap();
    // A put replaces the same customer's result in the same run.
    let t2_again = run_customer("r1", "t2", serde_json::json!({"tenantId": "t2", "v": 2}));
    s.put_run_customers(std::slice::from_ref(&t2_again))
        .await
        .unwrap();

    let first = s.list_run_customers("r1", 2, None).await.unwrap();
    assert_eq!(ids(&first.items, |c| &c.tenant_id), ["t1", "t2"]);
    assert_eq!(first.items[1], t2_again);
    assert_eq!(first.next.as_deref(), Some("t2"));
    let rest = s
        .list_run_customers("r1", 2, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items, vec![r1[0].clone()]);
    assert_eq!(rest.next, None, "a short page is the last");
    let r2 = s.list_run_customers("r2", 10, None).await.unwrap();
    assert_eq!(ids(&r2.items, |c| &c.tenant_id), ["t0"], "runs do not mix");
    // A limit past the bound is brought into it, not refused.
    let all = s.list_run_customers("r1", 1_000_000, None).await.unwrap();
    assert_eq!(all.items.len(), 3);
}

/// The done set of a resumed run: the tenant ids of one run's stored results, in
/// the same pages and order as the results, other runs left out.
async fn run_customer_ids_page_like_the_results_without_them(f: &Fixture) {
    let s = f.store();
    let empty = s.list_run_customer_ids("r1", 10, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
    let n: usize = 1_234;
    let tenants: Vec<String> = (0..n).rev().map(|i| format!("t{i:05}")).collect();
    for chunk in tenants.chunks(25) {
        let items: Vec<RunCustomer> = chunk
            .iter()
            .map(|t| {
                run_customer(
                    "r1",
                    t,
                    serde_json::json!({"tenantId": t, "pad": "x".repeat(2_000)}),
                )
            })
            .collect();
        s.put_run_customers(&items).await.unwrap();
    }
    s.put_run_customers(&[run_customer("r0", "t00000", serde_json::json!({}))])
        .await
        .unwrap();
    s.put_run_customers(&[run_customer("r2", "a", serde_json::json!({}))])
        .await
        .unwrap();

    let first = s.list_run_customer_ids("r1", 3, None).await.unwrap();
    assert_eq!(first.items, ["t00000", "t00001", "t00002"]);
    assert_eq!(first.next.as_deref(), Some("t00002"));
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .list_run_customer_ids("r1", MAX_PAGE, after.as_deref())
            .await
            .unwrap();
        let results = s
            .list_run_customers("r1", MAX_PAGE, after.as_deref())
            .await
            .unwrap();
        assert_eq!(
            page.items,
            ids_of(&results.items),
            "the same page as the results"
        );
        assert_eq!(page.next, results.next);
        pages += 1;
        ids.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, n.div_ceil(MAX_PAGE));
    let mut expected = tenants;
    expected.sort();
    assert_eq!(ids, expected, "every tenant once, in tenant-id order");
    // A limit past the bound is brought into it.
    let big = s
        .list_run_customer_ids("r1", 1_000_000, None)
        .await
        .unwrap();
    assert_eq!(big.items.len(), MAX_PAGE);
}

fn ids_of(items: &[RunCustomer]) -> Vec<String> {
    items.iter().map(|c| c.tenant_id.clone()).collect()
}

/// A customer's result as a run produces it, with an error of realistic length
/// (ConnectWise's validation message plus the advice).
fn customer_report(i: usize) -> CustomerReport {
    let message = format!(
        "ConnectWise rejected POST /finance/agreements/{}/additions (400 Bad Request):          {{\"code\":\"InvalidObject\",\"message\":\"addition object is invalid\",         \"errors\":[{{\"code\":\"InvalidField\",\"message\":\"The product          Sophos_Intercept_X_Advanced_for_Server_with_XDR is inactive and cannot be added          to agreement Sophos MSP - Customer {i:05}.\",\"resource\":\"addition\",         \"field\":\"product\"}}]}}",
        10_000 + i
    );
    CustomerReport {
        tenant_id: format!("0f8a3c52-{i:04x}-4d1e-9b7a-{i:012x}"),
        tenant_name: format!("Customer {i:05} Holdings GmbH & Co. KG"),
        status: CustomerState::Error,
        reason: None,
        company_id: Some(10_000 + i as i64),
        company_identifier: Some(format!("CUST{i:05}")),
        company_name: Some(format!("Customer {i:05} Holdings GmbH & Co. KG")),
        agreement_id: Some(20_000 + i as i64),
        agreement_name: Some(format!("Sophos MSP - Customer {i:05}")),
        agreement_type: Some("Sophos MSP".into()),
        products: vec![ProductReport {
            identifier: "Sophos_Intercept_X_Advanced_for_Server_with_XDR".into(),
            sophos_quantity: 12.0,
            previous_quantity: Some(11.0),
            new_quantity: Some(12.0),
            addition_id: Some(30_000 + i as i64),
            action: ProductAction::Skip,
            proposed_quantity: None,
            held_change_id: None,
            review_rule: None,
        }],
        errors: vec![ErrorReport::new(ErrorCode::CwValidation, message)],
    }
}

/// The scale: one run over 5,000 customers, each with an error, is stored
/// (in the engine's batches of 25) and read back whole, a page at a time; nothing
/// hits DynamoDB's 400 KB item limit (moto enforces it).
async fn a_run_of_5000_customers_is_recorded_whole_and_read_back_in_pages(f: &Fixture) {
    let s = f.store();
    let n = 5_000;
    let reports: Vec<CustomerReport> = (0..n).map(customer_report).collect();
    let mut summary = run("r-5000", RunStatus::Partial);
    summary.report = serde_json::json!({
        "customerCounts": {"total": n, "error": n, "withErrors": n, "errors": n}
    });
    s.put_run(&summary).await.unwrap();
    for chunk in reports.chunks(25) {
        let items: Vec<RunCustomer> = chunk
            .iter()
            .map(|c| run_customer("r-5000", &c.tenant_id, serde_json::to_value(c).unwrap()))
            .collect();
        s.put_run_customers(&items).await.unwrap();
    }

    let mut read: Vec<CustomerReport> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .list_run_customers("r-5000", MAX_PAGE, after.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= MAX_PAGE);
        pages += 1;
        read.extend(
            page.items
                .into_iter()
                .map(|c| serde_json::from_value::<CustomerReport>(c.report).unwrap()),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= n / MAX_PAGE, "{pages} pages");
    let mut expected = reports;
    expected.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    assert_eq!(read.len(), n, "every customer once");
    assert_eq!(read, expected, "read back exactly, in tenant-id order");
    assert_eq!(s.get_run("r-5000").await.unwrap(), Some(summary));
}

async fn lease_lifecycle(f: &Fixture) {
    let s = f.store();
    let t = t0();
    assert_eq!(
        s.acquire_lease("run-a", t, MINUTE).await.unwrap(),
        LeaseOutcome::Acquired
    );
    // Another run is told who holds it and until when.
    assert_eq!(
        s.acquire_lease("run-b", t + secs(1), MINUTE).await.unwrap(),
        LeaseOutcome::HeldBy(Lease {
            run_id: "run-a".to_owned(),
            expires_at: t + secs(60),
        })
    );
    // The holder may acquire again (and so extends it).
    assert_eq!(
        s.acquire_lease("run-a", t + secs(2), MINUTE).await.unwrap(),
        LeaseOutcome::Acquired
    );
    // Renew: holder yes, others no.
    assert!(s.renew_lease("run-a", t + secs(3), MINUTE).await.unwrap());
    assert!(!s.renew_lease("run-b", t + secs(3), MINUTE).await.unwrap());
    assert_eq!(
        s.acquire_lease("run-b", t + secs(4), MINUTE).await.unwrap(),
        LeaseOutcome::HeldBy(Lease {
            run_id: "run-a".to_owned(),
            expires_at: t + secs(63),
        })
    );
    // Still held at 62 s thanks to the renewal (the first grant ended at 60 s).
    assert!(matches!(
        s.acquire_lease("run-b", t + secs(62), MINUTE).await.unwrap(),
        LeaseOutcome::HeldBy(Lease { ref run_id, .. }) if run_id == "run-a"
    ));
    // Release by a non-holder does nothing.
    s.release_lease("run-b").await.unwrap();
    assert!(matches!(
        s.acquire_lease("run-b", t + secs(5), MINUTE).await.unwrap(),
        LeaseOutcome::HeldBy(Lease { ref run_id, .. }) if run_id == "run-a"
    ));
    // Release by the holder frees it.
    s.release_lease("run-a").await.unwrap();
    assert!(!s.renew_lease("run-a", t + secs(6), MINUTE).await.unwrap());
    assert_eq!(
        s.acquire_lease("run-b", t + secs(6), MINUTE).await.unwrap(),
        LeaseOutcome::Acquired
    );
    // Releasing twice is harmless.
    s.release_lease("run-a").await.unwrap();
    assert!(s.renew_lease("run-b", t + secs(7), MINUTE).await.unwrap());
}

async fn lease_expired_can_be_taken_over(f: &Fixture) {
    let s = f.store();
    let t = t0();
    assert_eq!(
        s.acquire_lease("crashed", t, MINUTE).await.unwrap(),
        LeaseOutcome::Acquired
    );
    assert!(matches!(
        s.acquire_lease("next", t + secs(59), MINUTE).await.unwrap(),
        LeaseOutcome::HeldBy(_)
    ));
    // Later than its expiry: the lease can be taken over.
    assert_eq!(
        s.acquire_lease("next", t + secs(61), MINUTE).await.unwrap(),
        LeaseOutcome::Acquired
    );
    // The old holder has lost it.
    assert!(
        !s.renew_lease("crashed", t + secs(62), MINUTE)
            .await
            .unwrap()
    );
    s.release_lease("crashed").await.unwrap();
    assert_eq!(
        s.acquire_lease("third", t + secs(62), MINUTE)
            .await
            .unwrap(),
        LeaseOutcome::HeldBy(Lease {
            run_id: "next".to_owned(),
            expires_at: t + secs(121),
        })
    );
}

/// Handles to race with: the fixture's store, alternating with the second handle.
fn racers(f: &Fixture, n: usize) -> Vec<Arc<dyn Store>> {
    (0..n)
        .map(|i| match (&f.other, i % 2) {
            (Some(other), 1) => Arc::clone(other),
            _ => Arc::clone(&f.store),
        })
        .collect()
}

async fn lease_race_has_one_winner(f: &Fixture) {
    let n = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = racers(f, n)
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let run_id = format!("racer-{i}");
                barrier.wait().await;
                let outcome = store.acquire_lease(&run_id, t0(), MINUTE).await.unwrap();
                (run_id, outcome)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, o)| *o == LeaseOutcome::Acquired)
        .map(|(id, _)| id)
        .collect();
    if f.atomic_conditional_writes {
        assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    } else {
        assert!(!winners.is_empty(), "at least one winner: {results:?}");
    }
    // Every loser is told about a winner, and until when it holds the lease.
    for (id, outcome) in &results {
        if !winners.contains(&id) {
            match outcome {
                LeaseOutcome::HeldBy(lease) => {
                    assert!(winners.contains(&&lease.run_id), "{results:?}");
                    assert_eq!(lease.expires_at, t0() + secs(60));
                }
                LeaseOutcome::Acquired => unreachable!(),
            }
        }
    }
}

async fn claim_once_dedups_until_expiry(f: &Fixture) {
    let s = f.store();
    let t = t0();
    let hour = Duration::from_secs(3600);
    assert_eq!(s.claim_once("evt-1", "r1", t, hour).await.unwrap(), None);
    assert_eq!(
        s.claim_once("evt-1", "r2", t + secs(60), hour)
            .await
            .unwrap(),
        Some("r1".to_owned())
    );
    // Another key is independent.
    assert_eq!(s.claim_once("evt-2", "r2", t, hour).await.unwrap(), None);
    // After expiry the key can be claimed again.
    assert_eq!(
        s.claim_once("evt-1", "r3", t + secs(3601), hour)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.claim_once("evt-1", "r4", t + secs(3700), hour)
            .await
            .unwrap(),
        Some("r3".to_owned())
    );
}

/// `claimed` reads a claim without making one (the console's ended sessions).
async fn claimed_reads_a_claim_until_it_expires(f: &Fixture) {
    let s = f.store();
    let t = t0();
    let hour = Duration::from_secs(3600);
    assert_eq!(s.claimed("logout#a", t).await.unwrap(), None);
    // Reading recorded nothing: the key can still be claimed.
    assert_eq!(
        s.claim_once("logout#a", "ended", t, hour).await.unwrap(),
        None
    );
    assert_eq!(
        s.claimed("logout#a", t + secs(60)).await.unwrap(),
        Some("ended".to_owned())
    );
    assert_eq!(s.claimed("logout#b", t + secs(60)).await.unwrap(), None);
    assert_eq!(s.claimed("logout#a", t + secs(3601)).await.unwrap(), None);
}

async fn claim_once_race_has_one_winner(f: &Fixture) {
    let n = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = racers(f, n)
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let run_id = format!("racer-{i}");
                barrier.wait().await;
                let got = store
                    .claim_once("schedule:2024-05-01T06:00", &run_id, t0(), MINUTE)
                    .await
                    .unwrap();
                (run_id, got)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, got)| got.is_none())
        .map(|(id, _)| id)
        .collect();
    if f.atomic_conditional_writes {
        assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    } else {
        assert!(!winners.is_empty(), "at least one winner: {results:?}");
    }
    for (id, got) in &results {
        if !winners.contains(&id) {
            let holder = got.as_ref().expect("a loser is told the winner");
            assert!(winners.contains(&holder), "{results:?}");
        }
    }
}

/// The person filter: exact, alone and with the others, in pages.
async fn audit_pages_filter_by_actor(f: &Fixture) {
    let s = f.store();
    let with_actor = |mut e: AuditEntry, actor: &str| {
        e.actor = actor.to_owned();
        e
    };
    let e = [
        with_actor(tagged_audit("r1", 1, 1, "t1", "createAddition"), "cli:bob"),
        with_actor(
            console_audit(1, t0() + secs(2), "approveChange", Some("t1")),
            "console:alice@example.com",
        ),
        with_actor(
            console_audit(2, t0() + secs(3), "consoleLogin", None),
            "console:password",
        ),
        with_actor(
            console_audit(3, t0() + secs(4), "setMapping", Some("t2")),
            "console:alice@example.com",
        ),
        with_actor(tagged_audit("r2", 1, 5, "t2", "updateAddition"), "schedule"),
        with_actor(
            console_audit(4, t0() + secs(6), "consoleLogin", None),
            "console:alice@example.com",
        ),
        // Another person whose address begins with alice's: not hers.
        with_actor(
            console_audit(5, t0() + secs(7), "consoleLogin", None),
            "console:alice@example.com.evil",
        ),
    ];
    for i in [4, 0, 6, 2, 5, 1, 3] {
        s.append_audit(&e[i]).await.unwrap();
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| e[i].clone()).collect::<Vec<_>>();
    let alice = "console:alice@example.com";
    let none = || audit_filter(None, None, None);
    let cases: Vec<(AuditFilter, Vec<usize>)> = vec![
        (by_actor(alice, none()), vec![5, 3, 1]),
        (by_actor("cli:bob", none()), vec![0]),
        (by_actor("console:password", none()), vec![2]),
        (by_actor("CONSOLE:ALICE@EXAMPLE.COM", none()), vec![]),
        (by_actor("console:alice", none()), vec![]),
        (
            by_actor(alice, audit_filter(None, None, Some("consoleLogin"))),
            vec![5],
        ),
        (
            by_actor(alice, audit_filter(None, Some("t1"), None)),
            vec![1],
        ),
        (
            by_actor(alice, audit_filter(Some(""), None, None)),
            vec![5, 3, 1],
        ),
        (
            by_actor("schedule", audit_filter(Some("r2"), Some("t2"), None)),
            vec![4],
        ),
        (
            by_actor("schedule", audit_filter(Some("r1"), None, None)),
            vec![],
        ),
    ];
    for (filter, expected) in &cases {
        let page = s.list_audit_page(filter, 10, None).await.unwrap();
        assert_eq!(page.items, pick(expected), "{filter:?}");
        assert_eq!(page.next, None, "{filter:?}: nothing follows");
        let pages = walk_audit(s, filter, 1).await;
        assert_eq!(walked(&pages), pick(expected), "{filter:?} in pages of 1");
    }
}

/// `startedBy` is kept; a record written before it existed reads as None.
async fn runs_keep_who_started_them(f: &Fixture) {
    let s = f.store();
    let mut started = run("r-who", RunStatus::Running);
    started.started_by = Some("console:alice@example.com".to_owned());
    s.put_run(&started).await.unwrap();
    assert_eq!(s.get_run("r-who").await.unwrap(), Some(started.clone()));
    let json = serde_json::to_value(&started).unwrap();
    assert_eq!(json["startedBy"], "console:alice@example.com");
    let mut old = json;
    old.as_object_mut().unwrap().remove("startedBy");
    let read: RunRecord = serde_json::from_value(old).unwrap();
    assert_eq!(read.started_by, None);
    s.put_run(&read).await.unwrap();
    assert_eq!(s.get_run("r-who").await.unwrap().unwrap().started_by, None);
}

/// A window starts at its first event and ends `window` later; the next event
/// after it starts again at 1. Another handle (process, container) counts the same.
async fn count_event_counts_within_a_window_then_starts_again(f: &Fixture) {
    let s = f.store();
    let window = Duration::from_secs(15 * 60);
    let other = f.other.as_deref().unwrap_or(s);
    assert_eq!(s.count_event("fail", t0(), window).await.unwrap(), 1);
    assert_eq!(
        s.count_event("fail", t0() + secs(60), window)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        other
            .count_event("fail", t0() + secs(120), window)
            .await
            .unwrap(),
        3
    );
    // Another key is counted apart.
    assert_eq!(
        s.count_event("other", t0() + secs(120), window)
            .await
            .unwrap(),
        1
    );
    // The last instant of the window still counts in it (the window does not slide).
    let last = t0() + secs(15 * 60) - chrono::Duration::milliseconds(1);
    assert_eq!(s.count_event("fail", last, window).await.unwrap(), 4);
    // At its end a new window starts, from that event.
    let next = t0() + secs(15 * 60);
    assert_eq!(other.count_event("fail", next, window).await.unwrap(), 1);
    assert_eq!(
        s.count_event("fail", next + secs(14 * 60), window)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_event("fail", next + secs(15 * 60), window)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_event("other", t0() + secs(180), window)
            .await
            .unwrap(),
        2
    );
}

async fn count_event_race_counts_every_event(f: &Fixture) {
    let n = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = racers(f, n)
        .into_iter()
        .map(|store| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .count_event("race", t0(), Duration::from_secs(900))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    counts.sort_unstable();
    if f.atomic_conditional_writes {
        assert_eq!(
            counts,
            (1..=8).collect::<Vec<u32>>(),
            "each event counted once"
        );
    } else {
        // moto does not lock between requests: no count is above the events sent.
        assert!(counts.iter().all(|c| (1..=8).contains(c)), "{counts:?}");
    }
    let after = f
        .store()
        .count_event("race", t0() + secs(1), Duration::from_secs(900))
        .await
        .unwrap();
    if f.atomic_conditional_writes {
        assert_eq!(after, 9);
    } else {
        assert!((2..=9).contains(&after), "{after}");
    }
}

// ---------------------------------------------------------------- SQLite only

mod sqlite_only {
    use super::*;

    #[tokio::test]
    async fn corrupt_record_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .put_mapping(&mapping("t1", MappingKind::Manual, Some(1)))
            .await
            .unwrap();
        store.put_run(&run("r1", RunStatus::Running)).await.unwrap();

        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE mappings SET body = '{not json' WHERE tenant_id = 't1'",
            [],
        )
        .unwrap();
        raw.execute(
            "UPDATE runs SET body = '{\"runId\":\"r1\"}' WHERE run_id = 'r1'",
            [],
        )
        .unwrap();

        for err in [
            store.get_mapping("t1").await.unwrap_err(),
            store.list_mappings().await.unwrap_err(),
            store.get_run("r1").await.unwrap_err(),
            store.list_runs(5, None).await.unwrap_err(),
        ] {
            match &err {
                StoreError::Corrupt(msg) => {
                    assert!(msg.contains(&path.display().to_string()), "{msg}")
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert!(!err.is_retryable());
        }
        // Other records are unaffected.
        assert_eq!(store.get_mapping("t2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn missing_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("store.db");
        match SqliteStore::open(&path) {
            Err(StoreError::Config(msg)) => {
                assert!(msg.contains(&path.display().to_string()), "{msg}")
            }
            other => panic!("expected Config, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn not_a_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn data_survives_reopen_and_schema_is_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let m = mapping("t1", MappingKind::Discovered, Some(5));
        {
            let store = SqliteStore::open(&path).unwrap();
            store.put_mapping(&m).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get_mapping("t1").await.unwrap(), Some(m));

        let raw = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, sophos_cw_sync::store::sqlite::SCHEMA_VERSION);
        let mode: String = raw
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// A schema-1 file (audit with `run_id` only) gains the filter columns, filled
    /// from the bodies; a body that is not JSON does not stop it.
    #[tokio::test]
    async fn a_schema_1_audit_trail_is_migrated_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let entry = tagged_audit;
        let old = [
            entry("r1", 1, 1, "t1", "createAddition"),
            entry("r1", 2, 2, "t2", "updateAddition"),
            entry("r2", 1, 3, "t1", "updateAddition"),
        ];
        let key = |e: &AuditEntry| {
            format!(
                "{}#{}#{:06}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.run_id,
                e.seq
            )
        };
        {
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.execute_batch(
                "CREATE TABLE audit (
                     sort_key TEXT PRIMARY KEY,
                     run_id   TEXT NOT NULL,
                     body     TEXT NOT NULL
                 );
                 CREATE INDEX audit_by_run ON audit (run_id, sort_key);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            for e in &old {
                let mut body = serde_json::to_value(e).unwrap();
                body.as_object_mut().unwrap().remove("detail");
                raw.execute(
                    "INSERT INTO audit (sort_key, run_id, body) VALUES (?1, ?2, ?3)",
                    rusqlite::params![key(e), e.run_id, body.to_string()],
                )
                .unwrap();
            }
            raw.execute(
                "INSERT INTO audit (sort_key, run_id, body) VALUES ('0000#rx#000001', 'rx', '{not json')",
                [],
            )
            .unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        let new = entry("r3", 1, 4, "t1", "zeroAddition");
        store.append_audit(&new).await.unwrap();
        let page = |f: AuditFilter| {
            let store = store.clone();
            async move { store.list_audit_page(&f, 10, None).await.unwrap() }
        };
        let t1 = page(audit_filter(None, Some("t1"), None)).await;
        assert_eq!(t1.items, vec![new.clone(), old[2].clone(), old[0].clone()]);
        assert_eq!(t1.next, None);
        let updates = page(audit_filter(None, None, Some("updateAddition"))).await;
        assert_eq!(updates.items, vec![old[2].clone(), old[1].clone()]);
        let r1 = page(audit_filter(Some("r1"), Some("t2"), None)).await;
        assert_eq!(r1.items, vec![old[1].clone()]);
        // The unreadable body is reported when read, naming the file.
        match store.list_audit(10, Some("rx")).await {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains(&path.display().to_string()), "{msg}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        drop(store);

        let raw = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, sophos_cw_sync::store::sqlite::SCHEMA_VERSION);
        let columns: Vec<(String, String)> = raw
            .prepare("SELECT sort_key, tenant_id || '/' || action FROM audit ORDER BY sort_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns[0], ("0000#rx#000001".to_owned(), "/".to_owned()));
        assert_eq!(columns[1].1, "t1/createAddition");
        // Opening it again changes nothing.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_audit(10, Some("r1")).await.unwrap().len(), 2);
    }
}

/// A schema-2 file (audit without `actor`) gains the column, filled from the bodies.
mod sqlite_schema_2 {
    use super::*;

    #[tokio::test]
    async fn a_schema_2_audit_trail_is_migrated_and_filtered_by_actor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut bob = tagged_audit("r1", 1, 1, "t1", "createAddition");
        bob.actor = "cli:bob".to_owned();
        let alice = console_audit(1, t0() + secs(2), "approveChange", Some("t1"));
        {
            let store = SqliteStore::open(&path).unwrap();
            store.append_audit(&bob).await.unwrap();
            store.append_audit(&alice).await.unwrap();
        }
        {
            // What schema 2 had: no actor column, no index on it.
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.execute_batch(
                "DROP INDEX audit_by_actor;
                 ALTER TABLE audit DROP COLUMN actor;
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let filter = by_actor("cli:bob", audit_filter(None, None, None));
        let page = store.list_audit_page(&filter, 10, None).await.unwrap();
        assert_eq!(page.items, vec![bob.clone()]);
        let filter = by_actor("console:alice", audit_filter(None, Some("t1"), None));
        let page = store.list_audit_page(&filter, 10, None).await.unwrap();
        assert_eq!(page.items, vec![alice.clone()]);
        drop(store);
        let raw = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, sophos_cw_sync::store::sqlite::SCHEMA_VERSION);
    }
}

// ---------------------------------------------------------------- DynamoDB only

mod dynamodb_actor {
    use super::*;

    /// An entry written before `actor` was copied to its own attribute is still
    /// found by the person filter (through its JSON body), and only for that person.
    #[tokio::test]
    async fn entries_without_the_actor_attribute_are_found_by_actor() {
        let (conf, store) = new_dynamo_table().await;
        let mut bob = tagged_audit("r1", 1, 1, "t1", "createAddition");
        bob.actor = "cli:bob".to_owned();
        let alice = console_audit(1, t0() + secs(2), "approveChange", Some("t1"));
        store.append_audit(&bob).await.unwrap();
        store.append_audit(&alice).await.unwrap();
        let client = Client::new(&conf);
        for e in [&bob, &alice] {
            let sk = format!(
                "{}#{}#{:06}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.run_id,
                e.seq
            );
            client
                .update_item()
                .table_name(store.table_name())
                .key("pk", AttributeValue::S("AUDIT".into()))
                .key("sk", AttributeValue::S(sk))
                .update_expression("REMOVE actor")
                .send()
                .await
                .unwrap();
        }
        let page = store
            .list_audit_page(
                &by_actor("cli:bob", audit_filter(None, None, None)),
                10,
                None,
            )
            .await
            .unwrap();
        assert_eq!(page.items, vec![bob.clone()]);
        let page = store
            .list_audit_page(
                &by_actor(
                    "console:alice",
                    audit_filter(None, None, Some("approveChange")),
                ),
                10,
                None,
            )
            .await
            .unwrap();
        assert_eq!(page.items, vec![alice.clone()]);
        let page = store
            .list_audit_page(
                &by_actor("cli:bo", audit_filter(None, None, None)),
                10,
                None,
            )
            .await
            .unwrap();
        assert_eq!(page.items, vec![]);
    }
}

mod dynamodb_only {
    use super::*;

    /// DynamoDB's own limit (moto enforces it): the error says the item is too
    /// large, keeps DynamoDB's message, and does not blame the key schema.
    #[tokio::test]
    async fn an_item_over_400_kb_is_reported_as_too_large_not_as_key_schema() {
        let (_conf, store) = new_dynamo_table().await;
        let mut r = run("r-huge", RunStatus::Succeeded);
        r.report = big_value(450_000);
        let err = store.put_run(&r).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
        assert!(!err.is_retryable(), "the same write fails again");
        assert!(msg.contains("400 KB"), "{msg}");
        assert!(
            msg.to_ascii_lowercase().contains("item size"),
            "DynamoDB's own message is kept: {msg}"
        );
        assert!(!msg.contains("key schema"), "{msg}");
        // The batch write of run customers reports the same way.
        let big = super::run_customer("r-huge", "t1", big_value(450_000));
        let err = store.put_run_customers(&[big]).await.unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
        assert!(!err.to_string().contains("key schema"), "{err}");
    }

    /// A table with another key schema is told apart: that one is the key schema.
    #[tokio::test]
    async fn a_table_with_another_key_schema_is_reported_as_such() {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let conf = moto::aws_config().await;
        let client = Client::new(&conf);
        let table = moto::unique_name("wrong-keys-");
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let store = DynamoStore::new(client, &table);
        let err = store.get_run("r1").await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("key schema"), "{err}");
    }

    async fn raw_item(
        client: &Client,
        table: &str,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    #[tokio::test]
    async fn run_items_carry_a_ttl_attribute() {
        let (conf, store) = new_dynamo_table().await;
        let client = Client::new(&conf);
        let expires = t0() + chrono::Duration::days(30);
        let mut r = run("r-ttl", RunStatus::Succeeded);
        r.expires_at = Some(expires);
        store.put_run(&r).await.unwrap();
        store
            .put_run(&run("r-keep", RunStatus::Running))
            .await
            .unwrap();

        let item = raw_item(&client, store.table_name(), "RUN", "r-ttl")
            .await
            .unwrap();
        assert_eq!(
            item.get("ttl"),
            Some(&AttributeValue::N(expires.timestamp().to_string()))
        );
        let body: RunRecord =
            serde_json::from_str(item.get("body").unwrap().as_s().unwrap()).unwrap();
        assert_eq!(body, r);

        let keep = raw_item(&client, store.table_name(), "RUN", "r-keep")
            .await
            .unwrap();
        assert!(!keep.contains_key("ttl"));

        // Claims expire through TTL too.
        store
            .claim_once("evt", "r1", t0(), Duration::from_secs(3600))
            .await
            .unwrap();
        let claim = raw_item(&client, store.table_name(), "CLAIM", "evt")
            .await
            .unwrap();
        assert_eq!(
            claim.get("ttl"),
            Some(&AttributeValue::N(
                (t0() + secs(3600)).timestamp().to_string()
            ))
        );
        assert_eq!(
            claim.get("runId"),
            Some(&AttributeValue::S("r1".to_owned()))
        );

        let ttl = client
            .describe_time_to_live()
            .table_name(store.table_name())
            .send()
            .await
            .unwrap();
        assert_eq!(
            ttl.time_to_live_description()
                .and_then(|d| d.attribute_name()),
            Some("ttl")
        );
    }

    #[tokio::test]
    async fn item_layout_follows_the_single_table_design() {
        let (conf, store) = new_dynamo_table().await;
        let client = Client::new(&conf);
        let table = store.table_name();
        store
            .put_addition(&addition("t1", "CIXA", 1.0))
            .await
            .unwrap();
        let e = audit("r1", 7, t0());
        store.append_audit(&e).await.unwrap();
        store.acquire_lease("r1", t0(), MINUTE).await.unwrap();

        assert!(
            raw_item(&client, table, "ADDITION", "t1#CIXA")
                .await
                .is_some()
        );
        let a = raw_item(
            &client,
            table,
            "AUDIT",
            "2024-05-01T06:00:00.000Z#r1#000007",
        )
        .await
        .unwrap();
        assert_eq!(a.get("runId"), Some(&AttributeValue::S("r1".to_owned())));
        assert_eq!(
            a.get("tenantId"),
            Some(&AttributeValue::S("tenant-a".to_owned()))
        );
        assert_eq!(
            a.get("action"),
            Some(&AttributeValue::S("createAddition".to_owned()))
        );
        // A console entry has no run and no customer: no empty attributes for them.
        let login = console_audit(3, t0(), "login", None);
        store.append_audit(&login).await.unwrap();
        let c = raw_item(&client, table, "AUDIT", "2024-05-01T06:00:00.000Z##000003")
            .await
            .unwrap();
        assert!(
            !c.contains_key("runId") && !c.contains_key("tenantId"),
            "{c:?}"
        );
        assert_eq!(
            c.get("action"),
            Some(&AttributeValue::S("login".to_owned()))
        );
        let lease = raw_item(&client, table, "LEASE", "LEASE").await.unwrap();
        assert_eq!(
            lease.get("runId"),
            Some(&AttributeValue::S("r1".to_owned()))
        );
        assert_eq!(
            lease.get("expiresAt"),
            Some(&AttributeValue::N(
                (t0() + secs(60)).timestamp_millis().to_string()
            ))
        );
        assert!(lease.get("body").is_some_and(|b| b.is_s()));
    }

    fn audit_key(e: &AuditEntry) -> String {
        format!(
            "{}#{}#{:06}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.run_id,
            e.seq
        )
    }

    /// An audit item as the build before `tenantId`/`action` attributes wrote it:
    /// keys, `runId` and a body without `detail`.
    fn legacy_audit_item(e: &AuditEntry) -> std::collections::HashMap<String, AttributeValue> {
        let mut body = serde_json::to_value(e).unwrap();
        body.as_object_mut().unwrap().remove("detail");
        std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S("AUDIT".to_owned())),
            ("sk".to_owned(), AttributeValue::S(audit_key(e))),
            ("body".to_owned(), AttributeValue::S(body.to_string())),
            ("runId".to_owned(), AttributeValue::S(e.run_id.clone())),
        ])
    }

    /// Entries written before the filter attributes are found by every filter.
    #[tokio::test]
    async fn audit_entries_without_filter_attributes_are_still_found() {
        let (conf, store) = new_dynamo_table().await;
        let client = Client::new(&conf);
        let entry = tagged_audit;
        let old = [
            entry("r1", 1, 1, "t1", "createAddition"),
            entry("r1", 2, 2, "t2", "updateAddition"),
            // A tenant id that is a prefix of another, and one JSON must escape.
            entry("r1", 3, 3, "t", "updateAddition"),
            entry("r1", 4, 4, "t\"q", "zeroAddition"),
        ];
        for e in &old {
            client
                .put_item()
                .table_name(store.table_name())
                .set_item(Some(legacy_audit_item(e)))
                .send()
                .await
                .unwrap();
        }
        let new = [
            entry("r2", 1, 5, "t1", "updateAddition"),
            console_audit(1, t0() + secs(6), "login", None),
        ];
        for e in &new {
            store.append_audit(e).await.unwrap();
        }
        let cases = [
            (audit_filter(None, Some("t1"), None), vec![&new[0], &old[0]]),
            (audit_filter(None, Some("t"), None), vec![&old[2]]),
            (audit_filter(None, Some("t\"q"), None), vec![&old[3]]),
            (audit_filter(None, Some(""), None), vec![&new[1]]),
            (
                audit_filter(None, None, Some("updateAddition")),
                vec![&new[0], &old[2], &old[1]],
            ),
            (audit_filter(None, None, Some("update")), vec![]),
            (
                audit_filter(Some("r1"), None, None),
                vec![&old[3], &old[2], &old[1], &old[0]],
            ),
            (
                audit_filter(Some("r1"), Some("t2"), Some("updateAddition")),
                vec![&old[1]],
            ),
            (audit_filter(Some(""), None, None), vec![&new[1]]),
        ];
        for (filter, expected) in cases {
            let page = store.list_audit_page(&filter, 10, None).await.unwrap();
            let expected: Vec<AuditEntry> = expected.into_iter().cloned().collect();
            assert_eq!(page.items, expected, "{filter:?}");
            assert_eq!(page.next, None, "{filter:?}");
        }
    }

    /// One call reads a bounded part of the trail: a filter that matches only the
    /// oldest of 6,001 entries returns an empty page with a cursor first, and the
    /// entry when the cursor is followed.
    #[tokio::test]
    async fn a_filtered_audit_page_reads_a_bounded_part_of_the_trail() {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        use sophos_cw_sync::store::dynamodb::{AUDIT_FILTERED_QUERY_LIMIT, AUDIT_QUERY_PAGES};
        let (conf, store) = new_dynamo_table().await;
        let client = Client::new(&conf);
        let bound = AUDIT_QUERY_PAGES * AUDIT_FILTERED_QUERY_LIMIT as usize;
        assert_eq!(bound, 5_000);
        let mut needle = audit("r0", 0, t0());
        needle.tenant_id = Some("needle".to_owned());
        store.append_audit(&needle).await.unwrap();
        // `bound + 1000` later entries of other customers, as `append_audit` writes them.
        let others: Vec<AuditEntry> = (1..=bound as u32 + 1000)
            .map(|i| audit("r1", i, t0() + chrono::Duration::milliseconds(i64::from(i))))
            .collect();
        for chunk in others.chunks(25) {
            let requests = chunk
                .iter()
                .map(|e| {
                    let item = std::collections::HashMap::from([
                        ("pk".to_owned(), AttributeValue::S("AUDIT".to_owned())),
                        ("sk".to_owned(), AttributeValue::S(audit_key(e))),
                        (
                            "body".to_owned(),
                            AttributeValue::S(serde_json::to_string(e).unwrap()),
                        ),
                        ("runId".to_owned(), AttributeValue::S(e.run_id.clone())),
                        (
                            "tenantId".to_owned(),
                            AttributeValue::S(e.tenant_id.clone().unwrap()),
                        ),
                        ("action".to_owned(), AttributeValue::S(e.action.clone())),
                    ]);
                    let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            let out = client
                .batch_write_item()
                .request_items(store.table_name(), requests)
                .send()
                .await
                .unwrap();
            assert!(
                out.unprocessed_items.unwrap_or_default().is_empty(),
                "moto processes every item"
            );
        }

        let filter = audit_filter(None, Some("needle"), None);
        let first = store.list_audit_page(&filter, 10, None).await.unwrap();
        assert!(first.items.is_empty(), "{:?}", first.items);
        let cursor = first.next.expect("a cursor where the call stopped");
        // It stopped after reading `bound` entries, the newest first.
        assert_eq!(cursor, audit_key(&others[others.len() - bound]));
        let second = store
            .list_audit_page(&filter, 10, Some(&cursor))
            .await
            .unwrap();
        assert_eq!(second.items, vec![needle.clone()]);
        assert_eq!(second.next, None);
        // `list_audit` follows the cursors itself.
        let unfiltered = store.list_audit(bound + 2000, None).await.unwrap();
        assert_eq!(unfiltered.len(), bound + 1001);
        assert_eq!(unfiltered.last(), Some(&needle));
    }

    #[tokio::test]
    async fn corrupt_record_is_reported_as_corrupt() {
        let (conf, store) = new_dynamo_table().await;
        let client = Client::new(&conf);
        client
            .put_item()
            .table_name(store.table_name())
            .item("pk", AttributeValue::S("MAPPING".to_owned()))
            .item("sk", AttributeValue::S("t1".to_owned()))
            .item("body", AttributeValue::S("{not json".to_owned()))
            .send()
            .await
            .unwrap();
        for err in [
            store.get_mapping("t1").await.unwrap_err(),
            store.list_mappings().await.unwrap_err(),
        ] {
            match &err {
                StoreError::Corrupt(msg) => assert!(msg.contains(store.table_name()), "{msg}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn missing_table_is_a_config_error() {
        let conf = moto::aws_config().await;
        let table = moto::unique_name("missing-");
        let store = DynamoStore::new(Client::new(&conf), &table);
        match store.get_settings().await {
            Err(StoreError::Config(msg)) => assert!(msg.contains(&table), "{msg}"),
            other => panic!("expected Config, got {other:?}"),
        }
        match store.acquire_lease("r1", t0(), MINUTE).await {
            Err(StoreError::Config(msg)) => assert!(msg.contains(&table), "{msg}"),
            other => panic!("expected Config, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn setup_is_idempotent() {
        let (_conf, store) = new_dynamo_table().await;
        store.create_table_if_missing().await.unwrap();
        store.enable_ttl().await.unwrap();
        store.put_settings(&Settings::default()).await.unwrap();
        assert_eq!(
            store.get_settings().await.unwrap(),
            Some(Settings::default())
        );
    }
}

// ---------------------------------------------------------------- held changes

fn held(id: &str, status: HeldStatus) -> HeldChange {
    HeldChange {
        id: id.to_owned(),
        month: id[..7].to_owned(),
        tenant_id: "t-1".into(),
        tenant_name: "Acme Ltd".into(),
        company_identifier: Some("ACME".into()),
        company_id: Some(101),
        agreement_id: 201,
        addition_id: Some(301),
        identifier: "Sophos_Intercept_X_Advanced".into(),
        product_id: Some(901),
        op: HeldOp::Update,
        current_quantity: 40.0,
        proposed_quantity: 28.0,
        usage_lines: vec![HeldUsageLine {
            product_code: Some("CIXA-MSP".into()),
            sku: None,
            product_description: Some("Intercept X Advanced".into()),
            quantity: 28.0,
        }],
        usage_lines_omitted: 0,
        rule: ReviewRule::DecreaseOverUnits,
        reason: "a decrease of 12 units".into(),
        run_id: "r1".into(),
        status,
        rejected_quantities: Vec::new(),
        decided_by: None,
        decided_at: None,
        applied_by_run: None,
        note: None,
        created_at: t0(),
        updated_at: t0(),
        expires_at: Some(t0() + chrono::Duration::days(120)),
        version: 1,
    }
}

async fn held_changes_write_over_the_version_read(f: &Fixture) {
    let s = f.store.as_ref();
    let first = held("2026-11-aaaaaaaaaaaa", HeldStatus::Held);
    assert!(s.put_held_change(&first, None).await.unwrap());
    assert!(
        !s.put_held_change(&first, None).await.unwrap(),
        "a second create of the same id is refused"
    );
    assert_eq!(
        s.get_held_change(&first.id).await.unwrap(),
        Some(first.clone())
    );
    let approved = HeldChange {
        status: HeldStatus::Approved,
        version: 2,
        ..first.clone()
    };
    assert!(s.put_held_change(&approved, Some(1)).await.unwrap());
    // A writer that read version 1 is refused and changes nothing.
    let stale = HeldChange {
        proposed_quantity: 30.0,
        version: 2,
        ..first.clone()
    };
    assert!(!s.put_held_change(&stale, Some(1)).await.unwrap());
    assert_eq!(s.get_held_change(&first.id).await.unwrap(), Some(approved));
    assert_eq!(s.get_held_change("2026-11-nothere").await.unwrap(), None);
    let other = held("2026-11-bbbbbbbbbbbb", HeldStatus::Held);
    s.put_held_change(&other, None).await.unwrap();
    let mut got = s
        .get_held_changes(&[first.id.clone(), other.id.clone(), "2026-11-missing".into()])
        .await
        .unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&got, |h| &h.id), [first.id.clone(), other.id.clone()]);
    assert!(s.get_held_changes(&[]).await.unwrap().is_empty());
}

async fn held_changes_list_open_ones_latest_month_first_in_pages(f: &Fixture) {
    let s = f.store.as_ref();
    let statuses = [
        HeldStatus::Held,
        HeldStatus::Approved,
        HeldStatus::Rejected,
        HeldStatus::Applied,
        HeldStatus::Closed,
    ];
    let mut open = Vec::new();
    let mut every = Vec::new();
    for month in ["2026-10", "2026-11"] {
        for i in 0..30 {
            let status = statuses[i % statuses.len()];
            let h = held(&format!("{month}-{i:012x}"), status);
            s.put_held_change(&h, None).await.unwrap();
            every.push(h.id.clone());
            if status.is_open() {
                open.push(h.id.clone());
            }
        }
    }
    every.sort_by(|a, b| b.cmp(a));
    open.sort_by(|a, b| b.cmp(a));
    for (open_only, expected) in [(false, &every), (true, &open)] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s
                .list_held_changes(open_only, 7, after.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(page.items.iter().map(|h| h.id.clone()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(&seen, expected, "open_only {open_only}");
    }
    assert!(open[0].starts_with("2026-11"), "latest month first");
}

/// The home page's count: held and approved changes, following each change as it
/// is decided, applied or closed, and one refused write (a stale version) changes
/// nothing.
async fn open_held_changes_are_counted_through_their_transitions(f: &Fixture) {
    let s = f.store.as_ref();
    assert_eq!(s.count_open_held_changes().await.unwrap(), 0);
    let statuses = [HeldStatus::Held, HeldStatus::Approved, HeldStatus::Rejected];
    let mut changes = Vec::new();
    for i in 0..1_201 {
        let h = held(&format!("2026-11-{i:012x}"), statuses[i % 3]);
        assert!(s.put_held_change(&h, None).await.unwrap());
        changes.push(h);
    }
    // 401 held + 400 approved.
    assert_eq!(s.count_open_held_changes().await.unwrap(), 801);
    let mut applied = changes[1].clone();
    applied.status = HeldStatus::Applied;
    applied.version += 1;
    assert!(
        s.put_held_change(&applied, Some(changes[1].version))
            .await
            .unwrap()
    );
    let mut stale = changes[0].clone();
    stale.status = HeldStatus::Closed;
    stale.version += 2;
    assert!(
        !s.put_held_change(&stale, Some(changes[0].version + 1))
            .await
            .unwrap(),
        "written over a version nobody read"
    );
    assert_eq!(
        s.count_open_held_changes().await.unwrap(),
        800,
        "one applied"
    );
    let mut reheld = changes[2].clone();
    reheld.status = HeldStatus::Held;
    reheld.version += 1;
    assert!(
        s.put_held_change(&reheld, Some(changes[2].version))
            .await
            .unwrap()
    );
    assert_eq!(s.count_open_held_changes().await.unwrap(), 801);
}

async fn held_change_race_has_one_winner(f: &Fixture) {
    let base = held("2026-11-cccccccccccc", HeldStatus::Held);
    f.store.put_held_change(&base, None).await.unwrap();
    let n = 6;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = racers(f, n)
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = Arc::clone(&barrier);
            let mine = HeldChange {
                decided_by: Some(format!("racer-{i}")),
                status: HeldStatus::Approved,
                version: 2,
                ..base.clone()
            };
            tokio::spawn(async move {
                barrier.wait().await;
                store.put_held_change(&mine, Some(1)).await.unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = f.store.get_held_change(&base.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert!(stored.decided_by.is_some());
}
