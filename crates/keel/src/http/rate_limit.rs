//! Rate limiting by tier — the guides' `express-rate-limit` trio (`auth` 5 / 15 min for login and
//! register, `api` 100 / min for authenticated routes, `public` 300 / min elsewhere).
//!
//! Fixed windows per (tier, client), where the client is the logged-in user's id, else the client
//! IP that the chassis resolved (`X-Forwarded-For` believed only from `server.trusted_proxies`);
//! the auth tier always counts the IP, whatever the session.
//! Why not `governor`: its GCRA has no notion of "remaining in this window" or "window resets
//! at", which the IETF `RateLimit-*` headers report, its quotas are fixed at construction while
//! ours are read from the live config on every request (SIGHUP reload, a load test raising
//! them), and its keyed store grows until someone calls `retain_recent`. A sharded map of
//! windows is ~150 lines and exact.
//!
//! Memory is bounded: each of the 16 shards holds at most `max_clients / 16` windows; a full
//! shard first drops expired windows, then the one closest to expiring. A window that has
//! expired is never consulted, so dropping it loses nothing.
//!
//! Probes and scrapers (`/api/health`, `/api/ready`, `/metrics`) are never behind this layer:
//! it is attached per route group, and those routes are mounted outside every group.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::ApiError;
use super::observe::ClientIp;
use super::session::CurrentSession;
use crate::Platform;
use crate::config::RateTier;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Auth,
    Api,
    Public,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Auth => "auth",
            Tier::Api => "api",
            Tier::Public => "public",
        }
    }
}

/// Who a window belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(String),
    Ip(IpAddr),
    /// No peer address known (in-process tests without a socket): one shared bucket.
    Unknown,
}

/// The outcome of one check, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window resets (at least 1).
    pub reset_secs: u64,
    pub window_secs: u64,
}

struct Window {
    resets_at: Instant,
    count: u32,
}

/// The windows of every tier and client. Cheap to share (`Arc`).
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<(Tier, ClientKey), Window>>>,
    hasher: RandomState,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Counts one request of `key` in `tier` and says whether it may proceed.
    pub fn check(
        &self,
        tier: Tier,
        key: ClientKey,
        rule: RateTier,
        max_clients: usize,
        now: Instant,
    ) -> Decision {
        let entry_key = (tier, key);
        let shard = &self.shards[(self.hasher.hash_one(&entry_key) as usize) % SHARDS];
        // A poisoned shard only means another request panicked mid-update of a counter; the
        // counters are still usable.
        let mut windows = shard.lock().unwrap_or_else(|p| p.into_inner());
        let per_shard = (max_clients / SHARDS).max(1);
        if !windows.contains_key(&entry_key) && windows.len() >= per_shard {
            make_room(&mut windows, now, per_shard);
        }
        let window = windows.entry(entry_key).or_insert(Window {
            resets_at: now + rule.window,
            count: 0,
        });
        if window.resets_at <= now {
            *window = Window {
                resets_at: now + rule.window,
                count: 0,
            };
        }
        let allowed = window.count < rule.limit;
        if allowed {
            window.count += 1;
        }
        let reset_secs = window
            .resets_at
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64;
        Decision {
            allowed,
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(window.count),
            reset_secs,
            window_secs: rule.window.as_secs().max(1),
        }
    }

    /// Windows currently held (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Frees one slot in a full shard: expired windows first, else the one closest to expiring.
fn make_room(windows: &mut HashMap<(Tier, ClientKey), Window>, now: Instant, per_shard: usize) {
    windows.retain(|_, w| w.resets_at > now);
    if windows.len() < per_shard {
        return;
    }
    let soonest = windows
        .iter()
        .min_by_key(|(_, w)| w.resets_at)
        .map(|(k, _)| k.clone());
    if let Some(key) = soonest {
        windows.remove(&key);
    }
}

/// What the middleware needs: the shared windows, the live config and the tier of the routes.
#[derive(Clone)]
pub struct RateLimitLayerState {
    pub limiter: Arc<RateLimiter>,
    pub platform: Platform,
    pub tier: Tier,
}

/// Middleware: applies the tier's limit (read from the current config) and sets the IETF
/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` headers;
/// refuses with 429 and `Retry-After` when the window is used up.
pub async fn rate_limit(
    State(state): State<RateLimitLayerState>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.platform.config();
    let settings = &config.rate_limit;
    if !settings.enabled {
        return next.run(request).await;
    }
    let rule = match state.tier {
        Tier::Auth => settings.auth,
        Tier::Api => settings.api,
        Tier::Public => settings.public,
    };
    let key = client_key(&request, state.tier);
    let decision = state.limiter.check(
        state.tier,
        key.clone(),
        rule,
        settings.max_clients,
        Instant::now(),
    );
    if !decision.allowed {
        let ip = request
            .extensions()
            .get::<ClientIp>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        crate::evt!(
            WARN,
            "security",
            "rateLimited",
            "failure",
            tier = state.tier.as_str(),
            ip = %ip,
            path = %request.uri().path(),
            "rate limit exceeded"
        );
        let mut response = ApiError::TooManyRequests {
            retry_after_secs: decision.reset_secs,
        }
        .into_response();
        set_headers(response.headers_mut(), &decision);
        return response;
    }
    let mut response = next.run(request).await;
    set_headers(response.headers_mut(), &decision);
    response
}

/// Who a request counts against: the logged-in user, else the client address. The auth tier
/// (login, register) always counts the address: keyed by user, every new account would bring
/// a fresh budget of password guesses.
fn client_key(request: &Request, tier: Tier) -> ClientKey {
    if tier != Tier::Auth
        && let Some(CurrentSession(Some(session))) = request.extensions().get::<CurrentSession>()
    {
        return ClientKey::User(session.user_id.clone());
    }
    match request.extensions().get::<ClientIp>() {
        Some(ClientIp(ip)) => ClientKey::Ip(client_address(*ip)),
        None => ClientKey::Unknown,
    }
}

/// The address a client is counted by: an IPv4 address as it is, an IPv6 one by its /64 (one
/// subscriber's network hands out a whole /64; keyed by full address, every request could come
/// from a fresh one).
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit-*` headers. Numbers go through `HeaderValue`'s integer conversion (decimal
/// digits, as `to_string` writes them) and the policy's through `itoa` into a buffer on the
/// stack, rather than `format!`, and the names are constants: every API response pays for
/// these (callgrind: ~3.6 k instructions per response with `to_string` and names looked up at
/// run time, ~2.7 k with the policy's `format!`, which was ~930 of them).
fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset_secs));
    // `{limit};w={window}`: at most 10 + 3 + 20 bytes, so the writes below cannot fail.
    let mut policy = [0u8; 33];
    let unused = {
        let mut out = &mut policy[..];
        let _ = out
            .write_all(itoa::Buffer::new().format(decision.limit).as_bytes())
            .and_then(|()| out.write_all(b";w="))
            .and_then(|()| {
                out.write_all(itoa::Buffer::new().format(decision.window_secs).as_bytes())
            });
        out.len()
    };
    if let Ok(value) = HeaderValue::from_bytes(&policy[..policy.len() - unused]) {
        headers.insert(RATELIMIT_POLICY, value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_headers_carry_the_decisions_numbers_in_decimal() {
        let mut headers = HeaderMap::new();
        for (limit, remaining, reset_secs, window_secs) in [
            (100, 99, 60, 60),
            (0, 0, 1, 1),
            (u32::MAX, 7, u64::MAX, 86_400),
        ] {
            let decision = Decision {
                allowed: true,
                limit,
                remaining,
                reset_secs,
                window_secs,
            };
            set_headers(&mut headers, &decision);
            let get = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
            assert_eq!(get("RateLimit-Limit"), limit.to_string());
            assert_eq!(get("ratelimit-remaining"), remaining.to_string());
            assert_eq!(get("ratelimit-reset"), reset_secs.to_string());
            assert_eq!(get("ratelimit-policy"), format!("{limit};w={window_secs}"));
            assert_eq!(headers.len(), 4, "each header once");
        }
    }

    fn rule(limit: u32, secs: u64) -> RateTier {
        RateTier {
            limit,
            window: Duration::from_secs(secs),
        }
    }

    fn ip(n: u8) -> ClientKey {
        ClientKey::Ip(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_address(a), client_address(b));
        assert_ne!(client_address(a), client_address(other));
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(
            client_address(mapped),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let v4: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(client_address(v4), v4);
    }

    #[test]
    fn a_window_allows_exactly_the_limit_then_resets() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..5 {
            let d = limiter.check(Tier::Auth, ip(1), rule(5, 900), 1000, t0);
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = limiter.check(
            Tier::Auth,
            ip(1),
            rule(5, 900),
            1000,
            t0 + Duration::from_secs(10),
        );
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs, 890);
        let after = limiter.check(
            Tier::Auth,
            ip(1),
            rule(5, 900),
            1000,
            t0 + Duration::from_secs(900),
        );
        assert!(after.allowed, "a new window starts after the old one ends");
    }

    #[test]
    fn tiers_and_clients_are_counted_separately() {
        let limiter = RateLimiter::new();
        let now = Instant::now();
        assert!(
            limiter
                .check(Tier::Auth, ip(1), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            !limiter
                .check(Tier::Auth, ip(1), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            limiter
                .check(Tier::Public, ip(1), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            limiter
                .check(Tier::Auth, ip(2), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            limiter
                .check(
                    Tier::Auth,
                    ClientKey::User("u".into()),
                    rule(1, 60),
                    1000,
                    now
                )
                .allowed
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_distinct_clients() {
        let limiter = RateLimiter::new();
        let now = Instant::now();
        let max_clients = 160;
        for n in 0..10_000u32 {
            let key = ClientKey::Ip(IpAddr::from(n.to_be_bytes()));
            limiter.check(Tier::Public, key, rule(10, 60), max_clients, now);
        }
        assert!(
            limiter.tracked() <= max_clients,
            "tracked {}",
            limiter.tracked()
        );
    }

    #[test]
    fn a_limit_raised_by_config_applies_to_the_current_window() {
        let limiter = RateLimiter::new();
        let now = Instant::now();
        assert!(
            limiter
                .check(Tier::Api, ip(1), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            !limiter
                .check(Tier::Api, ip(1), rule(1, 60), 1000, now)
                .allowed
        );
        assert!(
            limiter
                .check(Tier::Api, ip(1), rule(100, 60), 1000, now)
                .allowed
        );
    }
}
