//! Security headers (helmet's list; HSTS only in production; never X-Powered-By) and CORS.

use keel::config::Environment;

use crate::helpers::{spawn_chassis, spawn_chassis_with};

const EXPECTED: &[(&str, &str)] = &[
    ("x-frame-options", "SAMEORIGIN"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

#[tokio::test]
async fn security_headers_are_on_every_response_and_x_powered_by_never() {
    let app = spawn_chassis().await;
    for path in ["/api/health", "/does-not-exist"] {
        let response = app.get(path, None).await;
        let headers = response.headers();
        for (name, value) in EXPECTED {
            assert_eq!(
                headers.get(*name).map(|v| v.to_str().unwrap()),
                Some(*value),
                "{name} on {path}"
            );
        }
        let csp = headers
            .get("content-security-policy")
            .expect("a CSP")
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(headers.get("x-powered-by").is_none());
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS outside production"
        );
    }
}

#[tokio::test]
async fn hsts_is_sent_in_production() {
    let app = spawn_chassis_with(|config| config.env = Environment::Production).await;
    let response = app.get_health().await;
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .expect("HSTS in production")
        .to_str()
        .unwrap();
    assert!(hsts.starts_with("max-age=31536000"), "{hsts}");
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let app = spawn_chassis_with(|config| {
        config.server.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let allowed = app
        .client
        .get(app.url("/api/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example.com")
    );
    let refused = app
        .client
        .get(app.url("/api/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
