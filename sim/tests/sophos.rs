//! The Sophos Central simulator over HTTP: token, expiry, partner header,
//! tenant page paging, usage key paging, month handling.

mod common;

use common::{Sophos, client, json, sophos_scenario};
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, Sim};
use std::collections::HashSet;

async fn token_request(sim: &Sim, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}/api/v2/oauth2/token", sim.sophos_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

fn assert_api_error(body: &Value) {
    for field in [
        "error",
        "message",
        "correlationId",
        "requestId",
        "createdAt",
    ] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
}

#[tokio::test]
async fn token_has_the_documented_fields_and_expires_after_its_ttl() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "sim-sophos-client"),
        ("client_secret", "sim-sophos-secret"),
        ("scope", "token"),
    ];
    let body = json(token_request(&sim, &form).await).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());
    let token = body["access_token"].as_str().unwrap();
    let whoami = |t: String| {
        client()
            .get(format!("{}/whoami/v1", sim.sophos_url()))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(whoami(token.to_owned()).await.unwrap().status(), 200);

    sim.advance_clock(3601);
    let expired = whoami(token.to_owned()).await.unwrap();
    assert_eq!(expired.status(), 401);
    let body = json(expired).await;
    assert_api_error(&body);
    assert_eq!(body["message"], "token expired");
}

#[tokio::test]
async fn wrong_secret_and_bad_grant_get_identity_service_errors() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", "sim-sophos-client"),
        ("client_secret", "nope"),
    ];
    let response = token_request(&sim, &wrong).await;
    assert_eq!(response.status(), 401);
    let body = json(response).await;
    assert_eq!(body["errorCode"], "oauth.invalid_client_secret");
    assert_eq!(body["message"], "Unauthorized");
    assert!(uuid::Uuid::parse_str(body["trackingId"].as_str().unwrap()).is_ok());

    let no_grant = [
        ("client_id", "sim-sophos-client"),
        ("client_secret", "sim-sophos-secret"),
    ];
    let response = token_request(&sim, &no_grant).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        json(response).await["errorCode"],
        "oauth.invalid_grant_type"
    );
}

#[tokio::test]
async fn refresh_token_grant_issues_a_working_access_token() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "sim-sophos-client"),
        ("client_secret", "sim-sophos-secret"),
    ];
    let refresh = json(token_request(&sim, &form).await).await["refresh_token"].clone();
    sim.advance_clock(4000);
    assert_eq!(
        sophos
            .get("/partner/v1/tenants")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Sophos' own "Refresh token" request sends JSON.
    let body = json!({"grant_type": "refresh_token", "client_id": "sim-sophos-client",
                      "client_secret": "sim-sophos-secret", "refresh_token": refresh});
    let url = format!("{}/api/v2/oauth2/token", sim.sophos_url());
    let fresh = json(client().post(url).json(&body).send().await.unwrap()).await;
    let again = Sophos {
        token: fresh["access_token"].as_str().unwrap().to_owned(),
        ..sophos
    };
    assert_eq!(
        again
            .get("/partner/v1/tenants")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn missing_token_unknown_token_and_bad_partner_header_are_401() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let url = format!("{}/partner/v1/tenants", sim.sophos_url());
    let no_token = client()
        .get(&url)
        .header("X-Partner-ID", &sophos.partner_id)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_api_error(&json(no_token).await);
    let unknown = client()
        .get(&url)
        .bearer_auth("forged")
        .header("X-Partner-ID", &sophos.partner_id);
    assert_eq!(unknown.send().await.unwrap().status(), 401);
    let no_partner = client()
        .get(&url)
        .bearer_auth(&sophos.token)
        .send()
        .await
        .unwrap();
    assert_eq!(no_partner.status(), 401);
    let wrong = client()
        .get(&url)
        .bearer_auth(&sophos.token)
        .header("X-Partner-ID", "00000000-0000-0000-0000-000000000000");
    assert_eq!(wrong.send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn whoami_names_the_partner_and_this_host() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let body = json(sophos.get("/whoami/v1").send().await.unwrap()).await;
    assert_eq!(body["id"], sophos.partner_id.as_str());
    assert_eq!(body["idType"], "partner");
    assert_eq!(body["apiHosts"]["global"], sim.sophos_url().as_str());
}

#[tokio::test]
async fn tenants_page_over_three_pages_with_totals() {
    let sim = Sim::start(sophos_scenario(120, 1)).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        let path = format!("/partner/v1/tenants?page={page}&pageSize=50&pageTotal=true");
        let body = json(sophos.get(&path).send().await.unwrap()).await;
        assert_eq!(body["pages"]["total"], 3);
        assert_eq!(body["pages"]["items"], 120);
        assert_eq!(body["pages"]["current"], page);
        assert_eq!(body["pages"]["maxSize"], 100);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
        if page >= body["pages"]["total"].as_u64().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(page, 3);
    assert_eq!(seen.len(), 120);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 120);
}

#[tokio::test]
async fn tenant_paging_defaults_limits_and_the_end() {
    let sim = Sim::start(sophos_scenario(120, 1)).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let first = json(sophos.get("/partner/v1/tenants").send().await.unwrap()).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    assert_eq!(first["pages"]["size"], 50);
    assert!(
        first["pages"].get("total").is_none(),
        "total only with pageTotal=true"
    );
    let beyond = json(
        sophos
            .get("/partner/v1/tenants?page=4&pageSize=50")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(beyond["items"], json!([]));
    let too_big = sophos
        .get("/partner/v1/tenants?pageSize=101")
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 400);
    assert!(
        json(too_big).await["message"]
            .as_str()
            .unwrap()
            .contains("pageSize")
    );
}

#[tokio::test]
async fn single_tenant_and_unknown_tenant() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let id = "a0000000-0000-4000-8000-000000000002";
    let body = json(
        sophos
            .get(&format!("/partner/v1/tenants/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["name"], "Beta Corp");
    let missing = sophos
        .get("/partner/v1/tenants/a0000000-0000-4000-8000-999999999999")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_api_error(&json(missing).await);
}

#[tokio::test]
async fn usage_key_paging_follows_next_key_to_the_end() {
    let sim = Sim::start(sophos_scenario(10, 120)).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let (mut seen, mut pages, mut key) = (Vec::new(), 0, None::<String>);
    loop {
        let mut request = sophos
            .get("/partner/v1/billing/usage/2026/5")
            .query(&[("pageSize", "50"), ("pageTotal", "true")]);
        if let Some(k) = &key {
            request = request.query(&[("pageFromKey", k)]);
        }
        let body = json(request.send().await.unwrap()).await;
        pages += 1;
        assert_eq!(
            (
                body["pages"]["total"].as_u64(),
                body["pages"]["items"].as_u64()
            ),
            (Some(3), Some(120))
        );
        assert_eq!(body["pages"]["maxSize"], 1000);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["orderLineItemNumber"].clone()),
        );
        match body["pages"]["nextKey"].as_str() {
            Some(next) => key = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    assert_eq!(
        seen.iter()
            .map(Value::to_string)
            .collect::<HashSet<_>>()
            .len(),
        120
    );
}

#[tokio::test]
async fn usage_rejects_garbage_keys_and_oversized_pages() {
    let sim = Sim::start(sophos_scenario(10, 20)).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let garbage = sophos
        .get("/partner/v1/billing/usage/2026/05?pageFromKey=not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_api_error(&json(garbage).await);
    let big = sophos
        .get("/partner/v1/billing/usage/2026/05?pageSize=1001")
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 400);
    let max = sophos
        .get("/partner/v1/billing/usage/2026/05?pageSize=1000")
        .send()
        .await
        .unwrap();
    assert_eq!(max.status(), 200);
    assert!(json(max).await["pages"].get("nextKey").is_none());
}

#[tokio::test]
async fn usage_month_without_data_is_404_and_month_formats_agree() {
    let sim = Sim::start(sophos_scenario(10, 20)).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let missing = sophos
        .get("/partner/v1/billing/usage/2026/04")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body = json(missing).await;
    assert_api_error(&body);
    assert_eq!(body["message"], "no data for requested year or month");

    let short = json(
        sophos
            .get("/partner/v1/billing/usage/2026/5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let padded = json(
        sophos
            .get("/partner/v1/billing/usage/2026/05")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(short["items"], padded["items"]);
    assert_eq!(short["items"].as_array().unwrap().len(), 20);
    for bad in ["2026/13", "2026/0", "2026/abc", "26/05", "2026/005"] {
        let response = sophos
            .get(&format!("/partner/v1/billing/usage/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn usage_filters_by_account_id() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    let account = "a0000000-0000-4000-8000-000000000001";
    let path = format!("/partner/v1/billing/usage/2026/11?accountId={account}");
    let body = json(sophos.get(&path).send().await.unwrap()).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["accountId"] == account));
}
