//! Unmapped billing product codes: mapped to one of the 35 identifiers, or to a
//! partner's own catalog item, by editing the settings (audited).

use super::*;

pub(super) async fn codes_view(
    store: &dyn Store,
    settings: &Settings,
) -> Result<CodesView, ConsoleError> {
    let identifiers = products::PRODUCTS
        .iter()
        .map(|(identifier, description)| IdentifierOption {
            identifier,
            description,
            selected: settings.products.contains(*identifier),
        })
        .collect();
    let Some(run) = customers::latest_finished_run(store).await? else {
        return Ok(CodesView {
            run_id: None,
            codes: Vec::new(),
            omitted: 0,
            identifiers,
        });
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".to_owned());
    let summary = run.summary();
    let codes = summary
        .unmapped_codes
        .iter()
        .map(|c| CodeLine {
            now: settings.product_codes.get(&c.product_code).cloned(),
            description: text(&c.product_description),
            sku: text(&c.sku),
            group: text(&c.product_group),
            quantity: qty(Some(c.quantity)),
            known_as: text(&c.known_as),
            code: c.product_code.clone(),
        })
        .collect();
    Ok(CodesView {
        run_id: Some(run.run_id),
        codes,
        omitted: summary.unmapped_codes_omitted,
        identifiers,
    })
}

pub(super) async fn map_code(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "map a billing product code")?;
    let code = form.required("code", "billing product code")?.to_owned();
    if code.chars().count() > MAX_CODE_LEN || code.chars().any(char::is_control) {
        return Err(ConsoleError::BadRequest(format!(
            "the billing product code must be at most {MAX_CODE_LEN} printable characters, as in the run's list of unmapped codes: copy it from there"
        )));
    }
    let identifier = form
        .required("identifier", "catalog identifier to bill the code as")?
        .to_owned();
    if !products::is_known(&identifier) {
        return Err(ConsoleError::BadRequest(format!(
            "{identifier:?} is not one of the 35 catalog identifiers: choose one from the list (the Settings page describes each)"
        )));
    }
    let own_item = form.get("ownItem").filter(|v| !v.is_empty());
    let current = web.app.settings().await?;
    let mut new = current.clone();
    new.product_codes.insert(code.clone(), identifier.clone());
    if let Some(item) = own_item {
        new.catalog_items
            .insert(identifier.clone(), item.to_owned());
    }
    crate::wiring::validate_settings(&new)
        .map_err(|e| ConsoleError::BadRequest(format!("nothing was saved: {}", e.0)))?;
    let done = format!("/console/mapping?done=code&code={}#codes", encode(&code));
    if new == current {
        return Ok(see_other(&done));
    }
    let mut note = format!("mapped billing code {code} to {identifier}");
    if let Some(item) = own_item {
        note.push_str(&format!(", billed as your own catalog item {item}"));
    }
    settings::save_noting(&web, &authed.actor(), &new, Some(&note)).await?;
    Ok(see_other(&done))
}
