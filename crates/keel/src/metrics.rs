//! Metrics: Prometheus text at `GET /metrics` (on the API port, or on its own port with
//! `metrics.port`).
//!
//! Code records with the `metrics` crate's macros (`counter!`, `gauge!`, `histogram!`) where
//! things happen — the pool, the queue, the watchers, the store's `dispatch!`, the HTTP layer
//! below — and this module renders them. The `metrics` facade keeps its recorder in a process
//! global: that is its design (like `tracing`'s subscriber), so that a library deep in the stack
//! can record without being handed anything. keel installs the Prometheus recorder once at
//! start-up and passes the resulting `Metrics` handle (the reader) around as a value; no keel
//! service is a global beyond that recorder.
//!
//! Names (all prefixed `keel_`): `http_requests_total{method,route,status}`,
//! `http_request_duration_seconds{method,route}`, `store_op_duration_seconds{backend,op}`,
//! `store_op_errors_total`, `task_runs_total{task,outcome}`, `task_duration_seconds{task}`,
//! `watcher_up{watcher}`, `watcher_restarts_total`, `watcher_events_total`,
//! `watcher_lag_seconds{watcher}`, `worker_threads`, `worker_queued`, `worker_running`,
//! `worker_jobs_total{outcome}`, `worker_job_duration_seconds`, `jobs{status}`,
//! `jobs_enqueued_total{kind}`, `jobs_processed_total{kind,outcome}`, `job_duration_seconds`,
//! `lock_acquire_total{outcome}`, `lock_lost_total`, `runtime_scheduling_delay_seconds`
//! (see `runtime_health`).
//!
//! The recorder installed is keel's (`KeelRecorder`): every histogram whose name ends in
//! `_seconds` is a set of bucket counters of keel's own (`latency`), which does not hold each
//! sample until a render as the Prometheus recorder does, rendered after its text in its
//! format; counters, gauges and other histograms (one: `runtime_scheduling_delay_seconds_hist`,
//! a summary) are the Prometheus recorder's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::{Deserialize, Serialize};

mod latency;

use latency::HISTOGRAMS;
pub(crate) use latency::{Latency, latency};

use crate::config::Problem;
use crate::http::{ApiError, OperatorAccess};
use crate::secrets::Secret;

/// How often the Prometheus recorder's histogram samples are folded (its upkeep; only
/// `keel_runtime_scheduling_delay_seconds_hist` is one).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` at all.
    pub enabled: bool,
    /// Serve it on this port (same host as the API) instead of the API's port, e.g. to keep it
    /// off a public load balancer. Unset: on the API port, where only the host itself and
    /// holders of `token` may read it (`http::operator`).
    pub port: Option<u16>,
    /// Bearer token for `/metrics` and `/api/ready`'s details from anywhere (a secret:
    /// `KEEL_METRICS__TOKEN(_FILE)`). On `port`, when set, it is required there too.
    pub token: Option<Secret>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: None,
            token: None,
        }
    }
}

impl MetricsConfig {
    pub fn problems(&self, server_port: u16) -> Vec<Problem> {
        match self.port {
            Some(port) if port == server_port && port != 0 => vec![Problem::new(
                "metrics.port",
                "must differ from server.port (unset it to serve /metrics on the API port)",
            )],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct MetricsError(String);

/// The reader of the installed recorder. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Installs keel's recorder the first time and returns its handle; later calls (more than
    /// one app in a test process) return the same handle. The `OnceLock` guards the facade's
    /// one global slot, nothing else.
    pub fn install() -> Result<Metrics, MetricsError> {
        static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            let prometheus = PrometheusBuilder::new().build_recorder();
            let handle = prometheus.handle();
            metrics::set_global_recorder(KeelRecorder { prometheus }).map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        });
        handle
            .clone()
            .map(|handle| Metrics { handle })
            .map_err(MetricsError)
    }

    /// The current values in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        HISTOGRAMS.render(&mut text);
        text
    }

    /// Folds histogram samples; call every `UPKEEP_INTERVAL` (`serve` runs a loop for it).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// `GET /metrics`.
    /// `GET /metrics` for `scrapers`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self, scrapers: Scrapers) -> Router<S> {
        Router::new()
            .route("/metrics", get(render_metrics))
            .with_state((self.clone(), scrapers))
    }
}

/// The recorder keel installs: the Prometheus recorder, but for every `*_seconds` histogram,
/// whose series are bucket counters in [`HISTOGRAMS`] (`latency`).
struct KeelRecorder {
    prometheus: PrometheusRecorder,
}

impl Recorder for KeelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if latency::is_latency(key.as_str()) {
            HISTOGRAMS.describe(key.as_str(), &description);
        } else {
            self.prometheus.describe_histogram(key, unit, description);
        }
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if latency::is_latency(key.name()) {
            Histogram::from_arc(HISTOGRAMS.series(key))
        } else {
            self.prometheus.register_histogram(key, metadata)
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone)]
pub enum Scrapers {
    /// On the API port: the host itself or the token holder (`http::operator`).
    Operators(OperatorAccess),
    /// On `metrics.port`: anyone, unless a token is configured; then its holders.
    OwnPort(OperatorAccess),
}

impl Scrapers {
    fn allow(&self, request: &Request) -> bool {
        match self {
            Scrapers::Operators(access) => access.allows(request),
            Scrapers::OwnPort(access) => {
                !access.token_configured() || access.has_token(request.headers())
            }
        }
    }
}

async fn render_metrics(
    State((metrics, scrapers)): State<(Metrics, Scrapers)>,
    request: Request,
) -> Response {
    if !scrapers.allow(&request) {
        return ApiError::Forbidden.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// The layer counting every request by method, route and status, and timing it
/// (`router.layer(HttpMetrics::default())`). The route is the matched *pattern*
/// (`/api/items/{id}`), never the raw path, so ids do not explode the number of series;
/// unmatched requests share the label `unmatched`, and a method outside the standard nine
/// (which no route declares) would be counted as `other`.
///
/// A service written out rather than `axum::middleware::from_fn`: `Router::layer` puts a copy
/// on every route, and `from_fn` clones and boxes the route below it and boxes its own future
/// on every request (`docs/performance.md`); this one wraps the route's future in place.
impl<S> tower::Layer<S> for HttpMetrics {
    type Service = TrackHttp<S>;

    fn layer(&self, inner: S) -> TrackHttp<S> {
        TrackHttp {
            inner,
            http: self.clone(),
        }
    }
}

/// [`HttpMetrics`] around one route.
#[derive(Clone)]
pub struct TrackHttp<S> {
    inner: S,
    http: HttpMetrics,
}

impl<S, B> tower::Service<http::Request<B>> for TrackHttp<S>
where
    S: tower::Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackHttpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        TrackHttpFuture {
            inner: self.inner.call(request),
            finish: Some(Finish {
                started,
                method,
                route,
                http: self.http.clone(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's response future, counted and timed when it completes.
    pub struct TrackHttpFuture<F> {
        #[pin]
        inner: F,
        finish: Option<Finish>,
    }
}

struct Finish {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    http: HttpMetrics,
}

impl<F, E> Future for TrackHttpFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(finish)) = (&result, this.finish.take()) {
            let route = finish
                .route
                .as_ref()
                .map_or("unmatched", MatchedPath::as_str);
            let elapsed = finish.started.elapsed();
            finish
                .http
                .record(finish.method, route, response.status().as_u16(), elapsed);
        }
        Poll::Ready(result)
    }
}

/// The request metrics' series handles, resolved once per (method, route, status): resolving a
/// labelled series in the recorder builds its key (three label strings) and hashes it, which
/// was most of the middleware's cost per request. Bounded: routes are the declared patterns,
/// methods and statuses are finite sets. Keyed by a pattern keel declares, never by client
/// text, so the map hashes with foldhash rather than SipHash (~350 instructions a request).
#[derive(Clone, Default)]
pub struct HttpMetrics {
    routes: Arc<RwLock<HashMap<String, RouteSeries, foldhash::fast::RandomState>>>,
}

#[derive(Default)]
struct RouteSeries {
    counters: Vec<(&'static str, u16, metrics::Counter)>,
    durations: Vec<(&'static str, Arc<Latency>)>,
}

impl RouteSeries {
    /// Counts and times one request, if this route has its series already.
    fn record(&self, method: &str, status: u16, elapsed: Duration) -> bool {
        let count = self
            .counters
            .iter()
            .find(|(m, s, _)| *m == method && *s == status);
        let duration = self.durations.iter().find(|(m, _)| *m == method);
        let (Some((_, _, count)), Some((_, duration))) = (count, duration) else {
            return false;
        };
        count.increment(1);
        duration.record(elapsed);
        true
    }

    /// Makes whichever of the request's series this route does not have yet.
    fn add(&mut self, method: &'static str, route: &str, status: u16) {
        if !self
            .counters
            .iter()
            .any(|(m, s, _)| *m == method && *s == status)
        {
            let count = metrics::counter!("keel_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string());
            self.counters.push((method, status, count));
        }
        if !self.durations.iter().any(|(m, _)| *m == method) {
            let duration = latency(
                "keel_http_request_duration_seconds",
                &[("method", method), ("route", route)],
            );
            self.durations.push((method, duration));
        }
    }
}

impl HttpMetrics {
    /// Counts and times one request, under the read lock once the route's series exist (no
    /// handle is cloned per request).
    fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let known = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        if known
            .get(route)
            .is_some_and(|series| series.record(method, status, elapsed))
        {
            return;
        }
        drop(known);
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let series = routes.entry(route.to_owned()).or_default();
        series.add(method, route, status);
        series.record(method, status, elapsed);
    }
}

/// The method as a label: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Help texts, shown by Prometheus and Grafana.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "keel_http_requests_total",
        "HTTP requests by method, route pattern and status"
    );
    describe_histogram!(
        "keel_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency"
    );
    describe_histogram!(
        "keel_store_op_duration_seconds",
        Unit::Seconds,
        "Store operation latency by backend and operation"
    );
    describe_counter!(
        "keel_store_op_errors_total",
        "Store operations that returned an error"
    );
    describe_counter!(
        "keel_task_runs_total",
        "Task runs by task and outcome (success, failure, skipped, cancelled)"
    );
    describe_histogram!(
        "keel_task_duration_seconds",
        Unit::Seconds,
        "Task run duration"
    );
    describe_gauge!(
        "keel_watcher_up",
        "1 while the watcher follows its feed, 0 otherwise"
    );
    describe_counter!(
        "keel_watcher_restarts_total",
        "Watcher restarts after an error"
    );
    describe_counter!(
        "keel_watcher_events_total",
        "Change events handled by watchers"
    );
    describe_histogram!(
        "keel_watcher_lag_seconds",
        Unit::Seconds,
        "Time from a change's commit to its handling"
    );
    describe_gauge!("keel_worker_threads", "Threads of the CPU worker pool");
    describe_gauge!("keel_worker_queued", "Jobs waiting for a worker thread");
    describe_gauge!(
        "keel_worker_running",
        "Jobs running on worker threads (abandoned ones included)"
    );
    describe_counter!(
        "keel_worker_jobs_total",
        "Worker pool jobs by outcome (done, failed, timeout, busy, skipped)"
    );
    describe_histogram!(
        "keel_worker_job_duration_seconds",
        Unit::Seconds,
        "Worker pool job run time"
    );
    describe_gauge!("keel_jobs", "Durable jobs by status");
    describe_counter!("keel_jobs_enqueued_total", "Durable jobs enqueued by kind");
    describe_counter!(
        "keel_jobs_processed_total",
        "Durable job attempts by kind and outcome"
    );
    describe_histogram!(
        "keel_job_duration_seconds",
        Unit::Seconds,
        "Durable job attempt duration"
    );
    describe_counter!(
        "keel_lock_acquire_total",
        "Lock acquisitions by outcome (acquired, held)"
    );
    describe_counter!("keel_lock_lost_total", "Leases lost by their holder");
    describe_gauge!(
        "keel_runtime_scheduling_delay_seconds",
        Unit::Seconds,
        "Latest scheduling delay of the async runtime's probe task"
    );
    describe_histogram!(
        "keel_runtime_scheduling_delay_seconds_hist",
        Unit::Seconds,
        "Scheduling delay of the async runtime's probe task"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn standard_methods_are_labelled_by_name_and_invented_ones_as_other() {
        use axum::http::Method;

        assert_eq!(super::method_label(&Method::GET), "GET");
        assert_eq!(super::method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(super::method_label(&invented), "other");
    }

    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_recorded_values() {
        let first = Metrics::install().expect("the recorder installs");
        let second = Metrics::install().expect("a second install returns the same handle");
        metrics::counter!("keel_test_counter_total", "case" => "install").increment(3);
        let text = second.render();
        assert!(
            text.contains("keel_test_counter_total{case=\"install\"} 3"),
            "{text}"
        );
        assert!(first.render().contains("keel_test_counter_total"));
    }

    #[tokio::test]
    async fn a_requests_latency_is_rendered_with_the_recorders_text() {
        use tower::ServiceExt;
        let metrics = Metrics::install().expect("the recorder installs");
        let router: Router = Router::new()
            .route("/latency-test/{id}", get(|| async { "ok" }))
            .layer(HttpMetrics::default());
        let request = || {
            http::Request::get("/latency-test/7")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            router.clone().oneshot(request()).await.unwrap().status(),
            200
        );
        let text = metrics.render();
        for line in [
            "# HELP keel_http_request_duration_seconds HTTP request latency",
            "# TYPE keel_http_request_duration_seconds histogram",
            r#"keel_http_request_duration_seconds_count{method="GET",route="/latency-test/{id}"} 1"#,
            r#"keel_http_requests_total{method="GET",route="/latency-test/{id}",status="200"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE keel_http_request_duration_seconds ")
                .count(),
            1,
            "rendered once, not also by the recorder"
        );
        // The second request finds the series the first made, and is counted once.
        assert_eq!(router.oneshot(request()).await.unwrap().status(), 200);
        let text = metrics.render();
        for line in [
            r#"keel_http_request_duration_seconds_count{method="GET",route="/latency-test/{id}"} 2"#,
            r#"keel_http_requests_total{method="GET",route="/latency-test/{id}",status="200"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    /// `histogram!` of a `*_seconds` name is keel's bucket counters, described and rendered
    /// once; another name stays the Prometheus recorder's (a summary).
    #[test]
    fn seconds_histograms_are_bucket_counters_and_other_histograms_the_recorders() {
        let metrics = Metrics::install().expect("the recorder installs");
        metrics::describe_histogram!("keel_test_step_seconds", "A test step");
        metrics::histogram!("keel_test_step_seconds", "step" => "one").record(0.002);
        metrics::histogram!("keel_test_step_seconds", "step" => "one")
            .record(Duration::from_secs(3));
        metrics::histogram!("keel_test_step_hist").record(0.5);
        let text = metrics.render();
        for line in [
            "# HELP keel_test_step_seconds A test step",
            "# TYPE keel_test_step_seconds histogram",
            r#"keel_test_step_seconds_bucket{step="one",le="0.0025"} 1"#,
            r#"keel_test_step_seconds_bucket{step="one",le="5"} 2"#,
            r#"keel_test_step_seconds_count{step="one"} 2"#,
            "# TYPE keel_test_step_hist summary",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(text.matches("# TYPE keel_test_step_seconds ").count(), 1);
        // The hot paths' handle on the same name and labels is the same series.
        latency("keel_test_step_seconds", &[("step", "one")]).record(Duration::from_millis(1));
        let line = r#"keel_test_step_seconds_count{step="one"} 3"#;
        assert!(
            metrics.render().lines().any(|l| l == line),
            "{line} missing"
        );
    }

    #[test]
    fn the_metrics_port_must_not_be_the_api_port() {
        let own_port = MetricsConfig {
            port: Some(9090),
            ..MetricsConfig::default()
        };
        assert!(own_port.problems(3030).is_empty());
        assert_eq!(own_port.problems(9090)[0].key, "metrics.port");
        assert!(MetricsConfig::default().problems(3030).is_empty());
    }
}
