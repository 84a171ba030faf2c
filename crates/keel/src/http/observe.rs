//! The request span and the request log.
//!
//! `request_span` opens `http.request` with `request_id`, `method`, `path` and `trace_id`; an
//! incoming W3C `traceparent` becomes its OpenTelemetry parent, so a trace continues across
//! services. Every event logged while handling the request sits in that span. Later layers may
//! fill `user_id` with `tracing::Span::current().record("user_id", …)`.
//!
//! `log_request` writes one line per request when the response is ready: status, duration_ms,
//! ip and user agent, with the span's method, path and request id. 5xx is `error`, 4xx `warn`, the rest `info`. The
//! query string is left out: it may carry tokens.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::Response;
use futures::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::request_id::RequestId;
use crate::config::IpRange;

/// The client's address as keel believes it (see `client_ip`); in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// W3C trace context's header, the remote parent of a request's span.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Opens the request's span and runs `inner` in it (built in it, too).
pub fn request_span(
    request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", RequestId::as_str);
    // Plain `&str` values: recorded as strings, without the `Display` formatting machinery.
    let span = tracing::info_span!(
        "http.request",
        request_id,
        method = request.method().as_str(),
        path = request.uri().path(),
        trace_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    // Without a `traceparent` there is no remote parent (the propagator would look it up by
    // its text name, and give the current context, the parent the span has anyway).
    let remote = if request.headers().contains_key(TRACEPARENT) {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        let remote = parent.span().span_context().clone();
        // Without an OpenTelemetry layer there is nothing to attach to; the remote trace id
        // is still recorded below so logs can be joined with the caller's trace.
        let _ = span.set_parent(parent);
        remote
    } else {
        SpanContext::empty_context()
    };
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", own.trace_id().to_string());
    } else if remote.is_valid() {
        span.record("trace_id", remote.trace_id().to_string());
    }
    let rest = span.in_scope(|| inner(request));
    rest.instrument(span)
}

/// Runs `inner` and logs the request's line when its response is ready.
pub fn log_request(
    trusted_proxies: &[IpRange],
    mut request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip = client_ip(peer, request.headers(), trusted_proxies);
    if let Some(ip) = ip {
        request.extensions_mut().insert(ClientIp(ip));
    }
    // The header's value shares the request head's bytes (a reference count, not a copy).
    let user_agent = request.headers().get(header::USER_AGENT).cloned();
    inner(request).map(move |response| {
        let user_agent = user_agent.as_ref().and_then(|v| v.to_str().ok());
        log_line(&response, started, ip, user_agent.unwrap_or(""));
        response
    })
}

/// The request's line, when its response is ready.
fn log_line(response: &Response, started: Instant, ip: Option<IpAddr>, user_agent: &str) {
    let status = response.status().as_u16();
    let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    let mut text = IpText::default();
    let ip = ip.map_or("", |ip| text.of(ip));
    // `request_id`, `method` and `path` are the enclosing `http.request` span's fields (set by
    // `request_span`, the layer outside this one), so the line carries them without the event
    // recording them again. The message is a text field rather than the macro's format
    // string, which the log layer would format through `fmt` (`record_debug`) on every
    // request: the same bytes in the line.
    macro_rules! request_event {
        ($level:ident) => {
            tracing::event!(
                tracing::Level::$level,
                status,
                duration_ms,
                ip,
                user_agent,
                message = "request completed",
            )
        };
    }
    match status {
        500.. => request_event!(ERROR),
        400..=499 => request_event!(WARN),
        _ => request_event!(INFO),
    }
}

/// `ip` as `Display` writes it; IPv4 digit by digit into a buffer on the stack, without the
/// formatting machinery or a `String` (a request log line carries one).
#[derive(Default)]
struct IpText {
    v4: [u8; 15],
    v6: String,
}

impl IpText {
    fn of(&mut self, ip: IpAddr) -> &str {
        let IpAddr::V4(v4) = ip else {
            self.v6 = ip.to_string();
            return &self.v6;
        };
        let mut len = 0;
        let mut push = |digit: u8| {
            self.v4[len] = digit;
            len += 1;
        };
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                push(b'.');
            }
            if octet >= 100 {
                push(b'0' + octet / 100);
            }
            if octet >= 10 {
                push(b'0' + octet / 10 % 10);
            }
            push(b'0' + octet % 10);
        }
        // Digits and dots only: ASCII.
        std::str::from_utf8(&self.v4[..len]).unwrap_or_default()
    }
}

/// A `HeaderName` rather than a `&str`, which the map would parse on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries left of the
/// first untrusted one are whatever the client chose to send, so they are never believed.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpRange]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(forwarded_address)
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !is_trusted(*ip))
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer),
    )
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port` or `[v6]:port`. An entry written with a port
/// must be read, not skipped: skipping it would make the client-chosen entry to its left the
/// one believed.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(with_port) = entry.parse::<SocketAddr>() {
        return Some(with_port.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|v6| v6.parse().ok())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [9, 10, 99, 100],
            [255, 255, 255, 255],
        ] {
            let ip = IpAddr::from(octets);
            assert_eq!(IpText::default().of(ip), ip.to_string());
        }
        for n in (0..=u32::MAX).step_by(65_521) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(n));
            assert_eq!(IpText::default().of(ip), ip.to_string());
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(IpText::default().of(v6), "2001:db8::1");
    }

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(Some(ip("203.0.113.9")), &headers("1.2.3.4"), &trusted);
        assert_eq!(got, Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let spoofed = headers("6.6.6.6, 198.51.100.7, 10.0.0.2");
        let got = client_ip(Some(ip("10.0.0.1")), &spoofed, &trusted);
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn entries_with_ports_are_read_not_skipped() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let with_port = headers("6.6.6.6, 198.51.100.7:4711");
        let got = client_ip(Some(ip("10.0.0.1")), &with_port, &trusted);
        assert_eq!(got, Some(ip("198.51.100.7")), "not the spoofed 6.6.6.6");
        let v6 = headers("6.6.6.6, [2001:db8::7]:443");
        let got = client_ip(Some(ip("10.0.0.1")), &v6, &trusted);
        assert_eq!(got, Some(ip("2001:db8::7")));
        let bare_brackets = headers("[2001:db8::8]");
        let got = client_ip(Some(ip("10.0.0.1")), &bare_brackets, &trusted);
        assert_eq!(got, Some(ip("2001:db8::8")));
    }

    #[test]
    fn a_trusted_peer_without_forwarded_for_is_the_client() {
        let trusted = ["127.0.0.1".parse().unwrap()];
        let got = client_ip(Some(ip("127.0.0.1")), &HeaderMap::new(), &trusted);
        assert_eq!(got, Some(ip("127.0.0.1")));
    }
}
