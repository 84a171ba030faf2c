//! The chassis's compression and the telemetry of `keel serve`: gzip when the client accepts
//! it, an incoming W3C `traceparent` carried into the logged `trace_id`, and spans exported over
//! OTLP/HTTP to `telemetry.otlp_endpoint` (here a tiny collector inside the test).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use tokio::sync::Notify;

use crate::helpers::{KeelProcess, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTP client")
}

#[tokio::test]
async fn large_responses_are_gzipped_only_when_the_client_accepts_gzip() {
    let app = spawn_app().await;

    let plain = app.get("/api/openapi.json", None).await;
    assert_eq!(plain.status(), reqwest::StatusCode::OK);
    assert!(
        plain.headers().get(header::CONTENT_ENCODING).is_none(),
        "compressed without Accept-Encoding: {:?}",
        plain.headers()
    );
    let plain_bytes = plain.bytes().await.expect("reading the plain body");
    let plain_json: serde_json::Value =
        serde_json::from_slice(&plain_bytes).expect("the plain body is JSON");

    let gzipped = app
        .client
        .get(app.url("/api/openapi.json"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("GET failed");
    assert_eq!(gzipped.status(), reqwest::StatusCode::OK);
    assert_eq!(
        gzipped.headers().get(header::CONTENT_ENCODING),
        Some(&header::HeaderValue::from_static("gzip"))
    );
    let gzipped_bytes = gzipped.bytes().await.expect("reading the gzipped body");
    assert_eq!(
        gzipped_bytes.get(..2),
        Some(&[0x1f, 0x8b][..]),
        "no gzip magic"
    );
    assert!(gzipped_bytes.len() < plain_bytes.len());
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gzipped_bytes[..])
        .read_to_end(&mut decoded)
        .expect("the body is valid gzip");
    let decoded_json: serde_json::Value =
        serde_json::from_slice(&decoded).expect("the decoded body is JSON");
    assert_eq!(decoded_json, plain_json);
}

/// Sends `GET /api/health` with a `traceparent` and returns its `request completed` log line.
async fn traced_request_log(keel: &KeelProcess) -> serde_json::Value {
    let address = keel.address().await;
    let response = client()
        .get(format!("http://{address}/api/health"))
        .header("traceparent", traceparent())
        .header("x-request-id", "req-traced-1")
        .send()
        .await
        .expect("GET /api/health");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let line = keel
        .wait_for_line(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v["message"] == "request completed" && v["request_id"] == "req-traced-1"
            })
        })
        .await;
    serde_json::from_str(&line).expect("a JSON line")
}

#[tokio::test]
async fn an_incoming_traceparent_sets_the_logged_trace_id_without_an_exporter() {
    let mut keel = KeelProcess::serve(&[]);
    let line = traced_request_log(&keel).await;
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    keel.signal(libc::SIGTERM);
    assert_eq!(keel.wait_for_exit().await.code(), Some(0));
}

/// One POST the collector received.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    content_type: Option<String>,
    body: Bytes,
}

/// A minimal OTLP/HTTP collector: records every POST, whatever its path, and answers 200.
struct Collector {
    address: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
    arrived: Arc<Notify>,
}

#[derive(Clone)]
struct CollectorState {
    exports: Arc<Mutex<Vec<Export>>>,
    arrived: Arc<Notify>,
}

async fn record_export(
    State(state): State<CollectorState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.exports.lock().expect("exports lock").push(Export {
        path: uri.path().to_owned(),
        content_type,
        body,
    });
    state.arrived.notify_waiters();
    StatusCode::OK
}

impl Collector {
    async fn start() -> Collector {
        let exports = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let state = CollectorState {
            exports: exports.clone(),
            arrived: arrived.clone(),
        };
        let router = Router::new().fallback(record_export).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the collector");
        let address = listener.local_addr().expect("collector address");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                panic!("test collector failed: {e}");
            }
        });
        Collector {
            address,
            exports,
            arrived,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn exports(&self) -> Vec<Export> {
        self.exports.lock().expect("exports lock").clone()
    }

    /// Waits (bounded) for an export whose body contains `needle`, and returns it.
    async fn wait_for_export_containing(&self, needle: &[u8]) -> Export {
        let waiting = async {
            loop {
                let arrived = self.arrived.notified();
                if let Some(export) = self
                    .exports()
                    .into_iter()
                    .find(|e| e.body.windows(needle.len()).any(|w| w == needle))
                {
                    return export;
                }
                arrived.await;
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), waiting).await {
            Ok(export) => export,
            Err(_) => panic!(
                "no export carried the trace id; {} exports arrived",
                self.exports().len()
            ),
        }
    }
}

fn trace_id_bytes() -> Vec<u8> {
    (0..TRACE_ID.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&TRACE_ID[i..i + 2], 16).expect("hex trace id"))
        .collect()
}

#[tokio::test]
async fn with_an_otlp_endpoint_the_request_joins_the_callers_trace_and_spans_are_exported() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let mut keel = KeelProcess::serve(&[("KEEL_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())]);

    let line = traced_request_log(&keel).await;
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");

    // Graceful shutdown flushes the batch exporter at the latest.
    keel.signal(libc::SIGTERM);
    let status = keel.wait_for_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "output:\n{}",
        keel.lines().join("\n")
    );
    let export = collector
        .wait_for_export_containing(&trace_id_bytes())
        .await;
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(
        export.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert!(!export.body.is_empty());
    // The request span is in the export, under the caller's trace.
    let span_name = b"http.request";
    assert!(
        export.body.windows(span_name.len()).any(|w| w == span_name),
        "the http.request span is not in the export"
    );
}
