//! Helpers shared by the simulator's integration tests: HTTP clients that
//! authenticate the way each vendor wants, and scenario builders.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, Sim};

pub fn client() -> Client {
    Client::builder().no_proxy().build().expect("client builds")
}

pub async fn json(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

// ------------------------------------------------------------------ Sophos

pub struct Sophos {
    pub http: Client,
    pub url: String,
    pub partner_id: String,
    pub token: String,
}

impl Sophos {
    /// Logs in with the scenario's credentials.
    pub async fn login(sim: &Sim) -> Sophos {
        let (id, secret, partner_id) = sim.with_state(|s| {
            let sophos = &s.scenario.sophos;
            (
                sophos.client_id.clone(),
                sophos.client_secret.clone(),
                sophos.partner_id.clone(),
            )
        });
        let http = client();
        let url = sim.sophos_url();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "token"),
        ];
        let response = http
            .post(format!("{url}/api/v2/oauth2/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let token = json(response).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Sophos {
            http,
            url,
            partner_id,
            token,
        }
    }

    /// A partner API GET with bearer token and `X-Partner-ID`.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("X-Partner-ID", &self.partner_id)
    }
}

pub fn tenant(i: usize, partner: &str) -> Value {
    json!({
        "id": format!("a0000000-0000-4000-8000-{i:012}"), "showAs": format!("Tenant {i}"),
        "name": format!("Tenant {i}"), "dataGeography": "US", "dataRegion": "us01", "billingType": "usage",
        "partner": {"id": partner}, "organization": {"id": partner}, "apiHost": "https://api-us01.central.sophos.com",
    })
}

pub fn usage_line(i: usize, account: usize, code: &str) -> Value {
    json!({
        "partnerAccountId": "5b6c0a8e-2f43-4a61-9f0e-6a1d5c3b7e10", "partnerEdiAccountNumber": "1234567",
        "partnerAccountName": "Test MSP", "billingStartDate": "2026-05-01", "billingEndDate": "2026-05-31",
        "orderNumber": format!("ORD-{i}"), "orderLineItemNumber": i.to_string(),
        "accountNumberOrSerialNumber": format!("ACC-{account}"), "productDescription": "Intercept X Advanced",
        "productGroup": "User", "sku": format!("{code}-SKU"), "billableQuantity": i, "actualQuantity": i,
        "externalId": "00000000-0000-0000-0000-000000000001", "accountStatus": "active", "productCode": code,
        "accountId": format!("a0000000-0000-4000-8000-{account:012}"),
    })
}

/// `tenants` tenants and, for May 2026, `lines` usage lines over them.
pub fn sophos_scenario(tenants: usize, lines: usize) -> Scenario {
    let mut scenario = Scenario::default();
    let partner = scenario.sophos.partner_id.clone();
    scenario.sophos.tenants = (1..=tenants).map(|i| tenant(i, &partner)).collect();
    let usage = (1..=lines)
        .map(|i| usage_line(i, 1 + i % tenants.max(1), "CIXA-MSP"))
        .collect();
    scenario.sophos.usage.insert("2026-05".into(), usage);
    scenario
}

// ------------------------------------------------------------------ ConnectWise

pub struct Cw {
    pub http: Client,
    pub base: String,
    pub user: String,
    pub password: String,
    pub client_id: String,
}

impl Cw {
    pub fn new(sim: &Sim) -> Cw {
        let cw = sim.with_state(|s| s.scenario.connectwise.clone());
        Cw {
            http: client(),
            base: format!("{}/{}apis/3.0", sim.cw_url(), cw.codebase),
            user: format!("{}+{}", cw.company_id, cw.public_key),
            password: cw.private_key,
            client_id: cw.client_id,
        }
    }

    /// A request to `path` under the API base, with Basic auth and `clientId`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/{path}", self.base)
        };
        self.http
            .request(method, url)
            .basic_auth(&self.user, Some(&self.password))
            .header("clientId", &self.client_id)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(reqwest::Method::POST, path).json(body)
    }

    pub fn patch(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(reqwest::Method::PATCH, path).json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> RequestBuilder {
        self.request(reqwest::Method::PUT, path).json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    /// GET that must succeed; the JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let response = self.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        json(response).await
    }
}

/// Sorted ids of a list body.
pub fn ids(list: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// The URL a `Link` header gives for `rel`.
pub fn link(response: &Response, rel: &str) -> Option<String> {
    let header = response.headers().get("link")?.to_str().ok()?;
    header
        .split(", ")
        .find(|part| part.ends_with(&format!("rel=\"{rel}\"")))
        .map(|part| {
            let start = part.find('<').unwrap() + 1;
            part[start..part.find('>').unwrap()].to_owned()
        })
}

/// A scenario with `n` companies (ids 1..=n) and the demo's credentials.
pub fn companies_scenario(n: usize) -> Scenario {
    let mut scenario = Scenario::default();
    scenario.connectwise.companies = (1..=n)
        .map(|i| json!({"id": i, "identifier": format!("C{i}"), "name": format!("Company {i}"), "deletedFlag": i % 10 == 0}))
        .collect();
    scenario
}

/// A minimal valid addition for the demo's catalog item 901.
pub fn addition_body(quantity: i64) -> Value {
    json!({"product": {"id": 901}, "quantity": quantity, "billCustomer": "Billable",
           "effectiveDate": "2026-11-01T00:00:00Z", "unitPrice": 5.0, "unitCost": 3.0})
}

pub fn as_f64(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}
