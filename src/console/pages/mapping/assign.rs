//! Mapping a customer to a company and agreement: checked against ConnectWise
//! and the one-customer-one-agreement rule before anything is stored.

use super::*;

pub(super) fn parse_id(value: &str, field: &str) -> Result<i64, ConsoleError> {
    value
        .trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "{field} {value:?} is not a ConnectWise id (a whole number such as 110): pick it from the Mapping page"
            ))
        })
}

pub(super) fn no_company(id: i64) -> ConsoleError {
    ConsoleError::NotFound(format!(
        "ConnectWise has no company #{id}: the page may be stale or the id mistyped; open the Mapping page again and pick a company from its suggestions"
    ))
}

pub(super) fn no_agreement_type() -> String {
    "no agreement type is configured, so no agreement can be offered: set agreementType (e.g. \"Sophos MSP\") on the Settings page first".into()
}

pub(super) async fn map_customer(
    State(web): State<Web>,
    Path(tenant): Path<String>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "map a customer")?;
    let company_id = parse_id(form.required("company", "ConnectWise company")?, "company")?;
    let agreement_id = parse_id(
        form.required(
            "agreement",
            "agreement (choose one of the offered agreements)",
        )?,
        "agreement",
    )?;
    ensure_known(&web, &tenant).await?;
    let settings = web.app.settings().await?;
    let agreement_type = settings.agreement_type.clone().ok_or_else(|| {
        ConsoleError::BadRequest(format!("nothing was mapped: {}", no_agreement_type()))
    })?;

    let cw = companies::connectwise(&web).await?;
    let company: Company = cw
        .company(company_id)
        .await
        .map_err(|e| companies::failed(&format!("check company #{company_id}"), &e))?
        .ok_or_else(|| no_company(company_id))?;
    if let Some(why) = company_refusal(&CompanyCandidate::from(&company)) {
        return Err(ConsoleError::Conflict(format!(
            "company {} ({}, #{}) cannot be mapped: {why}. Nothing was mapped",
            company.name, company.identifier, company.id
        )));
    }
    let agreement = cw
        .agreements_by_ids(&[agreement_id])
        .await
        .map_err(|e| companies::failed(&format!("check agreement #{agreement_id}"), &e))?
        .into_iter()
        .find(|a| a.id == agreement_id)
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "ConnectWise has no agreement #{agreement_id}: the page may be stale; pick the company again on the Mapping page and choose one of the agreements it offers. Nothing was mapped"
            ))
        })?;
    if let Some(why) = agreement_refusal(&agreement, company.id, &agreement_type) {
        let text = format!(
            "agreement {} (#{}) cannot bill {} ({}, #{}): {why}. Nothing was mapped; pick the company again on the Mapping page and choose one of the agreements it offers",
            agreement.name, agreement.id, company.name, company.identifier, company.id
        );
        let owner = agreement.company.as_ref().and_then(|c| c.id);
        return Err(if owner == Some(company.id) {
            ConsoleError::Conflict(text)
        } else {
            ConsoleError::BadRequest(text)
        });
    }
    let mappings = web.app.store.list_mappings().await?;
    if let Some(m) = holder(&mappings, &tenant, agreement_id) {
        let held_by = holder_text(web.app.store.as_ref(), &m).await?;
        return Err(ConsoleError::Conflict(format!(
            "agreement {} (#{}) already bills {held_by}, and one agreement bills one customer. Nothing was mapped. If that customer should not have it, clear its mapping on its page ({}) first; otherwise pick another agreement for this customer (or create one of type {agreement_type:?} in ConnectWise)",
            agreement.name,
            agreement.id,
            customer_link(&m.tenant_id)
        )));
    }

    let mapping = Mapping {
        tenant_id: tenant.clone(),
        kind: MappingKind::Manual,
        company_id: Some(company.id),
        agreement_id: Some(agreement.id),
        updated_at: chrono::Utc::now(),
    };
    let note = format!(
        "mapped to {} ({}, #{}), agreement {} (#{})",
        company.name, company.identifier, company.id, agreement.name, agreement.id
    );
    web.app
        .changes()
        .set_mapping_as(&mapping, &authed.actor(), "setMapping", Some(note))
        .await?;
    Ok(see_other(&format!(
        "{}?done=mapped",
        customer_link(&tenant)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectwise::model::Reference;

    fn agreement(company: i64, type_name: &str, cancelled: bool, status: &str) -> Agreement {
        Agreement {
            id: 210,
            name: "Sophos".into(),
            agreement_type: Some(Reference {
                name: Some(type_name.into()),
                ..Reference::default()
            }),
            company: Some(Reference::id(company)),
            cancelled_flag: Some(cancelled),
            agreement_status: Some(status.into()),
        }
    }

    #[test]
    fn agreements_are_offered_by_the_engines_rule_and_refusals_say_why() {
        assert_eq!(
            agreement_refusal(
                &agreement(110, "sophos msp ", false, "Active"),
                110,
                "Sophos MSP"
            ),
            None
        );
        let other = agreement_refusal(
            &agreement(111, "Sophos MSP", false, "Active"),
            110,
            "Sophos MSP",
        );
        assert!(other.unwrap().contains("company #111"));
        let typed = agreement_refusal(
            &agreement(110, "Managed", false, "Active"),
            110,
            "Sophos MSP",
        );
        assert!(typed.unwrap().contains("\"Managed\""));
        let cancelled = agreement_refusal(
            &agreement(110, "Sophos MSP", true, "Cancelled"),
            110,
            "Sophos MSP",
        );
        assert!(cancelled.unwrap().contains("Cancelled"));
        let expired = agreement_refusal(
            &agreement(110, "Sophos MSP", false, "Expired"),
            110,
            "Sophos MSP",
        );
        assert!(expired.unwrap().contains("Expired"));
    }

    #[test]
    fn deleted_and_inactive_companies_cannot_be_picked() {
        let c = |status: Option<&str>, deleted| CompanyCandidate {
            id: 1,
            identifier: "A".into(),
            name: "A".into(),
            status: status.map(str::to_owned),
            deleted,
        };
        assert_eq!(company_refusal(&c(Some("Active"), false)), None);
        assert_eq!(company_refusal(&c(None, false)), None);
        assert!(
            company_refusal(&c(Some("Active"), true))
                .unwrap()
                .contains("recycle bin")
        );
        assert!(
            company_refusal(&c(Some("Inactive"), false))
                .unwrap()
                .contains("Inactive")
        );
    }

    #[test]
    fn ids_must_be_positive_whole_numbers() {
        assert_eq!(parse_id("110", "company").unwrap(), 110);
        assert_eq!(parse_id("#110", "company").unwrap(), 110);
        for bad in ["", "abc", "-1", "0", "1.5"] {
            assert!(
                matches!(parse_id(bad, "company"), Err(ConsoleError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_refresh_link_keeps_the_view() {
        let pairs = vec![
            ("tenant".to_owned(), "t 1".to_owned()),
            ("company".to_owned(), "5".to_owned()),
            ("done".to_owned(), "code".to_owned()),
        ];
        assert_eq!(
            refresh_link(&pairs),
            "/console/mapping?tenant=t+1&company=5&refresh=1"
        );
    }
}
