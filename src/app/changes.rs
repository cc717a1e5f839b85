//! The operator's changes (settings, mappings, pause and resume), the same for
//! every entry point (console, HTTP API, CLI): each is checked, written, and put on
//! the audit trail once, with who made it and what it was before and after.
//!
//! [`Changes`] needs only the store, so the CLI uses it without an `App`; the
//! checks that need ConnectWise (the agreement type) are `App`'s (see
//! [`crate::app::App::update_settings`]).

use crate::config::Settings;
use crate::config::settings::Pause;
use crate::store::{AuditEntry, Mapping, MappingKind, Store, StoreError};
use serde_json::Value;

/// A value shown on the trail is cut at this many characters, the whole detail at
/// [`MAX_DETAIL`]: a changed product-code table must not make an entry of megabytes.
const MAX_VALUE: usize = 300;
const MAX_DETAIL: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change is not valid; the message says what to fix. Nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// `agreementType` names no agreement type ConnectWise has. Nothing was written.
    #[error(
        "agreementType {name:?} is not an agreement type in ConnectWise: use one of {known:?} (or create the type in ConnectWise under Setup Tables > Agreement Type first). Nothing was stored"
    )]
    UnknownAgreementType { name: String, known: Vec<String> },
    /// ConnectWise could not be asked; the change was not stored unchecked.
    #[error(
        "ConnectWise could not be reached to check agreementType ({0}); nothing was stored: try again in a moment"
    )]
    ConnectWiseUnreachable(String),
    /// The secrets (needed to ask ConnectWise) cannot be read.
    #[error("the service cannot read its secrets: {0}")]
    Secrets(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a settings change did.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsChange {
    /// The settings now stored.
    pub settings: Settings,
    /// False: the new settings equal the stored ones; nothing written, no entry.
    pub changed: bool,
}

/// The use cases over the store.
pub struct Changes<'a> {
    pub store: &'a dyn Store,
}

impl<'a> Changes<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    pub async fn settings(&self) -> Result<Settings, StoreError> {
        Ok(self.store.get_settings().await?.unwrap_or_default())
    }

    /// Replaces the settings (checked as `PUT /settings` checks them). A change of
    /// `paused` alone goes on the trail as `pauseSync` / `resumeSync`, any other as
    /// `updateSettings`; `note` says what the change was for (e.g. "mapped billing
    /// code X to Y").
    pub async fn update_settings(
        &self,
        new: Settings,
        actor: &str,
        note: Option<&str>,
    ) -> Result<SettingsChange, ChangeError> {
        let old = self.settings().await?;
        self.replace_settings(&old, new, actor, note).await
    }

    /// [`Self::update_settings`] against settings already read (`old`).
    pub async fn replace_settings(
        &self,
        old: &Settings,
        mut new: Settings,
        actor: &str,
        note: Option<&str>,
    ) -> Result<SettingsChange, ChangeError> {
        crate::wiring::validate_settings(&new).map_err(|e| ChangeError::Invalid(e.0))?;
        new.paused = fill_pause(old.paused.as_ref(), new.paused.take(), actor);
        let changed = changed_keys(old, &new);
        if changed.is_empty() {
            return Ok(SettingsChange {
                settings: new,
                changed: false,
            });
        }
        self.store.put_settings(&new).await?;
        let action = match (changed.as_slice(), &new.paused) {
            ([only], Some(_)) if only == "paused" => "pauseSync",
            ([only], None) if only == "paused" => "resumeSync",
            _ => "updateSettings",
        };
        let mut detail = settings_detail(old, &new, &changed);
        if let Some(note) = note {
            detail = format!("{note} ({detail})");
        }
        append(self.store, actor, action, None, None, detail).await?;
        Ok(SettingsChange {
            settings: new,
            changed: true,
        })
    }

    /// Pauses every writing run (scheduled, webhook, CLI) until [`Self::resume`];
    /// dry runs still plan. Already paused: nothing changes.
    pub async fn pause(
        &self,
        actor: &str,
        reason: Option<String>,
    ) -> Result<SettingsChange, ChangeError> {
        let old = self.settings().await?;
        if old.paused.is_some() {
            return Ok(SettingsChange {
                settings: old,
                changed: false,
            });
        }
        let mut new = old.clone();
        // Who and when are filled in by `replace_settings` (`fill_pause`).
        new.paused = Some(Pause {
            reason: reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
            ..Pause::default()
        });
        self.replace_settings(&old, new, actor, None).await
    }

    /// Lets writing runs write again. Not paused: nothing changes.
    pub async fn resume(&self, actor: &str) -> Result<SettingsChange, ChangeError> {
        let old = self.settings().await?;
        let mut new = old.clone();
        new.paused = None;
        self.replace_settings(&old, new, actor, None).await
    }

    /// Maps a tenant by hand (or ignores it), as `setMapping`.
    pub async fn set_mapping(&self, mapping: &Mapping, actor: &str) -> Result<(), ChangeError> {
        self.set_mapping_as(mapping, actor, "setMapping", None)
            .await
    }

    /// [`Self::set_mapping`] under another action (the console's `ignoreCustomer`)
    /// or with a note saying what the new mapping is (e.g. the company's name),
    /// then followed by the old one.
    pub async fn set_mapping_as(
        &self,
        mapping: &Mapping,
        actor: &str,
        action: &str,
        note: Option<String>,
    ) -> Result<(), ChangeError> {
        let before = self.store.get_mapping(&mapping.tenant_id).await?;
        self.store.put_mapping(mapping).await?;
        let old = before.as_ref().map(describe_mapping);
        // A note says what the new mapping is in words (the company's name).
        let detail = match (note, old) {
            (Some(note), Some(old)) => format!("{note} (was {old})"),
            (Some(note), None) => note,
            (None, old) => format!(
                "{} → {}",
                old.as_deref().unwrap_or("no mapping"),
                describe_mapping(mapping)
            ),
        };
        let agreement = mapping.agreement_id.or(before.and_then(|b| b.agreement_id));
        append(
            self.store,
            actor,
            action,
            Some(&mapping.tenant_id),
            agreement,
            detail,
        )
        .await?;
        Ok(())
    }

    /// Clears a tenant's mapping, as `clearMapping`; None: it had none (no entry).
    pub async fn clear_mapping(
        &self,
        tenant_id: &str,
        actor: &str,
    ) -> Result<Option<Mapping>, ChangeError> {
        self.clear_mapping_as(tenant_id, actor, "clearMapping")
            .await
    }

    /// [`Self::clear_mapping`] under another action (the console's `unignoreCustomer`).
    pub async fn clear_mapping_as(
        &self,
        tenant_id: &str,
        actor: &str,
        action: &str,
    ) -> Result<Option<Mapping>, ChangeError> {
        let Some(before) = self.store.get_mapping(tenant_id).await? else {
            return Ok(None);
        };
        if !self.store.delete_mapping(tenant_id).await? {
            // Cleared by someone else meanwhile: their entry tells it.
            return Ok(None);
        }
        let detail = format!("{} → no mapping", describe_mapping(&before));
        append(
            self.store,
            actor,
            action,
            Some(tenant_id),
            before.agreement_id,
            detail,
        )
        .await?;
        Ok(Some(before))
    }
}

/// A pause given without who or when (`"paused": true`) is the actor's, now; one
/// that was already in force keeps its own.
fn fill_pause(old: Option<&Pause>, new: Option<Pause>, actor: &str) -> Option<Pause> {
    let mut pause = new?;
    let kept = old.cloned().unwrap_or_default();
    if pause.by.is_none() {
        pause.by = kept.by.or_else(|| Some(actor.to_owned()));
    }
    if pause.at.is_none() {
        pause.at = kept.at.or_else(|| Some(crate::clock::now()));
    }
    if pause.reason.is_none() {
        pause.reason = kept.reason;
    }
    Some(pause)
}

/// "manual: company 110, agreement 210", "ignored".
pub fn describe_mapping(m: &Mapping) -> String {
    let kind = match m.kind {
        MappingKind::Manual => "manual",
        MappingKind::Discovered => "discovered",
        MappingKind::Ignored => "ignored",
    };
    match (m.company_id, m.agreement_id) {
        (Some(c), Some(a)) => format!("{kind}: company {c}, agreement {a}"),
        (Some(c), None) => format!("{kind}: company {c}"),
        _ => kind.to_owned(),
    }
}

/// Which top-level settings differ (e.g. "products", "month"), sorted.
pub fn changed_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let mut keys: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| old.get(k) != new.get(k));
    keys
}

/// `month: "current" → "previous"; paused: null → {...}` for the changed keys,
/// each value and the whole cut to a bounded size.
fn settings_detail(old: &Settings, new: &Settings, changed: &[String]) -> String {
    let old = serde_json::to_value(old).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let parts: Vec<String> = changed
        .iter()
        .map(|k| {
            format!(
                "{k}: {} → {}",
                shown(old.get(k.as_str())),
                shown(new.get(k.as_str()))
            )
        })
        .collect();
    cut(&parts.join("; "), MAX_DETAIL)
}

fn shown(value: Option<&Value>) -> String {
    let text = value.map_or("null".into(), Value::to_string);
    cut(&text, MAX_VALUE)
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Appends one entry of an operator's change. A failure is logged and returned:
/// a change the trail cannot record is reported rather than passed over.
pub async fn append(
    store: &dyn Store,
    actor: &str,
    action: &str,
    tenant_id: Option<&str>,
    agreement_id: Option<i64>,
    detail: String,
) -> Result<(), StoreError> {
    let at = chrono::Utc::now();
    let entry = AuditEntry {
        run_id: String::new(),
        seq: AuditEntry::seq_outside_run(),
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        tenant_id: tenant_id.map(str::to_owned),
        agreement_id,
        identifier: String::new(),
        entity_id: None,
        old_quantity: None,
        new_quantity: None,
        detail: Some(detail),
    };
    store.append_audit(&entry).await.inspect_err(|e| {
        tracing::error!(error = %e, action = %entry.action, "cannot append to the audit trail");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_what_differs() {
        let a = Settings::default();
        let mut b = a.clone();
        b.month = "2026-05".into();
        b.products.insert("Sophos_Email".into());
        assert_eq!(changed_keys(&a, &b), vec!["month", "products"]);
        assert!(changed_keys(&a, &a).is_empty());
        let detail = settings_detail(&a, &b, &changed_keys(&a, &b));
        assert_eq!(
            detail,
            r#"month: "current" → "2026-05"; products: [] → ["Sophos_Email"]"#
        );
    }

    #[test]
    fn details_are_bounded() {
        let a = Settings::default();
        let mut b = a.clone();
        for i in 0..500 {
            b.product_codes
                .insert(format!("CODE-{i:04}"), "Sophos_Email".into());
        }
        let detail = settings_detail(&a, &b, &changed_keys(&a, &b));
        assert!(detail.chars().count() < MAX_VALUE * 2 + 40, "{detail}");
        assert!(detail.ends_with('…'));
        assert_eq!(cut("ab", 1), "a…");
        assert_eq!(cut("ab", 2), "ab");
    }

    #[test]
    fn a_bare_pause_is_the_actors_and_a_kept_one_keeps_its_author() {
        let filled = fill_pause(None, Some(Pause::default()), "api:token").unwrap();
        assert_eq!(filled.by.as_deref(), Some("api:token"));
        assert!(filled.at.is_some());
        let kept = fill_pause(Some(&filled), Some(Pause::default()), "cli:bob").unwrap();
        assert_eq!(kept, filled);
        assert_eq!(fill_pause(Some(&filled), None, "cli:bob"), None);
    }
}
