//! HashiCorp Vault (or OpenBao), KV secrets engine version 2, over its HTTP API.
//!
//! One read is `GET {addr}/v1/{mount}/data/{path}` with the token in `X-Vault-Token`; the answer
//! is `{"data": {"data": {field: value, …}, "metadata": {…}}}`. keel's secrets are fields of
//! that one secret (`session.secret` → field `session_secret`). The token is read from a file
//! at every request, so a Vault Agent (or a person) can rotate it without restarting keel.
//! Caching and refresh are the `SecretManager`'s job. docs/deploy.md has the Vault set-up.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Secret;
use super::provider::{SecretError, SecretProvider, read_secret_file, secret_name};

/// `[secrets.vault]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// `https://vault.example.com:8200`.
    pub addr: String,
    /// Where the KV v2 engine is mounted (`vault secrets enable -path=secret kv-v2`).
    pub mount: String,
    /// The secret holding keel's fields (`vault kv put -mount=secret keel/production …`).
    pub path: String,
    /// File holding the token (Vault Agent sink, a Docker secret, a systemd credential).
    pub token_file: PathBuf,
    /// Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Per-request timeout.
    #[serde(with = "crate::config::units::duration")]
    pub timeout: Duration,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            addr: "http://127.0.0.1:8200".to_owned(),
            mount: "secret".to_owned(),
            path: "keel".to_owned(),
            token_file: PathBuf::from("/run/secrets/vault_token"),
            namespace: None,
            timeout: Duration::from_secs(5),
        }
    }
}

pub struct VaultProvider {
    client: reqwest::Client,
    url: String,
    token_file: PathBuf,
    namespace: Option<String>,
}

impl VaultProvider {
    pub fn new(config: &VaultConfig) -> Result<Self, SecretError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SecretError::Vault(format!("cannot build the HTTP client: {e}")))?;
        let url = format!(
            "{}/v1/{}/data/{}",
            config.addr.trim_end_matches('/'),
            config.mount.trim_matches('/'),
            config.path.trim_matches('/')
        );
        Ok(Self {
            client,
            url,
            token_file: config.token_file.clone(),
            namespace: config.namespace.clone(),
        })
    }

    /// The data of the KV v2 secret, or `None` when Vault has no secret at the path.
    async fn read_secret(&self) -> Result<Option<serde_json::Map<String, Value>>, SecretError> {
        let token_file = self.token_file.clone();
        let token = tokio::task::spawn_blocking(move || read_secret_file(&token_file))
            .await
            .map_err(|e| SecretError::Vault(format!("reading the token failed: {e}")))??;
        let mut request = self
            .client
            .get(&self.url)
            .header("X-Vault-Token", token.expose());
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SecretError::Vault(format!("GET {}: {}", self.url, without_url(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            // Vault's error bodies are `{"errors": [...]}` messages, never secret values.
            let body = response.text().await.unwrap_or_default();
            let errors = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("errors").cloned())
                .map(|e| e.to_string())
                .unwrap_or_default();
            let hint = if status == reqwest::StatusCode::FORBIDDEN {
                " (the token is invalid or its policy lacks read on this path)"
            } else {
                ""
            };
            return Err(SecretError::Vault(format!(
                "GET {} answered {status}{hint} {errors}",
                self.url
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| SecretError::Vault(format!("GET {}: not JSON: {e}", self.url)))?;
        match body.pointer("/data/data") {
            Some(Value::Object(fields)) => Ok(Some(fields.clone())),
            // A deleted latest version reads as `"data": null`.
            Some(Value::Null) => Ok(None),
            _ => Err(SecretError::Vault(format!(
                "GET {}: not a KV v2 answer (no data.data object); is the mount a kv-v2 engine?",
                self.url
            ))),
        }
    }
}

/// reqwest's error text without the URL it carries (ours is printed once already).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    text
}

impl SecretProvider for VaultProvider {
    fn name(&self) -> &'static str {
        "vault"
    }

    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Secret>, SecretError>> {
        Box::pin(async move {
            let field = secret_name(key)?;
            let Some(fields) = self.read_secret().await? else {
                return Ok(None);
            };
            match fields.get(&field) {
                None => Ok(None),
                Some(Value::String(value)) if !value.is_empty() => Ok(Some(Secret::new(value))),
                Some(_) => Err(SecretError::Vault(format!(
                    "field `{field}` of {} is not a non-empty string",
                    self.url
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! Against a small Vault double on 127.0.0.1:0 that speaks the KV v2 read API: it checks
    //! the path and the token like Vault does and counts the reads.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use serde_json::json;

    use super::*;
    use crate::secrets::provider::SecretManager;

    const TOKEN: &str = "hvs.test-token";

    #[derive(Clone, Default)]
    struct Double {
        reads: Arc<AtomicUsize>,
    }

    async fn kv_read(State(double): State<Double>, headers: HeaderMap) -> (StatusCode, String) {
        double.reads.fetch_add(1, Ordering::SeqCst);
        if headers.get("x-vault-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
            return (
                StatusCode::FORBIDDEN,
                json!({"errors": ["permission denied"]}).to_string(),
            );
        }
        let body = json!({
            "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {
                "data": {"session_secret": "from-vault-0123456789abcdef0123456789", "port": 5},
                "metadata": {"version": 3, "destroyed": false}
            }
        });
        (StatusCode::OK, body.to_string())
    }

    async fn start_double() -> (String, Double) {
        let double = Double::default();
        let app = Router::new()
            .route("/v1/secret/data/keel/production", get(kv_read))
            .with_state(double.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), double)
    }

    fn provider(addr: &str, path: &str, token_file: &std::path::Path) -> VaultProvider {
        VaultProvider::new(&VaultConfig {
            addr: format!("{addr}/"),
            mount: "secret".into(),
            path: path.into(),
            token_file: token_file.to_path_buf(),
            namespace: None,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_field_of_the_kv_v2_secret_is_read_with_the_token_from_its_file() {
        let (addr, double) = start_double().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("vault_token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let vault = provider(&addr, "keel/production", &token_file);
        let secret = vault.fetch("session.secret").await.unwrap().unwrap();
        assert_eq!(secret.expose(), "from-vault-0123456789abcdef0123456789");
        assert!(
            vault.fetch("database.url").await.unwrap().is_none(),
            "absent field"
        );
        let not_text = vault.fetch("port").await.unwrap_err();
        assert!(
            not_text.to_string().contains("not a non-empty string"),
            "{not_text}"
        );
        assert_eq!(double.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_wrong_token_is_an_error_and_a_missing_path_is_absent() {
        let (addr, _) = start_double().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("vault_token");
        std::fs::write(&token_file, "hvs.wrong").unwrap();
        let error = provider(&addr, "keel/production", &token_file)
            .fetch("session.secret")
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("403") && text.contains("permission denied"),
            "{text}"
        );
        assert!(
            !text.contains("hvs.wrong"),
            "the token never appears in errors"
        );
        std::fs::write(&token_file, TOKEN).unwrap();
        let missing = provider(&addr, "keel/staging", &token_file);
        assert!(missing.fetch("session.secret").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_manager_caches_vault_answers_and_keeps_them_when_vault_fails() {
        let (addr, double) = start_double().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("vault_token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let vault: Arc<dyn SecretProvider> =
            Arc::new(provider(&addr, "keel/production", &token_file));
        let manager = SecretManager::new(vec![vault], Duration::from_secs(300));
        for _ in 0..5 {
            manager.get("session.secret").await.unwrap();
        }
        assert_eq!(
            double.reads.load(Ordering::SeqCst),
            1,
            "one read while the entry is fresh"
        );
        // The token is revoked: a refresh fails, the cached value is still served.
        std::fs::write(&token_file, "hvs.revoked").unwrap();
        let value = manager.refresh("session.secret").await.unwrap();
        assert_eq!(value.expose(), "from-vault-0123456789abcdef0123456789");
        assert_eq!(double.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_vault_is_an_error_naming_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("vault_token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let error = provider(&addr, "keel", &token_file)
            .fetch("session.secret")
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("/v1/secret/data/keel"),
            "{error}"
        );
    }
}
