//! Users and credentials. `Email` and `Password` are parsed once at the edge; everything after
//! that (hashing, lookups) takes the parsed types and never re-checks.

use std::fmt;

use bson::oid::ObjectId;
use keel::validation::FieldErrors;
use serde::{Deserialize, Serialize};

/// An email address, trimmed and lower-cased (the unique index compares these bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// A deliberately modest check: one `@`, a non-empty local part, a dotted domain, no spaces
    /// or control characters. Whether the mailbox exists is not something a parser can know.
    pub fn parse(raw: &str) -> Result<Email, FieldErrors> {
        let invalid = || FieldErrors::single("email", "must be a valid email address");
        let value = raw.trim().to_lowercase();
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A candidate password: 12 to 128 characters. Never printed, never stored (only its hash).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Password, FieldErrors> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(FieldErrors::single(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldErrors::single(
                "password",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Password(raw.to_string()))
    }

    /// The only way to the text: hashing and verification.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// The register/login body as it arrives.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// One `@`, a dotted domain, no spaces; compared trimmed and lower-cased.
    #[schema(required, value_type = String, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: Option<String>,
    #[schema(required, value_type = String, min_length = 12, max_length = 128, example = "correct horse battery staple")]
    pub password: Option<String>,
}

/// Parsed credentials: both fields valid.
#[derive(Debug)]
pub struct Credentials {
    pub email: Email,
    pub password: Password,
}

impl CredentialsRequest {
    /// Reports every bad or missing field at once.
    pub fn parse(self) -> Result<Credentials, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = match self.email {
            Some(raw) => errors.take(Email::parse(&raw)),
            None => {
                errors.push("email", "is required");
                None
            }
        };
        let password = match self.password {
            Some(raw) => errors.take(Password::parse(&raw)),
            None => {
                errors.push("password", "is required");
                None
            }
        };
        errors.finish(|| {
            Some(Credentials {
                email: email?,
                password: password?,
            })
        })
    }
}

/// A user as stored in `users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub email: String,
    /// PHC string (`$argon2id$v=19$m=…`): algorithm and parameters travel with the hash, so
    /// raising the cost in config does not lock out existing users.
    pub password_hash: String,
    pub created_at: bson::DateTime,
    /// Roles granted to this user (`admin`: the ops console), by `keel users grant-admin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The role that opens the ops console (`/ops`, `/api/ops/*`).
pub const ADMIN_ROLE: &str = "admin";

impl UserRecord {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A user as the API shows it: never the hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    #[serde(rename = "_id")]
    #[schema(example = "665f1f77bcf86cd799439011")]
    pub id: String,
    pub created_at: String,
    pub email: String,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        UserView {
            id: user.id.to_hex(),
            email: user.email.clone(),
            created_at: user.created_at.try_to_rfc3339_string().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("ééééééééééé").is_err());
        assert!(Password::parse("éééééééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn password_never_prints() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn credentials_report_every_bad_field() {
        let errors = CredentialsRequest {
            email: Some("nope".into()),
            password: None,
        }
        .parse()
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password"]);
    }
}
