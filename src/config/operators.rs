//! Who may use the console, and with which role: the `operators` setting. A person
//! the identity provider vouches for is matched by email (case-insensitive) or by
//! a group of the ID token's groups claim; the highest matching role wins.

use serde::{Deserialize, Serialize};

/// A console role; each includes everything the one before may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every page and the CSV downloads.
    Viewer,
    /// Mapping, ignoring customers, dry runs, syncs, pausing.
    Operator,
    /// Approving and rejecting held billing changes.
    Approver,
    /// Settings, operators included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text.trim())
    }

    /// What this role may do, in a few words (for refusals and the docs).
    pub fn may(self) -> &'static str {
        match self {
            Role::Viewer => "see every page and download the CSV files",
            Role::Operator => {
                "map and ignore customers, start dry runs and syncs, pause and resume"
            }
            Role::Approver => "approve and reject held billing changes",
            Role::Admin => "change the settings and the operators",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `operators`: a person (by email) or a group, and the role it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub role: Role,
}

impl OperatorRule {
    fn matches(&self, email: Option<&str>, groups: &[String]) -> bool {
        match (&self.email, &self.group) {
            (Some(want), None) => email.is_some_and(|e| e.trim().eq_ignore_ascii_case(want.trim())),
            (None, Some(want)) => groups.iter().any(|g| g == want.trim()),
            _ => false,
        }
    }
}

/// The role `operators` gives a person with `email` in `groups` (the highest of
/// every matching entry), or None: not an operator.
pub fn role_for(rules: &[OperatorRule], email: Option<&str>, groups: &[String]) -> Option<Role> {
    rules
        .iter()
        .filter(|r| r.matches(email, groups))
        .map(|r| r.role)
        .max()
}

/// The groups of `groups` that some entry of `operators` names: all a session needs
/// to keep (an ID token may list hundreds).
pub fn named_groups(rules: &[OperatorRule], groups: &[String]) -> Vec<String> {
    let mut named: Vec<String> = groups
        .iter()
        .filter(|g| {
            rules
                .iter()
                .any(|r| r.group.as_deref().map(str::trim) == Some(g.as_str()))
        })
        .cloned()
        .collect();
    named.sort();
    named.dedup();
    named
}

/// Checks every entry: exactly one of `email` and `group`, neither empty, an
/// email that looks like one.
pub fn check(rules: &[OperatorRule]) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("operators[{i}]");
        match (
            rule.email.as_deref().map(str::trim),
            rule.group.as_deref().map(str::trim),
        ) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{at} names both an email and a group: give one of them per entry, e.g. {{\"email\": \"alice@example.com\", \"role\": \"approver\"}} or {{\"group\": \"billing-admins\", \"role\": \"admin\"}}"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{at} names neither an email nor a group: give one, e.g. {{\"email\": \"alice@example.com\", \"role\": \"approver\"}}"
                ));
            }
            (Some(e), None) if !looks_like_email(e) => {
                return Err(format!(
                    "{at}.email {e:?} is not an email address: give the address the identity provider puts in the ID token's email claim, e.g. \"alice@example.com\""
                ));
            }
            (None, Some("")) => {
                return Err(format!(
                    "{at}.group is empty: give the group's value as it appears in the ID token's groups claim (an Entra ID group's object id, a Cognito group's name)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether some entry gives `admin`.
pub fn has_admin(rules: &[OperatorRule]) -> bool {
    rules.iter().any(|r| r.role == Role::Admin)
}

fn looks_like_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !e.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<OperatorRule> {
        serde_json::from_str(
            r#"[{"email":"Alice@Example.com","role":"approver"},
                {"group":"billing-admins","role":"admin"},
                {"email":"bob@example.com","role":"viewer"},
                {"group":"helpdesk","role":"operator"}]"#,
        )
        .unwrap()
    }

    #[test]
    fn an_email_matches_without_case_and_the_highest_role_wins() {
        let r = rules();
        assert_eq!(
            role_for(&r, Some("alice@example.COM"), &[]),
            Some(Role::Approver)
        );
        assert_eq!(
            role_for(&r, Some("bob@example.com"), &["helpdesk".into()]),
            Some(Role::Operator)
        );
        assert_eq!(
            role_for(&r, Some("alice@example.com"), &["billing-admins".into()]),
            Some(Role::Admin)
        );
        assert_eq!(
            role_for(&r, Some("carol@example.com"), &["other".into()]),
            None
        );
        assert_eq!(role_for(&r, None, &[]), None);
        // Groups match exactly: an id or a name is not a case-folded word.
        assert_eq!(role_for(&r, None, &["Billing-Admins".into()]), None);
    }

    #[test]
    fn roles_are_ordered_and_spelled_as_in_the_settings() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Approver);
        assert!(Role::Approver < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!(
            serde_json::from_str::<OperatorRule>(r#"{"email":"a@b.c","role":"owner"}"#).is_err()
        );
    }

    #[test]
    fn entries_name_exactly_one_of_email_and_group() {
        assert!(check(&rules()).is_ok());
        let bad = |json: &str| {
            check(&serde_json::from_str::<Vec<OperatorRule>>(json).unwrap()).unwrap_err()
        };
        assert!(bad(r#"[{"email":"a@b.c","group":"g","role":"admin"}]"#).contains("both"));
        assert!(bad(r#"[{"role":"admin"}]"#).contains("neither"));
        assert!(bad(r#"[{"email":"alice","role":"admin"}]"#).contains("not an email"));
        assert!(bad(r#"[{"group":" ","role":"admin"}]"#).contains("empty"));
    }

    #[test]
    fn a_session_keeps_only_the_groups_the_operators_name() {
        let groups = vec![
            "x".to_owned(),
            "billing-admins".into(),
            "helpdesk".into(),
            "x".into(),
        ];
        assert_eq!(
            named_groups(&rules(), &groups),
            vec!["billing-admins", "helpdesk"]
        );
    }
}
