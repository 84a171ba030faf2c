//! keel's configuration: one typed value, loaded and validated once at start-up.
//!
//! Layers, later wins: built-in defaults (the `Default` impls here) → `config/default.toml` →
//! `config/{env}.toml` → `config/local.toml` (git-ignored) → `KEEL_SECTION__KEY` environment
//! variables (and `KEEL_SECTION__KEY_FILE` for secrets) → command-line flags. `load.rs` merges
//! the layers and collects every problem with its key path; `validate` below adds the rules a
//! type cannot carry. A `Config` that exists has passed both.
//!
//! Adding a setting: add the field (with its default) to its section struct, mention it in
//! `config/default.toml` and README; unknown keys are errors, so nothing else needs changing.

mod api;
mod load;
pub mod net;
mod ops;
pub mod units;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::jobs::JobsConfig;
pub use crate::metrics::MetricsConfig;
pub use crate::placement::RuntimeConfig;
use crate::secrets::Secret;
pub use crate::secrets::startup::SecretsConfig;
pub use crate::store::DatabaseConfig;
pub use crate::tasks::{TaskConfig, TasksConfig};
pub use crate::watchers::WatchersConfig;
pub use crate::workers::WorkersConfig;
pub use api::{AuthConfig, OrdersConfig, RateLimitConfig, RateTier};
pub use load::{ConfigError, LoadOptions, Problem, load};
pub use net::IpRange;
pub use ops::OpsConfig;

/// The running environment, from `KEEL_ENV` (default `development`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
            Environment::Test => "test",
        }
    }

    pub fn is_production(self) -> bool {
        self == Environment::Production
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            "test" => Ok(Environment::Test),
            other => Err(format!(
                "`{other}` is not an environment (development, production or test)"
            )),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Chosen by `KEEL_ENV`, never by a file: the files are chosen by it.
    #[serde(skip_deserializing)]
    pub env: Environment,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[runtime]`: where the async runtime's worker threads run.
    pub runtime: RuntimeConfig,
    /// `[workers]`: the CPU worker pool.
    pub workers: WorkersConfig,
    /// `[jobs]`: this process's consumption of the durable job queue.
    pub jobs: JobsConfig,
    /// `[watchers]`: restart policy of change watchers.
    pub watchers: WatchersConfig,
    /// `[tasks.NAME]`: schedule and settings of each task.
    pub tasks: TasksConfig,
    /// Where secrets come from besides the environment (`secrets::startup`).
    pub secrets: SecretsConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub orders: OrdersConfig,
    /// `[ops]`: the ops console's bootstrap admins and heartbeats.
    pub ops: OpsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 (an ephemeral port) is accepted only in `test`.
    pub port: u16,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "units::duration")]
    pub shutdown_timeout: Duration,
    /// A request still running after this answers 503 `timeout`.
    #[serde(with = "units::duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted (413 above).
    #[serde(with = "units::byte_size")]
    pub body_limit: u64,
    /// A request head must arrive in full within this time of keel waiting for it (on a new
    /// connection, and after each response on a keep-alive one); slower clients are cut off.
    #[serde(with = "units::duration")]
    pub header_read_timeout: Duration,
    /// A connection that moves no bytes for this long is closed (a running request first
    /// finishes).
    #[serde(with = "units::duration")]
    pub idle_timeout: Duration,
    /// Open connections at most; past it new clients wait in the kernel's listen queue.
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, reverse proxies).
    pub trusted_proxies: Vec<IpRange>,
    /// Origins allowed by CORS (`https://app.example.com`); `*` only in development.
    pub cors_origins: Vec<String>,
    /// Bind with `SO_REUSEPORT`, so a new keel can listen on the port before the old one
    /// stops (zero-downtime restarts; `http::listen`). Default: on for Linux.
    pub reuse_port: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 3030,
            shutdown_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            reuse_port: cfg!(target_os = "linux"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Key for signing and encrypting sessions: at least 32 bytes, required in production.
    pub secret: Option<Secret>,
    pub cookie_name: String,
    /// Sliding lifetime: a session unused this long expires (activity extends it).
    #[serde(with = "units::duration")]
    pub ttl: Duration,
    /// Absolute lifetime: a session ends this long after login however active it is.
    #[serde(with = "units::duration")]
    pub absolute_ttl: Duration,
    /// Lazy touch: an active session's expiry is pushed forward at most this often.
    #[serde(with = "units::duration")]
    pub touch_after: Duration,
    /// How long a validated session is trusted from memory before the store is asked again:
    /// a logout or expiry on another replica is honoured within this bound. `0s`: every
    /// request reads the store.
    #[serde(with = "units::duration")]
    pub cache_ttl: Duration,
    /// Sessions held in that cache at most (memory bound, ~200 bytes each).
    pub cache_capacity: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            secret: None,
            cookie_name: "sessionId".to_owned(),
            ttl: Duration::from_secs(24 * 3600),
            absolute_ttl: Duration::from_secs(7 * 24 * 3600),
            touch_after: Duration::from_secs(3600),
            cache_ttl: Duration::from_secs(2),
            cache_capacity: 10_000,
        }
    }
}

/// Session secrets shipped in this repository (development and test files). Production
/// refuses them: anyone can read them on GitHub.
pub const PUBLIC_SESSION_SECRETS: &[&str] = &[
    "development-only-session-secret-not-for-production",
    "test-only-session-secret-not-for-production-use",
];

/// Minimum length of a production session secret, in bytes.
pub const MIN_SESSION_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Readable lines, for people at a terminal.
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `info`, `debug`, … or full `tracing` directives (`info,keel=debug`). `RUST_LOG` wins.
    pub level: String,
    /// Unset: `json` in production, `pretty` elsewhere.
    pub format: Option<LogFormat>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector (`http://localhost:4318`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
    /// `service` in every log line and the OpenTelemetry `service.name`.
    pub service_name: String,
    /// Runtime scheduling lag above which a warning is logged (the guides' event-loop lag).
    pub lag_warn_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "keel".to_owned(),
            lag_warn_ms: 200,
        }
    }
}

impl Config {
    /// The log format in effect: the configured one or the environment's default.
    pub fn log_format(&self) -> LogFormat {
        self.log.format.unwrap_or(match self.env {
            Environment::Production => LogFormat::Json,
            _ => LogFormat::Pretty,
        })
    }

    /// Rules a type cannot carry. Every broken rule is reported, each with its key.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| problems.push(Problem::new(key, message));

        if self.server.port == 0 && self.env != Environment::Test {
            problem("server.port", "must be 1..=65535".to_owned());
        }
        if self.server.shutdown_timeout.is_zero() {
            problem("server.shutdown_timeout", "must be more than 0s".to_owned());
        }
        if self.server.request_timeout.is_zero() {
            problem("server.request_timeout", "must be more than 0s".to_owned());
        }
        if self.server.body_limit == 0 {
            problem("server.body_limit", "must be more than 0 bytes".to_owned());
        }
        if self.server.header_read_timeout.is_zero() {
            problem(
                "server.header_read_timeout",
                "must be more than 0s".to_owned(),
            );
        }
        if self.server.idle_timeout.is_zero() {
            problem("server.idle_timeout", "must be more than 0s".to_owned());
        }
        if self.server.max_connections == 0 {
            problem("server.max_connections", "must be at least 1".to_owned());
        }
        for origin in &self.server.cors_origins {
            if origin == "*" {
                if self.env != Environment::Development {
                    problem(
                        "server.cors_origins",
                        "`*` is allowed only in development; list the origins".to_owned(),
                    );
                }
            } else if !is_origin(origin) {
                problem(
                    "server.cors_origins",
                    format!("`{origin}` is not an origin like https://app.example.com"),
                );
            }
        }
        self.validate_session_secret(&mut problem);
        if self.session.cookie_name.is_empty()
            || !self
                .session
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problem(
                "session.cookie_name",
                "must be non-empty letters, digits, `_` or `-`".to_owned(),
            );
        }
        if self.session.ttl.is_zero() {
            problem("session.ttl", "must be more than 0s".to_owned());
        }
        if self.session.absolute_ttl < self.session.ttl {
            problem(
                "session.absolute_ttl",
                "must be at least session.ttl".to_owned(),
            );
        }
        if self.session.cache_ttl > Duration::from_secs(60) {
            problem(
                "session.cache_ttl",
                "must be at most 60s (a logout elsewhere is honoured only after it)".to_owned(),
            );
        }
        for (key, message) in api::problems(&self.auth, &self.rate_limit, &self.orders) {
            problem(&key, message);
        }
        if self.log.level.trim().is_empty() {
            problem("log.level", "must not be empty".to_owned());
        } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            problem("log.level", format!("is not a valid level or filter: {e}"));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problem(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL".to_owned(),
            );
        }
        if self.telemetry.service_name.trim().is_empty() {
            problem("telemetry.service_name", "must not be empty".to_owned());
        }
        let url = self.database.url.expose();
        if !(url.starts_with("embedded://")
            || url.starts_with("mongodb://")
            || url.starts_with("mongodb+srv://"))
        {
            // The value may carry credentials: name the rule, never echo the URL.
            problem(
                "database.url",
                "must start with embedded://, mongodb:// or mongodb+srv://".to_owned(),
            );
        }
        problems.extend(self.metrics.problems(self.server.port));
        problems.extend(self.workers.problems());
        problems.extend(self.jobs.problems());
        problems.extend(self.watchers.problems());
        if self.ops.heartbeat_interval_ms < 100 {
            problems.push(Problem::new(
                "ops.heartbeat_interval_ms",
                "must be at least 100",
            ));
        }
        for (name, task) in &self.tasks {
            problems.extend(task.problems(name));
        }
        problems
    }

    fn validate_session_secret(&self, problem: &mut impl FnMut(&str, String)) {
        if !self.env.is_production() {
            return;
        }
        match &self.session.secret {
            // Filled from the secrets provider when `serve` starts, then validated again.
            None if self.secrets.provider != crate::secrets::startup::ProviderKind::None => {}
            None => problem(
                "session.secret",
                "is required in production (set KEEL_SESSION__SECRET or KEEL_SESSION__SECRET_FILE)"
                    .to_owned(),
            ),
            Some(secret) if PUBLIC_SESSION_SECRETS.contains(&secret.expose()) => problem(
                "session.secret",
                "is a published default; production needs its own secret".to_owned(),
            ),
            Some(secret) if secret.expose().len() < MIN_SESSION_SECRET_BYTES => problem(
                "session.secret",
                format!("is too weak: production needs at least {MIN_SESSION_SECRET_BYTES} bytes"),
            ),
            Some(_) => {}
        }
    }
}

/// `scheme://host[:port]` with nothing after it: what browsers send in `Origin`.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && http::HeaderValue::from_str(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Config {
        Config {
            env: Environment::Production,
            session: SessionConfig {
                secret: Some(Secret::new("x".repeat(48))),
                ..SessionConfig::default()
            },
            ..Config::default()
        }
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid_in_development() {
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn production_refuses_a_missing_weak_or_published_secret() {
        assert!(production().validate().is_empty());
        for secret in [None, Some("short"), Some(PUBLIC_SESSION_SECRETS[0])] {
            let mut config = production();
            config.session.secret = secret.map(Secret::new);
            assert_eq!(keys(&config.validate()), ["session.secret"]);
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut config = production();
        config.server.port = 0;
        config.server.cors_origins = vec!["*".into(), "not an origin".into()];
        config.log.level = "keel=verbose".into();
        config.telemetry.otlp_endpoint = Some("collector:4318".into());
        assert_eq!(
            keys(&config.validate()),
            [
                "server.port",
                "server.cors_origins",
                "server.cors_origins",
                "log.level",
                "telemetry.otlp_endpoint"
            ]
        );
    }

    #[test]
    fn database_url_problems_never_echo_the_url() {
        let mut config = Config::default();
        config.database.url = Secret::new("postgres://admin:hunter2@db");
        let problems = config.validate();
        assert_eq!(keys(&problems), ["database.url"]);
        assert!(!problems[0].to_string().contains("hunter2"));
    }

    #[test]
    fn log_format_follows_the_environment_unless_set() {
        assert_eq!(production().log_format(), LogFormat::Json);
        assert_eq!(Config::default().log_format(), LogFormat::Pretty);
        let mut config = production();
        config.log.format = Some(LogFormat::Pretty);
        assert_eq!(config.log_format(), LogFormat::Pretty);
    }
}
