//! `[ops]`: the ops console (`GET /ops`) — who may open it besides the users granted `admin`
//! with `keel users grant-admin`, and how often each replica reports its heartbeat.

use serde::{Deserialize, Serialize};

/// `[ops]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Emails that are admins without a grant in the store: the bootstrap for a first deploy
    /// (`KEEL_OPS__ADMIN_EMAILS=ada@example.com`). Compared lower-cased, like stored emails.
    pub admin_emails: Vec<String>,
    /// How often each replica writes its heartbeat into `ops_instances`.
    pub heartbeat_interval_ms: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            admin_emails: Vec::new(),
            heartbeat_interval_ms: 5_000,
        }
    }
}

impl OpsConfig {
    /// Whether `email` (already normalised: trimmed, lower-case) is a bootstrap admin.
    pub fn is_bootstrap_admin(&self, email: &str) -> bool {
        self.admin_emails
            .iter()
            .any(|listed| listed.trim().eq_ignore_ascii_case(email))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_admins_match_case_insensitively() {
        let ops = OpsConfig {
            admin_emails: vec![" Ada@Example.com".into()],
            ..OpsConfig::default()
        };
        assert!(ops.is_bootstrap_admin("ada@example.com"));
        assert!(!ops.is_bootstrap_admin("bob@example.com"));
    }
}
