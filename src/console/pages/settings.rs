//! The settings in force with the product tables (each billing code with the
//! evidence's confidence), and editing them with the same validation as
//! `PUT /settings`. Every saved change goes on the audit trail.

use crate::app::changes::ChangeError;
use crate::config::Settings;
use crate::config::operators::Role;
use crate::console::page::{
    self, Authed, ConsoleError, Layout, SignedForm, query_get, query_pairs, render, render_with,
    see_other, wire_name,
};
use crate::domain::products;
use crate::state::Web;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

pub fn routes() -> Router<Web> {
    Router::new()
        // The page: every role (read-only below admin). Saving the settings and
        // the prices: admin. Pause and resume: operator.
        .route("/console/settings", get(settings_page).post(save_settings))
        .route(
            "/console/settings/products",
            axum::routing::post(save_products),
        )
        .route("/console/settings/pause", axum::routing::post(pause))
        .route("/console/settings/resume", axum::routing::post(resume))
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    json: String,
    products: Vec<ProductLine>,
    codes: Vec<CodeLine>,
    problem: Option<String>,
    saved: bool,
    paused: bool,
}

/// One of the 35 catalog identifiers.
pub struct ProductLine {
    pub identifier: &'static str,
    pub description: &'static str,
    pub selected: bool,
    pub own_item: Option<String>,
}

/// One billing product code of the table in force.
pub struct CodeLine {
    pub code: String,
    pub identifier: String,
    pub source: &'static str,
    pub code_confidence: String,
    pub mapping_confidence: String,
    pub seen_in: String,
}

fn tables(settings: &Settings) -> (Vec<ProductLine>, Vec<CodeLine>) {
    let products = products::PRODUCTS
        .iter()
        .map(|(identifier, description)| ProductLine {
            identifier,
            description,
            selected: settings.products.contains(*identifier),
            own_item: settings.catalog_items.get(*identifier).cloned(),
        })
        .collect();
    let codes = products::code_rows(&settings.product_codes)
        .into_iter()
        .map(|row| CodeLine {
            identifier: row
                .identifier
                .clone()
                .unwrap_or_else(|| "(not mapped: reported, never billed)".into()),
            source: if row.source == "settings" {
                "your settings"
            } else {
                "built in"
            },
            code_confidence: row
                .evidence
                .map(|e| wire_name(&e.code_confidence))
                .unwrap_or_else(|| "–".into()),
            mapping_confidence: row
                .evidence
                .and_then(|e| e.mapping_confidence.map(|c| wire_name(&c)))
                .unwrap_or_else(|| "–".into()),
            seen_in: row
                .evidence
                .map(|e| e.seen_in.to_owned())
                .unwrap_or_else(|| "–".into()),
            code: row.product_code,
        })
        .collect();
    (products, codes)
}

fn settings_page_for(
    authed: &page::Authed,
    settings: &Settings,
    json: String,
    problem: Option<String>,
    saved: bool,
) -> SettingsPage {
    let (products, codes) = tables(settings);
    SettingsPage {
        layout: authed.layout("settings"),
        json,
        products,
        codes,
        problem,
        saved,
        paused: settings.paused.is_some(),
    }
}

async fn settings_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let q = query_pairs(&uri)?;
    let settings = web.app.settings().await?;
    let json = serde_json::to_string_pretty(&settings).unwrap_or_default();
    Ok(render(&settings_page_for(
        &authed,
        &settings,
        json,
        None,
        query_get(&q, "saved").is_some(),
    )))
}

/// The settings of the form's JSON, checked exactly as `PUT /settings` checks them.
pub fn parse(text: &str) -> Result<Settings, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the settings are not valid JSON (line {}, column {}): fix the text and save again",
            e.line(),
            e.column()
        )
    })?;
    let settings: Settings =
        serde_json::from_value(value).map_err(|e| format!("the settings are not valid: {e}"))?;
    crate::wiring::validate_settings(&settings).map_err(|e| e.0)?;
    Ok(settings)
}

async fn save_settings(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Admin, "change the settings")?;
    let text = form.get("settings").unwrap_or("");
    let current = web.app.settings().await?;
    let problem = match parse(text) {
        Ok(settings) => match web
            .app
            .update_settings(settings, &authed.actor(), None)
            .await
        {
            Ok(_) => return Ok(see_other("/console/settings?saved=1")),
            Err(e @ (ChangeError::Invalid(_) | ChangeError::UnknownAgreementType { .. })) => {
                e.to_string()
            }
            Err(e) => return Err(e.into()),
        },
        Err(problem) => problem,
    };
    // The operator's text comes back as typed, with what to fix.
    let page = settings_page_for(&authed, &current, text.to_owned(), Some(problem), false);
    Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

/// Saves (and audits) only when something changed, then back to the page.
async fn save_and_return(
    web: &Web,
    authed: &Authed,
    next: &Settings,
) -> Result<Response, ConsoleError> {
    save(web, &authed.actor(), next).await?;
    Ok(see_other("/console/settings?saved=1"))
}

/// "Pause the sync", with the reason typed beside it.
async fn pause(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "pause the sync")?;
    let reason = form.get("reason").map(str::to_owned);
    web.app.pause(&authed.actor(), reason).await?;
    Ok(see_other("/console/settings#pause"))
}

async fn resume(
    State(web): State<Web>,
    SignedForm { authed, form: _ }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "resume the sync")?;
    web.app.resume(&authed.actor()).await?;
    Ok(see_other("/console/settings#pause"))
}

/// The product checkboxes: the ticked identifiers become `products`, everything else
/// stays as it is.
async fn save_products(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Admin, "change the product prices")?;
    let current = web.app.settings().await?;
    let mut next = current.clone();
    next.products = form.all("product").map(str::to_owned).collect();
    if let Some(unknown) = next.products.iter().find(|p| !products::is_known(p)) {
        return Err(ConsoleError::BadRequest(format!(
            "there is no product {unknown:?}: tick products from the list on the Settings page"
        )));
    }
    save_and_return(&web, &authed, &next).await
}

/// Stores new settings through the same use case as `PUT /settings` (checked,
/// a new agreement type asked of ConnectWise, audited when something changed);
/// used by every console form that edits settings.
pub async fn save(web: &Web, actor: &str, new: &Settings) -> Result<(), ConsoleError> {
    save_noting(web, actor, new, None).await
}

/// [`save`] with what the change was for on the audit entry, e.g. "mapped
/// billing code X to Y" (the changed keys, old → new, follow in brackets).
pub async fn save_noting(
    web: &Web,
    actor: &str,
    new: &Settings,
    note: Option<&str>,
) -> Result<(), ConsoleError> {
    web.app.update_settings(new.clone(), actor, note).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_as_the_api_checks_them() {
        assert!(parse("{}").is_ok());
        assert!(parse("{").unwrap_err().contains("line 1"));
        assert!(
            parse(r#"{"products":["Nope"]}"#)
                .unwrap_err()
                .contains("unknown product identifiers")
        );
        assert!(parse(r#"{"bogus":1}"#).unwrap_err().contains("bogus"));
        assert!(
            parse(r#"{"connectwiseConcurrency":0}"#)
                .unwrap_err()
                .contains("connectwiseConcurrency")
        );
    }
}
