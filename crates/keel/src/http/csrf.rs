//! CSRF defence for cookie-authenticated, state-changing requests.
//!
//! `SameSite=Lax` already keeps the session cookie off cross-site POSTs in current browsers;
//! this is the second wall for older ones and for same-site-but-cross-origin pages. A browser
//! always sends `Origin` (or at least `Referer`) on a cross-origin POST, so: when either is
//! present, its origin must be the server's own (matches `Host`) or one of
//! `server.cors_origins`. A request with neither comes from a non-browser client (curl, a
//! server), which cannot ride a victim's cookie jar, and passes.

use http::{HeaderMap, Method};

/// Whether a request passes the origin check. `allowed` is `server.cors_origins`.
pub fn origin_allowed(method: &Method, headers: &HeaderMap, allowed: &[String]) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let origin = match headers.get(http::header::ORIGIN) {
        Some(value) => value.to_str().ok().map(str::to_owned),
        None => headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(origin_of_url),
    };
    let Some(origin) = origin else {
        // Header present but not text, or no Origin/Referer at all.
        return headers.get(http::header::ORIGIN).is_none()
            && headers.get(http::header::REFERER).is_none();
    };
    if origin == "null" {
        return false;
    }
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    match (host, origin.split_once("://")) {
        (Some(host), Some((_, origin_host))) => origin_host.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// `https://a.example:8443/path?q` → `https://a.example:8443`.
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn foreign_origins_are_refused_on_state_changing_requests() {
        let allowed = vec!["https://app.example.com".to_owned()];
        let post = Method::POST;
        assert!(origin_allowed(
            &post,
            &headers(&[("origin", "https://app.example.com")]),
            &allowed
        ));
        assert!(!origin_allowed(
            &post,
            &headers(&[("origin", "https://evil.example")]),
            &allowed
        ));
        assert!(!origin_allowed(
            &post,
            &headers(&[("origin", "null")]),
            &allowed
        ));
        assert!(!origin_allowed(
            &post,
            &headers(&[("referer", "https://evil.example/x")]),
            &allowed
        ));
        assert!(origin_allowed(
            &post,
            &headers(&[("referer", "https://app.example.com/p?q")]),
            &allowed
        ));
        assert!(origin_allowed(
            &Method::GET,
            &headers(&[("origin", "https://evil.example")]),
            &allowed
        ));
    }

    #[test]
    fn same_origin_and_non_browser_clients_pass() {
        let post = Method::POST;
        assert!(origin_allowed(
            &post,
            &headers(&[
                ("origin", "http://127.0.0.1:3030"),
                ("host", "127.0.0.1:3030")
            ]),
            &[]
        ));
        assert!(origin_allowed(&post, &headers(&[]), &[]));
        assert!(origin_allowed(
            &post,
            &headers(&[("origin", "https://x.example")]),
            &["*".to_owned()]
        ));
    }
}
