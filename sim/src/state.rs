//! The simulators' mutable state: vendor data, issued tokens, the request log,
//! counters, latency and fault settings. One `Mutex`, never held across an await.

use crate::scenario::{Scenario, Throttle};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

pub struct SimState {
    pub scenario: Scenario,
    pub collections: Collections,
    pub next_id: i64,
    /// Issued Sophos access tokens and when they expire.
    pub tokens: HashMap<String, DateTime<Utc>>,
    /// Issued Sophos refresh tokens (grant_type=refresh_token, apis.md A.1).
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

    pub fn collection_mut(&mut self, name: &str) -> &mut Vec<Value> {
        self.collections.entry(name.to_owned()).or_default()
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
            "connectwise": self.collections,
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
