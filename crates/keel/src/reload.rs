//! SIGHUP: reload the non-secret settings of a running keel without dropping a connection.
//!
//! The configuration is loaded again exactly as at start-up (same directory, environment and
//! flags; `_FILE` secrets are re-read). A configuration that does not load or validate is
//! rejected with one log line listing every problem, and the running one stays. A valid one is
//! published through `Platform::replace_config`; the log filter is swapped in place.
//!
//! Only the keys in `RELOADABLE` change in a running process: those whose readers look at
//! `platform.config()` / `platform.watch_config()` at each use (the log filter, CORS, the rate
//! limits, the `[tasks]` table: schedules, `enabled`, lock and progress settings and the tasks'
//! own settings, read by the scheduler and at each run). Everything else is read once at
//! start-up (the listener, the store, the session key, telemetry export, worker pool, job
//! queue, …): a change to such a key is logged as needing a restart and the running value is
//! kept, so the published configuration always says what the process really does. A part that
//! starts reading its settings live adds its key here.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Platform;
use crate::config::{Config, ConfigError, LoadOptions};
use crate::secrets::Secret;
use crate::secrets::startup::ProviderKind;
use crate::telemetry::{LogFilter, TelemetryError};

/// Keys (or whole sections) a reload changes in the running process.
pub const RELOADABLE: &[&str] = &["log.level", "server.cors_origins", "rate_limit", "tasks"];

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid; keeping the running one: {0}")]
    Invalid(#[from] ConfigError),
    #[error("cannot apply the new log level; keeping the running configuration: {0}")]
    LogFilter(#[from] TelemetryError),
}

/// What a successful reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Keys now in effect with a new value.
    pub applied: Vec<String>,
    /// Keys that changed in the files/environment but need a restart; not applied.
    pub needs_restart: Vec<String>,
}

/// Reloads the configuration of one running process.
pub struct Reloader {
    platform: Platform,
    options: LoadOptions,
    log_filter: Option<LogFilter>,
}

impl Reloader {
    /// `options` must be the ones the running configuration was loaded with; `log_filter` is
    /// the telemetry handle (`None` where telemetry is not installed, as in unit tests).
    pub fn new(platform: Platform, options: LoadOptions, log_filter: Option<LogFilter>) -> Self {
        Self {
            platform,
            options,
            log_filter,
        }
    }

    /// Loads, checks and publishes the configuration. On `Err` nothing changed.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let next = crate::config::load(&self.options)?;
        let current = self.platform.config();
        let (next, needs_restart) = reloadable_part(&current, &next);
        let applied = changed_keys(&current, &next);
        if !applied.is_empty() {
            if let Some(log_filter) = &self.log_filter
                && current.log.level != next.log.level
            {
                log_filter.apply(&next)?;
            }
            self.platform.replace_config(next);
        }
        Ok(ReloadReport {
            applied,
            needs_restart,
        })
    }
}

/// Reports a reload's outcome in the log: what a SIGHUP handler does with `Reloader::reload`.
pub fn log_outcome(outcome: &Result<ReloadReport, ReloadError>) {
    match outcome {
        Ok(report) => {
            if !report.needs_restart.is_empty() {
                tracing::warn!(
                    keys = ?report.needs_restart,
                    "configuration reload: these settings change only on restart; keeping the running values"
                );
            }
            tracing::info!(applied = ?report.applied, "configuration reloaded");
        }
        Err(error) => tracing::error!(error = %error, "configuration reload rejected"),
    }
}

/// The configuration to publish - `current` with the reloadable keys of `next` - and the keys
/// that changed but need a restart. Secrets are compared by value (their serialized form is
/// redacted) and never printed.
fn reloadable_part(current: &Config, next: &Config) -> (Config, Vec<String>) {
    let mut published = current.clone();
    published.log.level = next.log.level.clone();
    published.server.cors_origins = next.server.cors_origins.clone();
    published.rate_limit = next.rate_limit.clone();
    published.tasks = next.tasks.clone();

    let mut needs_restart: Vec<String> = changed_keys(current, next)
        .into_iter()
        .filter(|key| !is_reloadable(key))
        .collect();
    // Secrets filled by a provider at start-up are absent from a reloaded configuration;
    // that is not a change. One set in the layers and different from the running one is.
    let from_provider = current.secrets.provider != ProviderKind::None;
    let secret_changed = |a: &Secret, b: &Secret| a.expose() != b.expose();
    if !from_provider && secret_changed(&current.database.url, &next.database.url) {
        needs_restart.push("database.url".to_owned());
    }
    let session = (
        current.session.secret.as_ref(),
        next.session.secret.as_ref(),
    );
    let session_secret_changed = match session {
        (Some(a), Some(b)) => secret_changed(a, b),
        (None, None) => false,
        (Some(_), None) => !from_provider,
        (None, Some(_)) => true,
    };
    if session_secret_changed {
        needs_restart.push("session.secret".to_owned());
    }
    needs_restart.sort();
    needs_restart.dedup();
    (published, needs_restart)
}

fn is_reloadable(key: &str) -> bool {
    RELOADABLE
        .iter()
        .any(|prefix| key == *prefix || key.starts_with(&format!("{prefix}.")))
}

/// Keys whose value differs between two configurations.
fn changed_keys(current: &Config, next: &Config) -> Vec<String> {
    let before = flatten(current);
    flatten(next)
        .into_iter()
        .filter(|(key, value)| before.get(key) != Some(value))
        .map(|(key, _)| key)
        .collect()
}

/// `server.port` → value, for every leaf of the serialized configuration (secrets redacted).
fn flatten(config: &Config) -> BTreeMap<String, Value> {
    let mut leaves = BTreeMap::new();
    let mut stack = vec![(
        String::new(),
        serde_json::to_value(config).unwrap_or_default(),
    )];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    stack.push((child_path, child));
                }
            }
            leaf => {
                leaves.insert(path, leaf);
            }
        }
    }
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reloader over the configuration in `dir`, on a platform with a temporary store (kept
    /// alive by the returned directory).
    async fn reloader_over(
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> (Reloader, tempfile::TempDir) {
        let options = LoadOptions {
            config_dir: dir.to_path_buf(),
            config_dir_required: true,
            env_vars: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: Vec::new(),
        };
        let config = crate::config::load(&options).expect("the first configuration loads");
        let (platform, store_dir) = crate::platform::temporary(config).await;
        (Reloader::new(platform, options, None), store_dir)
    }

    fn write(dir: &std::path::Path, text: &str) {
        std::fs::write(dir.join("default.toml"), text).unwrap();
    }

    #[tokio::test]
    async fn a_valid_change_is_published_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "[log]\nlevel = \"info\"\n");
        let (reloader, _store_dir) = reloader_over(dir.path(), &[]).await;
        let mut watcher = reloader.platform.watch_config();
        write(
            dir.path(),
            "[log]\nlevel = \"debug\"\n[server]\ncors_origins = [\"https://a.example.com\"]\n\
             [rate_limit]\napi = { limit = 7, window = \"1m\" }\n[workers]\nqueue_capacity = 9\n",
        );
        let report = reloader.reload().unwrap();
        let applied = ["log.level", "rate_limit.api.limit", "server.cors_origins"];
        assert_eq!(report.applied, applied);
        assert_eq!(report.needs_restart, ["workers.queue_capacity"]);
        assert_eq!(reloader.platform.config().rate_limit.api.limit, 7);
        assert_eq!(reloader.platform.config().workers.queue_capacity, 256);
        assert!(watcher.has_changed().unwrap());
        assert_eq!(watcher.borrow_and_update().log.level, "debug");
    }

    #[tokio::test]
    async fn an_invalid_file_is_rejected_and_the_running_configuration_stays() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "[log]\nlevel = \"warn\"\n");
        let (reloader, _store_dir) = reloader_over(dir.path(), &[]).await;
        write(
            dir.path(),
            "[log]\nlevel = \"warn\"\nverbosity = 3\n[server]\nport = \"x\"\n",
        );
        let error = reloader.reload().unwrap_err();
        let ReloadError::Invalid(invalid) = &error else {
            panic!("{error}")
        };
        let keys: Vec<&str> = invalid.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["log.verbosity", "server.port"]);
        assert_eq!(reloader.platform.config().log.level, "warn");
        let message = error.to_string();
        assert!(
            message.contains("server.port") && message.contains("log.verbosity"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn restart_only_settings_keep_their_running_values() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "[server]\nport = 4000\n");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "first-secret-value-that-is-long-enough").unwrap();
        let path = secret_file.display().to_string();
        let (reloader, _store_dir) =
            reloader_over(dir.path(), &[("KEEL_SESSION__SECRET_FILE", path.as_str())]).await;
        write(
            dir.path(),
            "[server]\nport = 4001\n[log]\nlevel = \"debug\"\n",
        );
        std::fs::write(&secret_file, "second-secret-value-that-is-long-enough").unwrap();
        let report = reloader.reload().unwrap();
        assert_eq!(report.applied, ["log.level"]);
        assert_eq!(report.needs_restart, ["server.port", "session.secret"]);
        let running = reloader.platform.config();
        assert_eq!(running.server.port, 4000);
        let secret = running.session.secret.as_ref().map(Secret::expose);
        assert_eq!(secret, Some("first-secret-value-that-is-long-enough"));
    }

    #[tokio::test]
    async fn task_schedules_and_settings_are_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "[tasks.nightly]\nschedule = \"0 0 3 * * *\"\nbatch_size = 50\n",
        );
        let (reloader, _store_dir) = reloader_over(dir.path(), &[]).await;
        write(
            dir.path(),
            "[tasks.nightly]\nschedule = \"0 30 4 * * *\"\nenabled = false\nbatch_size = 80\n",
        );
        let report = reloader.reload().unwrap();
        let applied = [
            "tasks.nightly.batch_size",
            "tasks.nightly.enabled",
            "tasks.nightly.schedule",
        ];
        assert_eq!(report.applied, applied);
        assert!(report.needs_restart.is_empty(), "{report:?}");
        let running = reloader.platform.config();
        let nightly = &running.tasks["nightly"];
        assert_eq!(nightly.schedule.as_deref(), Some("0 30 4 * * *"));
        assert!(!nightly.enabled);
        assert_eq!(nightly.settings["batch_size"], serde_json::json!(80));
    }

    #[tokio::test]
    async fn an_unchanged_configuration_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "[log]\nlevel = \"info\"\n");
        let (reloader, _store_dir) = reloader_over(dir.path(), &[]).await;
        let watcher = reloader.platform.watch_config();
        assert_eq!(reloader.reload().unwrap(), ReloadReport::default());
        assert!(!watcher.has_changed().unwrap());
    }
}
