//! Secrets providers: where a secret's value comes from, behind one trait, and the manager that
//! asks them in order and caches what they answer (the guides' `SecretManager`).
//!
//! A secret is named by its configuration key (`session.secret`, `database.url`). Each
//! provider maps that key to its own naming:
//!
//! | provider | `session.secret` is read from |
//! |---|---|
//! | [`EnvProvider`] | `KEEL_SESSION__SECRET`, else the file named by `KEEL_SESSION__SECRET_FILE` |
//! | [`DirectoryProvider`] | the file `<dir>/session_secret` (Docker/Swarm: `/run/secrets`) |
//! | [`super::vault::VaultProvider`] | the field `session_secret` of one KV v2 secret |
//!
//! The manager keeps each answer for `ttl`; after that the next `get` asks again, and if the
//! provider is unreachable then, the last value is served (with a warning) rather than failing
//! a running process because Vault blinked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("`{0}` is not a secret key (letters, digits, `_`, `-` and `.`; no `..`)")]
    BadKey(String),
    #[error("no provider has the secret `{0}`")]
    NotFound(String),
    #[error("cannot read the secret file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("vault: {0}")]
    Vault(String),
}

/// A source of secrets. `Ok(None)`: this provider does not have `key`; `Err`: it should have
/// been able to answer and could not.
pub trait SecretProvider: Send + Sync {
    /// For logs: `env`, `directory`, `vault`.
    fn name(&self) -> &'static str;
    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Secret>, SecretError>>;
}

/// `session.secret` → `session_secret`: the file and field name used by the directory and
/// Vault providers. Refuses anything that could escape a directory.
pub fn secret_name(key: &str) -> Result<String, SecretError> {
    let valid = !key.is_empty()
        && key.len() <= 128
        && !key.contains("..")
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(key.replace('.', "_"))
    } else {
        Err(SecretError::BadKey(key.to_owned()))
    }
}

/// A secret file's content minus the trailing newline editors and `echo` add.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let file_error = |reason: String| SecretError::File {
        path: path.to_owned(),
        reason,
    };
    let content = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let value = content.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(file_error("it is empty".to_owned()));
    }
    Ok(Secret::new(value))
}

/// `KEEL_SECTION__KEY` or `KEEL_SECTION__KEY_FILE`, the same variables the configuration reads.
pub struct EnvProvider {
    vars: HashMap<String, String>,
}

impl EnvProvider {
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars.into_iter().collect(),
        }
    }

    /// `session.secret` → `KEEL_SESSION__SECRET`.
    pub fn variable(key: &str) -> String {
        format!("KEEL_{}", key.replace('.', "__").to_ascii_uppercase())
    }
}

impl SecretProvider for EnvProvider {
    fn name(&self) -> &'static str {
        "env"
    }

    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Secret>, SecretError>> {
        Box::pin(async move {
            secret_name(key)?;
            let variable = Self::variable(key);
            if let Some(value) = self.vars.get(&variable).filter(|v| !v.is_empty()) {
                return Ok(Some(Secret::new(value.clone())));
            }
            match self.vars.get(&format!("{variable}_FILE")) {
                Some(path) => {
                    let path = PathBuf::from(path);
                    tokio::task::spawn_blocking(move || read_secret_file(&path))
                        .await
                        .map_err(|e| SecretError::File {
                            path: PathBuf::new(),
                            reason: e.to_string(),
                        })?
                        .map(Some)
                }
                None => Ok(None),
            }
        })
    }
}

/// One file per secret in a directory: Docker and Swarm secrets (`/run/secrets`), Kubernetes
/// secret volumes, systemd's `$CREDENTIALS_DIRECTORY`.
pub struct DirectoryProvider {
    dir: PathBuf,
}

impl DirectoryProvider {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SecretProvider for DirectoryProvider {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Secret>, SecretError>> {
        Box::pin(async move {
            let path = self.dir.join(secret_name(key)?);
            tokio::task::spawn_blocking(move || {
                if !path.exists() {
                    return Ok(None);
                }
                read_secret_file(&path).map(Some)
            })
            .await
            .map_err(|e| SecretError::File {
                path: self.dir.clone(),
                reason: e.to_string(),
            })?
        })
    }
}

struct Cached {
    value: Secret,
    fetched_at: Instant,
}

/// Asks its providers in order; the first that has the secret answers. Answers are cached for
/// `ttl`. Cheap to clone.
#[derive(Clone)]
pub struct SecretManager {
    providers: Arc<[Arc<dyn SecretProvider>]>,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl SecretManager {
    pub fn new(providers: Vec<Arc<dyn SecretProvider>>, ttl: Duration) -> Self {
        Self {
            providers: providers.into(),
            ttl,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The secret, from the cache while it is fresh.
    pub async fn get(&self, key: &str) -> Result<Secret, SecretError> {
        if let Some(value) = self.cached(key, true) {
            return Ok(value);
        }
        self.fetch_and_cache(key).await
    }

    /// Asks the providers again whatever the cache holds (after a rotation, say).
    pub async fn refresh(&self, key: &str) -> Result<Secret, SecretError> {
        self.fetch_and_cache(key).await
    }

    fn cached(&self, key: &str, fresh_only: bool) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|c| !fresh_only || c.fetched_at.elapsed() < self.ttl)
            .map(|c| c.value.clone())
    }

    async fn fetch_and_cache(&self, key: &str) -> Result<Secret, SecretError> {
        match self.fetch(key).await {
            Ok(value) => {
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                cache.insert(
                    key.to_owned(),
                    Cached {
                        value: value.clone(),
                        fetched_at: Instant::now(),
                    },
                );
                Ok(value)
            }
            Err(error @ (SecretError::BadKey(_) | SecretError::NotFound(_))) => Err(error),
            Err(error) => match self.cached(key, false) {
                Some(stale) => {
                    tracing::warn!(key, error = %error, "secret refresh failed; serving the cached value");
                    Ok(stale)
                }
                None => Err(error),
            },
        }
    }

    async fn fetch(&self, key: &str) -> Result<Secret, SecretError> {
        for provider in self.providers.iter() {
            if let Some(value) = provider.fetch(key).await? {
                tracing::debug!(key, provider = provider.name(), "secret fetched");
                return Ok(value);
            }
        }
        Err(SecretError::NotFound(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(providers: Vec<Arc<dyn SecretProvider>>) -> SecretManager {
        SecretManager::new(providers, Duration::from_secs(60))
    }

    #[test]
    fn keys_map_to_names_and_traversal_is_refused() {
        assert_eq!(secret_name("session.secret").unwrap(), "session_secret");
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "a..b", "x y"] {
            assert!(
                matches!(secret_name(bad), Err(SecretError::BadKey(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            EnvProvider::variable("session.secret"),
            "KEEL_SESSION__SECRET"
        );
    }

    #[tokio::test]
    async fn env_reads_the_variable_then_the_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db");
        std::fs::write(&file, "mongodb://u:p@h/keel\n").unwrap();
        let env = EnvProvider::from_vars([
            (
                "KEEL_SESSION__SECRET".to_owned(),
                "from-variable".to_owned(),
            ),
            (
                "KEEL_DATABASE__URL_FILE".to_owned(),
                file.display().to_string(),
            ),
        ]);
        let mut found = Vec::new();
        for key in ["session.secret", "database.url", "other.key"] {
            found.push(env.fetch(key).await.unwrap().map(|s| s.expose().to_owned()));
        }
        let expected = [Some("from-variable"), Some("mongodb://u:p@h/keel"), None];
        assert_eq!(
            found.iter().map(Option::as_deref).collect::<Vec<_>>(),
            expected
        );
    }

    #[tokio::test]
    async fn directory_reads_one_file_per_secret_and_refuses_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("session_secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("database_url"), "\n").unwrap();
        let provider = DirectoryProvider::new(dir.path());
        let found = provider.fetch("session.secret").await.unwrap();
        assert_eq!(
            found.map(|s| s.expose().to_owned()).as_deref(),
            Some("s3cret")
        );
        assert!(provider.fetch("missing.key").await.unwrap().is_none());
        let empty = provider.fetch("database.url").await.unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        assert!(matches!(
            provider.fetch("../x").await,
            Err(SecretError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn the_first_provider_that_has_the_secret_answers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("session_secret"), "from-directory").unwrap();
        std::fs::write(dir.path().join("api_key"), "directory-api-key").unwrap();
        let env = EnvProvider::from_vars([("KEEL_SESSION__SECRET".into(), "from-env".into())]);
        let manager = manager(vec![
            Arc::new(env),
            Arc::new(DirectoryProvider::new(dir.path())),
        ]);
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "from-env"
        );
        assert_eq!(
            manager.get("api.key").await.unwrap().expose(),
            "directory-api-key"
        );
        assert!(matches!(
            manager.get("nowhere").await,
            Err(SecretError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn cached_values_are_served_until_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session_secret");
        std::fs::write(&file, "first").unwrap();
        let manager = manager(vec![Arc::new(DirectoryProvider::new(dir.path()))]);
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "first"
        );
        std::fs::write(&file, "second").unwrap();
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "first"
        );
        assert_eq!(
            manager.refresh("session.secret").await.unwrap().expose(),
            "second"
        );
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "second"
        );
    }

    #[tokio::test]
    async fn an_expired_entry_is_fetched_again_and_kept_when_the_provider_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session_secret");
        std::fs::write(&file, "first").unwrap();
        let provider: Arc<dyn SecretProvider> = Arc::new(DirectoryProvider::new(dir.path()));
        let manager = SecretManager::new(vec![provider], Duration::ZERO);
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "first"
        );
        std::fs::write(&file, "second").unwrap();
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "second"
        );
        // The provider now fails (an empty file is an error, not "absent"): the stale value stays.
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            manager.get("session.secret").await.unwrap().expose(),
            "second"
        );
    }
}
