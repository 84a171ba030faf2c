//! Rate limits over HTTP: each tier trips at its configured limit with the IETF headers, the
//! probes are never limited, `X-Forwarded-For` only counts from trusted proxies, and a limit
//! raised by a config reload applies at once.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::{Response, StatusCode};

use crate::api_support::{PASSWORD, expect_error, spawn_app, spawn_app_with};
use crate::support::eventually;

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Sends `limit` requests that must pass, then one that must be refused, checking headers.
async fn trips_at<F, Fut>(limit: u32, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    for i in 0..limit {
        let response = send().await;
        assert_ne!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "request {i} of {limit} refused"
        );
        assert_eq!(header(&response, "ratelimit-limit"), limit.to_string());
        assert_eq!(
            header(&response, "ratelimit-remaining"),
            (limit - 1 - i).to_string()
        );
        assert!(header(&response, "ratelimit-reset").parse::<u64>().unwrap() >= 1);
    }
    let refused = send().await;
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    let retry_after: u64 = header(&refused, "retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

#[tokio::test]
async fn auth_tier_allows_5_logins_per_15_minutes() {
    let app = spawn_app().await;
    trips_at(5, || app.post_login("who@example.com", PASSWORD)).await;
    let refused = app.post_login("who@example.com", PASSWORD).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!(retry_after > 60 && retry_after <= 900, "{retry_after}");
}

#[tokio::test]
async fn a_session_cookie_does_not_refill_the_login_budget() {
    // Keyed by user, each new account used to bring a fresh auth budget: guess 4 passwords,
    // register another account, repeat. The auth tier counts the client address, cookie or not.
    let app = spawn_app().await;
    let first = app.register("first@example.com").await;
    let body = |email: &str| serde_json::json!({"email": email, "password": "wrong-password-1"});
    for attempt in 0..3 {
        let response = app
            .post(
                "/api/auth/login",
                &body("victim@example.com"),
                Some(&first.cookie),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let second = app
        .post(
            "/api/auth/register",
            &body("second@example.com"),
            Some(&first.cookie),
        )
        .await;
    assert_ne!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let sixth = app
        .post(
            "/api/auth/login",
            &body("victim@example.com"),
            Some(&first.cookie),
        )
        .await;
    expect_error(sixth, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

#[tokio::test]
async fn api_tier_allows_100_per_minute_per_user() {
    let app = spawn_app().await;
    let first = app.register("busy@example.com").await;
    trips_at(100, || app.get("/api/auth/me", Some(&first.cookie))).await;
    // Keyed by user: the same IP logged in as someone else has its own window.
    let second = app.register("calm@example.com").await;
    assert_eq!(
        app.get("/api/auth/me", Some(&second.cookie)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn public_tier_allows_300_per_minute() {
    let app = spawn_app().await;
    trips_at(300, || app.get("/api/brands", None)).await;
}

#[tokio::test]
async fn probes_are_never_limited() {
    let app = spawn_app_with(|c| c.rate_limit.public.limit = 1).await;
    for _ in 0..20 {
        for path in ["/api/health", "/api/ready"] {
            let response = app.get(path, None).await;
            assert_ne!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert!(
                response.headers().get("ratelimit-limit").is_none(),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = spawn_app().await;
    let mut n = 0;
    trips_at(5, || {
        n += 1;
        let request = app
            .client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&serde_json::json!({"email": "x@example.com", "password": PASSWORD}));
        async move { request.send().await.expect("POST failed") }
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_separates_clients() {
    let app =
        spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    for n in 0..10 {
        let response = app
            .client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&serde_json::json!({"email": "x@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "client {n} has its own window"
        );
    }
}

#[tokio::test]
async fn a_limit_raised_by_config_reload_applies_immediately() {
    let app = spawn_app_with(|c| c.rate_limit.public.limit = 2).await;
    trips_at(2, || app.get("/api/brands", None)).await;
    let mut config = (*app.platform.config()).clone();
    config.rate_limit.public.limit = 1000;
    app.platform.replace_config(config);
    let response = app.get("/api/brands", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "ratelimit-limit"), "1000");
}

/// A botnet spraying one account from many addresses: each address is under its own limit, but
/// the account's failed logins are counted wherever they come from (docs/api.md).
#[tokio::test]
async fn failed_logins_are_counted_per_account_whatever_the_address() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.auth.max_failed_logins = 3;
        // Long enough for the first part to run inside one window on a loaded machine.
        c.auth.failed_login_window = std::time::Duration::from_secs(8);
    })
    .await;
    app.register("target@example.com").await;
    let login_from = |address: String, email: &'static str, password: &'static str| {
        let request = app
            .request(reqwest::Method::POST, "/api/auth/login", None)
            .header("x-forwarded-for", address)
            .json(&serde_json::json!({"email": email, "password": password}));
        async move { request.send().await.unwrap() }
    };
    for bot in 1..=3 {
        let response = login_from(
            format!("198.51.100.{bot}"),
            "target@example.com",
            "wrong-password-1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "bot {bot}");
    }
    // The fourth address has used none of its own budget; the account's is spent — even the
    // right password is not tried now.
    let refused = login_from("198.51.100.4".into(), "target@example.com", PASSWORD).await;
    assert!(header(&refused, "retry-after").parse::<u64>().unwrap() >= 1);
    expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // An email with no account is throttled the same way (nothing tells which exist).
    for bot in 5..=7 {
        let response = login_from(
            format!("198.51.100.{bot}"),
            "nobody@example.com",
            "wrong-password-1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = login_from(
        "198.51.100.8".into(),
        "nobody@example.com",
        "wrong-password-1",
    )
    .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    app.register("bystander@example.com").await;
    let other = login_from("198.51.100.9".into(), "bystander@example.com", PASSWORD).await;
    assert_eq!(other.status(), StatusCode::OK);

    // Once the window is over, the owner gets in again (and a success clears the count). Each
    // try comes from an address of its own (198.51.100.11, .12, …), under its own limit.
    let bots = AtomicU32::new(u32::from(Ipv4Addr::new(198, 51, 100, 10)));
    eventually("the owner to log in again after the window", || async {
        let address = Ipv4Addr::from(bots.fetch_add(1, Ordering::Relaxed) + 1);
        let response = login_from(address.to_string(), "target@example.com", PASSWORD).await;
        if response.status() == StatusCode::OK {
            return Some(());
        }
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        None
    })
    .await;
}
