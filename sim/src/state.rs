//! The simulators' mutable state: vendor data, issued tokens, the request log,
//! counters, latency and fault settings. One `Mutex`, never held across an await.

use crate::scenario::{Scenario, Throttle};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which simulated API a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Sophos,
    Connectwise,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub seq: u64,
    pub api: Api,
    pub method: String,
    pub path: String,
    pub query: String,
    /// The status answered; 0 while the server still holds the request (a hang).
    pub status: u16,
    pub duration_ms: u64,
    /// What the fault injector did to this request, if anything (`Throttled`
    /// when the throttle answered it 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Requests of this API in flight when it arrived, itself included.
    #[serde(default)]
    pub in_flight: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ApiCounts {
    pub reads: u64,
    pub writes: u64,
    /// The most requests of this API in flight at once since the counters were
    /// last reset (the client's concurrency, as the vendor sees it).
    #[serde(default, rename = "maxInFlight")]
    pub max_in_flight: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub sophos: ApiCounts,
    pub connectwise: ApiCounts,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub fixed_ms: u64,
    pub jitter_ms: u64,
}

/// What an injected fault does to the request it hits. JSON: `{"kind":"rateLimit","retryAfter":7}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum FaultKind {
    /// Answer this status with the vendor's error body.
    Status { status: u16 },
    /// 429 with a `Retry-After` header (seconds).
    RateLimit { retry_after: u64 },
    /// Hold the response this long (past the client's timeout).
    Hang { ms: u64 },
    /// Send only the first half of the real body.
    Truncate,
    /// Refuse the write as ConnectWise refuses invalid data: a 400 `InvalidObject`
    /// whose one `errors` entry names `field` of `resource` (e.g. `catalogItem`)
    /// with `message`. For refusals the simulator has no rule for, such as a
    /// setup record restricted in a way the API does not show.
    Invalid {
        resource: String,
        field: String,
        message: String,
    },
}

/// Fails the `nth` request (1-based, counted from when the fault was set) that
/// matches `api`, `method` and `path_contains`, then the following `times - 1` too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub api: Api,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default = "one")]
    pub nth: u64,
    #[serde(default = "one")]
    pub times: u64,
    /// Perform the request first (the write happens), then fail the response:
    /// what a client sees when the connection drops after a write.
    #[serde(default)]
    pub after_apply: bool,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Requests matched so far (state, not configuration).
    #[serde(default)]
    pub seen: u64,
}

fn one() -> u64 {
    1
}

impl Fault {
    fn matches(&self, api: Api, method: &str, path: &str) -> bool {
        self.api == api
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// ConnectWise collections, by name (`companies`, `agreements`, `agreementTypes`,
/// `additions`, `catalog`, `productTypes`, `categories`, `subcategories`,
/// `unitOfMeasures`).
pub type Collections = BTreeMap<String, Vec<Value>>;

/// The nested collections and the field naming each record's parent: additions
/// live under an agreement (`connectwise::resources::RESOURCES`).
pub(crate) const NESTED: [(&str, &str); 1] = [("additions", "agreementId")];

/// Where records sit in their collections, so that one agreement's additions and a
/// record by id are found without scanning every record under the lock (a large
/// partner has 150,000 additions, and the sync lists them agreement by agreement).
#[derive(Debug, Default)]
struct Index {
    /// Collection -> id -> position of the first record with that id (what a scan
    /// from the start finds).
    by_id: HashMap<String, HashMap<i64, usize>>,
    /// Nested collection -> parent id -> positions of its records, in collection order.
    children: HashMap<String, HashMap<i64, Vec<usize>>>,
}

impl Index {
    fn build(collections: &Collections) -> Self {
        let mut index = Index::default();
        for (name, items) in collections {
            for (position, record) in items.iter().enumerate() {
                index.add(name, position, record);
            }
        }
        index
    }

    /// Records `record` at `position`, after every position already indexed.
    fn add(&mut self, collection: &str, position: usize, record: &Value) {
        if let Some(id) = record.get("id").and_then(Value::as_i64) {
            let ids = self.by_id.entry(collection.to_owned()).or_default();
            ids.entry(id).or_insert(position);
        }
        let parent_field = NESTED
            .iter()
            .find(|(nested, _)| *nested == collection)
            .map(|(_, field)| *field);
        let parent = parent_field
            .and_then(|f| record.get(f))
            .and_then(Value::as_i64);
        if let Some(parent) = parent {
            let children = self.children.entry(collection.to_owned()).or_default();
            children.entry(parent).or_default().push(position);
        }
    }
}

pub struct SimState {
    pub scenario: Scenario,
    collections: Collections,
    /// Built on first use; dropped whenever a caller may change a collection
    /// ([`SimState::collection_mut`], [`SimState::load`]), so it is never stale.
    index: OnceCell<Index>,
    pub next_id: i64,
    /// Issued Sophos access tokens and when they expire.
    pub tokens: HashMap<String, DateTime<Utc>>,
    /// Issued Sophos refresh tokens (grant_type=refresh_token, Sophos's API documentation).
    pub refresh_tokens: HashSet<String>,
    /// Shifts the simulators' clock (token expiry) without sleeping.
    pub clock_offset: Duration,
    pub log: Vec<LoggedRequest>,
    pub counters: Counters,
    /// Requests being answered now, per API (not reset with the counters).
    in_flight: HashMap<Api, u64>,
    pub latency: HashMap<Api, Latency>,
    pub faults: Vec<Fault>,
    /// ConnectWise's throttling (from the scenario, or [`crate::Sim::set_throttle`]).
    pub throttle: Option<Throttle>,
    seq: u64,
}

impl SimState {
    pub fn new(scenario: Scenario) -> Self {
        let mut state = SimState {
            scenario: Scenario::default(),
            collections: Collections::new(),
            index: OnceCell::new(),
            next_id: 1,
            tokens: HashMap::new(),
            refresh_tokens: HashSet::new(),
            clock_offset: Duration::zero(),
            log: Vec::new(),
            counters: Counters::default(),
            in_flight: HashMap::new(),
            latency: HashMap::new(),
            faults: Vec::new(),
            throttle: None,
            seq: 0,
        };
        state.load(scenario);
        state
    }

    /// Replaces all vendor data; keeps nothing of the previous scenario.
    pub fn load(&mut self, scenario: Scenario) {
        let cw = &scenario.connectwise;
        let mut collections = Collections::new();
        for (name, items) in [
            ("companies", &cw.companies),
            ("agreements", &cw.agreements),
            ("agreementTypes", &cw.agreement_types),
            ("additions", &cw.additions),
            ("catalog", &cw.catalog),
            ("productTypes", &cw.product_types),
            ("categories", &cw.categories),
            ("subcategories", &cw.subcategories),
            ("unitOfMeasures", &cw.unit_of_measures),
        ] {
            collections.insert(name.to_owned(), items.clone());
        }
        let max_id = collections
            .values()
            .flatten()
            .filter_map(|v| v.get("id").and_then(Value::as_i64))
            .max()
            .unwrap_or(0);
        self.collections = collections;
        self.index = OnceCell::new();
        self.next_id = max_id + 1;
        self.scenario = scenario;
        self.tokens.clear();
        self.refresh_tokens.clear();
        self.clock_offset = Duration::zero();
        self.log.clear();
        self.counters = Counters::default();
        self.faults.clear();
        self.latency.clear();
        self.throttle = self.scenario.connectwise.throttle;
    }

    /// A request of `api` starts: counts it in flight and raises the high-water
    /// mark. Returns how many are in flight now, this one included.
    pub fn begin_request(&mut self, api: Api) -> u64 {
        let now = self.in_flight.entry(api).or_default();
        *now += 1;
        let now = *now;
        let counts = self.counts_mut(api);
        counts.max_in_flight = counts.max_in_flight.max(now);
        now
    }

    /// The throttle's 429, if it refuses a request of `api` arriving with
    /// `in_flight` in flight (only ConnectWise is throttled).
    pub fn throttles(&self, api: Api, in_flight: u64) -> Option<Throttle> {
        self.throttle
            .filter(|t| api == Api::Connectwise && t.refuses(in_flight))
    }

    /// A request of `api` is answered (or dropped).
    pub fn end_request(&mut self, api: Api) {
        let now = self.in_flight.entry(api).or_default();
        *now = now.saturating_sub(1);
    }

    pub fn counts_mut(&mut self, api: Api) -> &mut ApiCounts {
        match api {
            Api::Sophos => &mut self.counters.sophos,
            Api::Connectwise => &mut self.counters.connectwise,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub fn allocate_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn collection(&self, name: &str) -> &[Value] {
        self.collections.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The collection to change at will; the index is rebuilt on its next use.
    pub fn collection_mut(&mut self, name: &str) -> &mut Vec<Value> {
        self.index.take();
        self.collections.entry(name.to_owned()).or_default()
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::build(&self.collections))
    }

    /// The position of the first record of `collection` with this `id`.
    pub fn position_by_id(&self, collection: &str, id: i64) -> Option<usize> {
        self.index().by_id.get(collection)?.get(&id).copied()
    }

    /// The first record of `collection` with this `id`.
    pub fn record_by_id(&self, collection: &str, id: i64) -> Option<&Value> {
        self.position_by_id(collection, id)
            .map(|position| &self.collection(collection)[position])
    }

    /// The positions of the records of the nested `collection` under `parent` (e.g.
    /// one agreement's additions), in collection order.
    pub fn child_positions(&self, collection: &str, parent: i64) -> &[usize] {
        self.index()
            .children
            .get(collection)
            .and_then(|children| children.get(&parent))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Appends `record` to `collection`, keeping the index.
    pub fn push(&mut self, collection: &str, record: Value) {
        let items = self.collections.entry(collection.to_owned()).or_default();
        if let Some(index) = self.index.get_mut() {
            index.add(collection, items.len(), &record);
        }
        items.push(record);
    }

    /// Replaces the record at `position`; the index is kept when the record keeps
    /// its id and parent (a write never changes them), else rebuilt on next use.
    pub fn replace(&mut self, collection: &str, position: usize, record: Value) {
        let Some(slot) = self
            .collections
            .get_mut(collection)
            .and_then(|items| items.get_mut(position))
        else {
            return;
        };
        let keys_kept = record.get("id") == slot.get("id")
            && NESTED
                .iter()
                .filter(|(nested, _)| *nested == collection)
                .all(|(_, field)| record.get(*field) == slot.get(*field));
        *slot = record;
        if !keys_kept {
            self.index.take();
        }
    }

    /// Finds the fault, if any, that this request triggers, and advances counts.
    pub fn take_fault(&mut self, api: Api, method: &str, path: &str) -> Option<Fault> {
        let mut hit = None;
        for fault in self
            .faults
            .iter_mut()
            .filter(|f| f.matches(api, method, path))
        {
            fault.seen += 1;
            let in_window = fault.seen >= fault.nth && fault.seen < fault.nth + fault.times;
            if in_window && hit.is_none() {
                hit = Some(fault.clone());
            }
        }
        hit
    }

    /// The state as JSON: vendor data now, for assertions and `GET /_sim/state`.
    pub fn dump(&self) -> Value {
        serde_json::json!({
            "connectwise": &self.collections,
            "sophos": {
                "partnerId": self.scenario.sophos.partner_id,
                "tenants": self.scenario.sophos.tenants,
                "usage": self.scenario.sophos.usage,
            },
            "counters": self.counters,
        })
    }
}

pub type Shared = Arc<Mutex<SimState>>;

/// Locks the state; a poisoned lock (a panicking handler) still yields the data.
pub fn lock(shared: &Shared) -> MutexGuard<'_, SimState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}
