//! Secrets: values that must never reach a log, an error message or `keel config check`.
//!
//! `Secret` wraps `secrecy::SecretString`: `Debug`, `Display` and `Serialize` all print
//! `[REDACTED]`; the only way to the value is the explicit `expose()`, which is easy to grep for.
//!
//! Where values come from: the configuration reads `KEEL_X` / `KEEL_X_FILE` itself; `provider`
//! adds the providers behind one trait (environment, a directory of files, HashiCorp Vault in
//! `vault`) and the caching `SecretManager` that asks them in order.

pub mod provider;
pub mod startup;
pub mod vault;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text every redacted secret prints as.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret's value. Call sites are the places a secret leaves keel's hands
    /// (a driver connect, a key derivation); keep them few.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
