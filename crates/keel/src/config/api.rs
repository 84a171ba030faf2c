//! Settings of the API layer: password hashing (`[auth]`), rate limits (`[rate_limit]`) and the
//! reference application's order pricing (`[orders]`).
//!
//! Rate limits are among the settings a SIGHUP reload may change: the limiter reads them from
//! the platform's current config on every request (a load test raises them by config alone).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units;

/// `[auth]`: argon2id cost. Defaults are OWASP's minimum (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Hashes allowed to run at once; each holds `argon2_memory_kib` of memory.
    pub max_concurrent_hashes: usize,
    /// Failed logins allowed per account (email) per `failed_login_window`; past it, logins for
    /// that email answer 429 until the window ends, whatever address they come from.
    pub max_failed_logins: u32,
    #[serde(with = "units::duration")]
    pub failed_login_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(15 * 60),
        }
    }
}

/// One tier: at most `limit` requests per `window` per client. A tier given only in part falls
/// back field by field (the layers below normally supply the rest).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateTier {
    pub limit: u32,
    #[serde(with = "units::duration")]
    pub window: Duration,
}

impl Default for RateTier {
    fn default() -> Self {
        Self {
            limit: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// `[rate_limit]`: the guides' three tiers (login/register, authenticated API, everything else).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub auth: RateTier,
    pub api: RateTier,
    pub public: RateTier,
    /// Distinct clients tracked at once; beyond it the oldest windows are dropped first.
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            auth: RateTier {
                limit: 5,
                window: Duration::from_secs(15 * 60),
            },
            api: RateTier {
                limit: 100,
                window: Duration::from_secs(60),
            },
            public: RateTier {
                limit: 300,
                window: Duration::from_secs(60),
            },
            max_clients: 100_000,
        }
    }
}

/// `[orders]`: pricing of the reference application's orders.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Sales tax as a fraction of the subtotal (0.08 = 8 %).
    pub tax_rate: f64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self { tax_rate: 0.08 }
    }
}

/// Rules of these sections a type cannot carry, as `(key, message)`.
pub(super) fn problems(
    auth: &AuthConfig,
    rate_limit: &RateLimitConfig,
    orders: &OrdersConfig,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if auth.argon2_memory_kib < 8 * auth.argon2_parallelism.max(1) {
        problems.push((
            "auth.argon2_memory_kib".into(),
            "must be at least 8 × parallelism".into(),
        ));
    }
    if auth.argon2_iterations == 0 {
        problems.push(("auth.argon2_iterations".into(), "must be at least 1".into()));
    }
    if !(1..=16).contains(&auth.argon2_parallelism) {
        problems.push(("auth.argon2_parallelism".into(), "must be 1..=16".into()));
    }
    if auth.max_concurrent_hashes == 0 {
        problems.push((
            "auth.max_concurrent_hashes".into(),
            "must be at least 1".into(),
        ));
    }
    if auth.max_failed_logins == 0 {
        problems.push(("auth.max_failed_logins".into(), "must be at least 1".into()));
    }
    if auth.failed_login_window < Duration::from_secs(1) {
        problems.push((
            "auth.failed_login_window".into(),
            "must be at least 1s".into(),
        ));
    }
    for (name, tier) in [
        ("auth", rate_limit.auth),
        ("api", rate_limit.api),
        ("public", rate_limit.public),
    ] {
        if tier.limit == 0 {
            problems.push((
                format!("rate_limit.{name}.limit"),
                "must be at least 1".into(),
            ));
        }
        if tier.window.is_zero() {
            problems.push((
                format!("rate_limit.{name}.window"),
                "must be more than 0s".into(),
            ));
        }
    }
    if rate_limit.max_clients == 0 {
        problems.push(("rate_limit.max_clients".into(), "must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&orders.tax_rate) {
        problems.push(("orders.tax_rate".into(), "must be between 0 and 1".into()));
    }
    problems
}
