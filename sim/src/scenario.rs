//! A scenario: the vendor-side data a simulator starts from. JSON, camelCase, with
//! entities written exactly as the vendors send them on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    #[serde(default)]
    pub sophos: SophosScenario,
    #[serde(default)]
    pub connectwise: ConnectWiseScenario,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SophosScenario {
    pub client_id: String,
    pub client_secret: String,
    pub partner_id: String,
    /// Lifetime of issued access tokens (Sophos: 3600 s).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_seconds: i64,
    /// Tenants as `GET /partner/v1/tenants` returns them.
    #[serde(default)]
    pub tenants: Vec<Value>,
    /// Billing usage items per month, keyed `YYYY-MM`. A month absent here answers 404.
    #[serde(default)]
    pub usage: BTreeMap<String, Vec<Value>>,
}

fn default_token_ttl() -> i64 {
    3600
}

impl Default for SophosScenario {
    fn default() -> Self {
        Self {
            client_id: "sim-sophos-client".into(),
            client_secret: "sim-sophos-secret".into(),
            partner_id: "5b6c0a8e-2f43-4a61-9f0e-6a1d5c3b7e10".into(),
            token_ttl_seconds: default_token_ttl(),
            tenants: Vec::new(),
            usage: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectWiseScenario {
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
    #[serde(default = "default_codebase")]
    pub codebase: String,
    #[serde(default)]
    pub companies: Vec<Value>,
    #[serde(default)]
    pub agreements: Vec<Value>,
    #[serde(default)]
    pub agreement_types: Vec<Value>,
    /// Each addition carries `agreementId`, the agreement it belongs to.
    #[serde(default)]
    pub additions: Vec<Value>,
    #[serde(default)]
    pub catalog: Vec<Value>,
    #[serde(default)]
    pub product_types: Vec<Value>,
    #[serde(default)]
    pub categories: Vec<Value>,
    #[serde(default)]
    pub subcategories: Vec<Value>,
    #[serde(default)]
    pub unit_of_measures: Vec<Value>,
    /// Answer 429 when too many requests are in flight, as ConnectWise's cloud
    /// does when a partner's instance is busy. None: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
}

/// ConnectWise's throttling: any request arriving while more than
/// `above_in_flight` requests (itself included) are in flight is answered 429
/// with `Retry-After: {retry_after}` (whole seconds, as ConnectWise sends it).
/// JSON: `{"aboveInFlight": 2, "retryAfter": 0}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    pub above_in_flight: u64,
    #[serde(default)]
    pub retry_after: u64,
}

impl Throttle {
    /// Whether a request arriving with `in_flight` requests in flight (itself
    /// included) is refused.
    pub fn refuses(&self, in_flight: u64) -> bool {
        in_flight > self.above_in_flight
    }
}

fn default_codebase() -> String {
    "v4_6_release/".into()
}

impl Default for ConnectWiseScenario {
    fn default() -> Self {
        Self {
            company_id: "simmsp".into(),
            public_key: "sim-public-key".into(),
            private_key: "sim-private-key".into(),
            client_id: "3f1c2a4e-8d9b-4c7a-b6e5-0a1b2c3d4e5f".into(),
            codebase: default_codebase(),
            companies: Vec::new(),
            agreements: Vec::new(),
            agreement_types: Vec::new(),
            additions: Vec::new(),
            catalog: Vec::new(),
            product_types: Vec::new(),
            categories: Vec::new(),
            subcategories: Vec::new(),
            unit_of_measures: Vec::new(),
            throttle: None,
        }
    }
}

impl Scenario {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("scenario {} is not valid: {e}", path.display()))
    }

    /// The hand-written demo scenario that shows every mapping case.
    pub fn demo() -> Self {
        serde_json::from_str(include_str!("../fixtures/demo.json"))
            .expect("sim/fixtures/demo.json is valid (checked by tests)")
    }
}
