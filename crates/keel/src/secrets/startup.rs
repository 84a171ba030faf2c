//! `[secrets]`: which provider fills the configuration's secrets at start-up.
//!
//! The configuration already reads `KEEL_X` and `KEEL_X_FILE`. With `secrets.provider` set to
//! `directory` or `vault`, every secret key the environment left unset is asked of that
//! provider when `serve` starts, before the production rules are checked; the environment
//! still wins, so one secret can be overridden by hand during an incident.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::provider::{DirectoryProvider, EnvProvider, SecretError, SecretManager, SecretProvider};
use super::vault::{VaultConfig, VaultProvider};
use crate::config::{Config, Problem};

/// The configuration keys that are secrets (and the names providers know them by).
pub const SECRET_KEYS: &[&str] = &["session.secret", "database.url", "metrics.token"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Secrets come from the configuration layers only (`KEEL_X`, `KEEL_X_FILE`, files).
    #[default]
    None,
    /// One file per secret in `secrets.directory` (`session_secret`, `database_url`).
    Directory,
    /// Fields of one HashiCorp Vault KV v2 secret (`secrets.vault`).
    Vault,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub provider: ProviderKind,
    /// For `provider = "directory"`: Docker/Swarm `/run/secrets`, a Kubernetes secret volume.
    pub directory: PathBuf,
    /// How long the secret manager keeps an answer before asking the provider again.
    #[serde(with = "crate::config::units::duration")]
    pub cache_ttl: Duration,
    pub vault: VaultConfig,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::None,
            directory: PathBuf::from("/run/secrets"),
            cache_ttl: Duration::from_secs(300),
            vault: VaultConfig::default(),
        }
    }
}

impl SecretsConfig {
    /// The manager for `provider` (`None` when no provider is configured).
    pub fn manager(&self) -> Result<Option<SecretManager>, SecretError> {
        let provider: Arc<dyn SecretProvider> = match self.provider {
            ProviderKind::None => return Ok(None),
            ProviderKind::Directory => Arc::new(DirectoryProvider::new(&self.directory)),
            ProviderKind::Vault => Arc::new(VaultProvider::new(&self.vault)?),
        };
        Ok(Some(SecretManager::new(vec![provider], self.cache_ttl)))
    }
}

/// Fills every secret key the environment (`env_vars`) left unset from the configured
/// provider. Returns the keys filled. Call `Config::validate` afterwards.
pub async fn fill_from_provider(
    config: &mut Config,
    env_vars: &[(String, String)],
) -> Result<Vec<&'static str>, SecretError> {
    let Some(manager) = config.secrets.manager()? else {
        return Ok(Vec::new());
    };
    let mut filled = Vec::new();
    for key in SECRET_KEYS {
        let variable = EnvProvider::variable(key);
        let file_variable = format!("{variable}_FILE");
        if env_vars
            .iter()
            .any(|(name, _)| *name == variable || *name == file_variable)
        {
            continue;
        }
        let value = match manager.get(key).await {
            Ok(value) => value,
            Err(SecretError::NotFound(_)) => continue,
            Err(error) => return Err(error),
        };
        match *key {
            "session.secret" => config.session.secret = Some(value),
            "database.url" => config.database.url = value,
            "metrics.token" => config.metrics.token = Some(value),
            other => unreachable!("SECRET_KEYS lists {other} without a field"),
        }
        filled.push(*key);
    }
    Ok(filled)
}

/// The rules `Config::validate` defers while a provider may still fill a secret: after
/// `fill_from_provider`, production still needs a session key.
pub fn still_missing(config: &Config) -> Vec<Problem> {
    if config.env.is_production() && config.session.secret.is_none() {
        let provider = format!("{:?}", config.secrets.provider).to_ascii_lowercase();
        return vec![Problem::new(
            "session.secret",
            format!(
                "is required in production: not in KEEL_SESSION__SECRET(_FILE) and the {provider} \
                 secrets provider has no `session_secret`"
            ),
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[tokio::test]
    async fn the_directory_provider_fills_what_the_environment_left_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("session_secret"),
            "from-the-directory-0123456789abcdef",
        )
        .unwrap();
        std::fs::write(dir.path().join("database_url"), "mongodb://dir/keel").unwrap();
        let mut config = Config::default();
        config.secrets.provider = ProviderKind::Directory;
        config.secrets.directory = dir.path().to_path_buf();
        let env = vec![(
            "KEEL_DATABASE__URL".to_owned(),
            "mongodb://env/keel".to_owned(),
        )];
        config.database.url = Secret::new("mongodb://env/keel");

        let filled = fill_from_provider(&mut config, &env).await.unwrap();
        assert_eq!(filled, ["session.secret"]);
        let session = config.session.secret.as_ref().map(Secret::expose);
        assert_eq!(session, Some("from-the-directory-0123456789abcdef"));
        assert_eq!(
            config.database.url.expose(),
            "mongodb://env/keel",
            "the environment wins"
        );
    }

    #[test]
    fn production_without_a_session_key_after_filling_is_a_problem() {
        let mut config = Config::default();
        config.secrets.provider = ProviderKind::Directory;
        assert!(
            still_missing(&config).is_empty(),
            "development needs no key"
        );
        config.env = crate::config::Environment::Production;
        let problems = still_missing(&config);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("directory secrets provider")
        );
        config.session.secret = Some(Secret::new("k".repeat(40)));
        assert!(still_missing(&config).is_empty());
    }

    #[tokio::test]
    async fn without_a_provider_nothing_changes() {
        let mut config = Config::default();
        assert!(
            fill_from_provider(&mut config, &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(config.session.secret.is_none());
    }
}
