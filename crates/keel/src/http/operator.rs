//! Who may read what only operators should: `/metrics` on the API port and the failure details
//! of `/api/ready` (probe errors can name database hosts). docs/deploy.md, "Metrics".
//!
//! Allowed: a request from the host itself — a loopback peer with no `X-Forwarded-For` or
//! `Forwarded` header, so a reverse proxy on the same host does not make every client local —
//! or one carrying `Authorization: Bearer <metrics.token>` when that secret is set.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::secrets::Secret;

#[derive(Clone, Default)]
pub struct OperatorAccess {
    /// SHA-256 of the token: compared digest to digest, so the comparison's time does not
    /// depend on how much of a guess was right.
    token_digest: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for OperatorAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAccess")
            .field("token", &self.token_digest.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl OperatorAccess {
    pub fn new(token: Option<&Secret>) -> Self {
        Self {
            token_digest: token.map(|t| Arc::new(digest(t.expose().as_bytes()))),
        }
    }

    /// Whether `request` comes from the host itself or carries the token.
    pub fn allows<B>(&self, request: &http::Request<B>) -> bool {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
        self.has_token(request.headers()) || is_local(peer, request.headers())
    }

    /// Whether the request carries the configured token (never true without one).
    pub fn has_token(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return false;
        };
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let presented = digest(presented.trim().as_bytes());
        presented
            .iter()
            .zip(expected.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }

    pub fn token_configured(&self) -> bool {
        self.token_digest.is_some()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn is_local(peer: Option<&ConnectInfo<SocketAddr>>, headers: &HeaderMap) -> bool {
    peer.is_some_and(|ConnectInfo(addr)| addr.ip().to_canonical().is_loopback())
        && !headers.contains_key("x-forwarded-for")
        && !headers.contains_key(header::FORWARDED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> ConnectInfo<SocketAddr> {
        ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn request(peer: Option<&ConnectInfo<SocketAddr>>, headers: HeaderMap) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.headers_mut() = headers;
        if let Some(peer) = peer {
            request.extensions_mut().insert(*peer);
        }
        request
    }

    #[test]
    fn the_host_itself_is_allowed_unless_a_proxy_forwarded_the_request() {
        let access = OperatorAccess::new(None);
        assert!(access.allows(&request(Some(&peer("127.0.0.1")), headers(&[]))));
        assert!(access.allows(&request(Some(&peer("::1")), headers(&[]))));
        assert!(access.allows(&request(Some(&peer("::ffff:127.0.0.1")), headers(&[]))));
        assert!(!access.allows(&request(Some(&peer("10.0.0.5")), headers(&[]))));
        assert!(!access.allows(&request(None, headers(&[]))));
        assert!(!access.allows(&request(
            Some(&peer("127.0.0.1")),
            headers(&[("x-forwarded-for", "203.0.113.9")])
        )));
        assert!(!access.allows(&request(
            Some(&peer("127.0.0.1")),
            headers(&[("forwarded", "for=203.0.113.9")])
        )));
    }

    #[test]
    fn the_token_opens_it_from_anywhere_and_nothing_else_does() {
        let access = OperatorAccess::new(Some(&Secret::new("s3cret-scrape-token")));
        let remote_peer = peer("10.0.0.5");
        let remote = Some(&remote_peer);
        assert!(access.allows(&request(
            remote,
            headers(&[("authorization", "Bearer s3cret-scrape-token")])
        )));
        for wrong in [
            "Bearer s3cret-scrape-toke",
            "Bearer ",
            "Basic s3cret-scrape-token",
            "s3cret-scrape-token",
        ] {
            assert!(
                !access.allows(&request(remote, headers(&[("authorization", wrong)]))),
                "{wrong}"
            );
        }
        assert!(!OperatorAccess::new(None).has_token(&headers(&[("authorization", "Bearer ")])));
    }
}
