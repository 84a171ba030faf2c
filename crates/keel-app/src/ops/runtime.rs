//! The Runtime view's numbers: every `SAMPLE_INTERVAL` this replica reads its own metrics
//! registry (the recorder keel installs, `keel::metrics`), turns the change since
//! the previous reading into rates and 99th percentiles, and keeps the last `KEPT_POINTS` of
//! them in memory for `/api/ops/runtime`. The recorder exposes its values only as rendered
//! exposition text, so the parsing happens here, once per reading, on the server; the page gets
//! JSON.
//!
//! Memory is bounded and small: the latest reading whole (the base of the next interval), the
//! watchers' lag histograms of the last minute (the Watchers view's p99), and per interval a
//! few numbers per series, which refer to the series' names kept once (route patterns and
//! store operations, never ids). Keeping every reading whole was ~8 KiB each, ~1.2 MiB over
//! the five minutes (`docs/performance.md`, round 22).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel::Platform;

use super::model::{RateStat, RuntimePoint, RuntimeView};

/// How often the metrics are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Intervals kept: five minutes at the interval above.
pub const KEPT_POINTS: usize = 150;

/// How far back the Watchers view's lag percentile looks.
const LAG_WINDOW_MS: i64 = 60_000;

/// A histogram as rendered: the count and the cumulative buckets `(le, count)`, `le` ascending
/// with `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    count: f64,
    buckets: Vec<(f64, f64)>,
}

/// One reading of the registry, as parsed.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    at_ms: i64,
    gauges: BTreeMap<String, f64>,
    http: BTreeMap<String, Histogram>,
    store: BTreeMap<String, Histogram>,
    watcher_lag: BTreeMap<String, Histogram>,
    watcher_restarts: BTreeMap<String, f64>,
    watcher_events: BTreeMap<String, f64>,
}

/// What the Watchers view takes from the metrics, per watcher.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatcherStats {
    pub restarts: u64,
    pub events_handled: u64,
    pub lag_p99_ms: Option<f64>,
}

/// One interval's numbers as kept: a `RuntimePoint` whose series name their entry in
/// `History::names`.
#[derive(Debug)]
struct KeptPoint {
    at_ms: i64,
    scheduler_lag_ms: Option<f64>,
    worker_queued: Option<f64>,
    worker_running: Option<f64>,
    worker_threads: Option<f64>,
    routes: Box<[KeptStat]>,
    store_ops: Box<[KeptStat]>,
}

#[derive(Debug)]
struct KeptStat {
    name: u32,
    per_sec: f64,
    p99_ms: Option<f64>,
}

/// What the sampler keeps between readings.
#[derive(Default)]
struct History {
    /// The latest reading: the base of the next interval, and the watchers' counters.
    latest: Option<Snapshot>,
    /// The watchers' lag histograms of the readings of the last `LAG_WINDOW_MS`, oldest first,
    /// the latest's included.
    lag: VecDeque<(i64, BTreeMap<String, Histogram>)>,
    /// At most `KEPT_POINTS`, oldest first.
    points: VecDeque<KeptPoint>,
    /// The names the points' series refer to, each once. As bounded as the registry's series.
    names: Vec<String>,
}

impl History {
    /// Takes `snapshot` as the latest reading, keeping the interval since the previous one.
    fn push(&mut self, snapshot: Snapshot) {
        if let Some(before) = &self.latest {
            let point = point(before, &snapshot);
            let mut kept = |stats: Vec<RateStat>| -> Box<[KeptStat]> {
                stats
                    .into_iter()
                    .map(|stat| KeptStat {
                        name: self.name_index(stat.name),
                        per_sec: stat.per_sec,
                        p99_ms: stat.p99_ms,
                    })
                    .collect()
            };
            let point = KeptPoint {
                at_ms: point.at,
                scheduler_lag_ms: point.scheduler_lag_ms,
                worker_queued: point.worker_queued,
                worker_running: point.worker_running,
                worker_threads: point.worker_threads,
                routes: kept(point.routes),
                store_ops: kept(point.store_ops),
            };
            if self.points.len() == KEPT_POINTS {
                self.points.pop_front();
            }
            self.points.push_back(point);
        }
        self.lag
            .push_back((snapshot.at_ms, snapshot.watcher_lag.clone()));
        // By time, and by count should the clock step back.
        let most = (LAG_WINDOW_MS / SAMPLE_INTERVAL.as_millis() as i64) as usize + 1;
        while self.lag.len() > most
            || self
                .lag
                .front()
                .is_some_and(|(at, _)| snapshot.at_ms - at > LAG_WINDOW_MS)
        {
            self.lag.pop_front();
        }
        self.latest = Some(snapshot);
    }

    fn name_index(&mut self, name: String) -> u32 {
        let index = match self.names.iter().position(|kept| *kept == name) {
            Some(index) => index,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        index as u32
    }

    /// Every kept interval, oldest first, as the page gets it.
    fn points(&self) -> Vec<RuntimePoint> {
        let stats = |kept: &[KeptStat]| -> Vec<RateStat> {
            kept.iter()
                .map(|stat| RateStat {
                    name: self.names[stat.name as usize].clone(),
                    per_sec: stat.per_sec,
                    p99_ms: stat.p99_ms,
                })
                .collect()
        };
        self.points
            .iter()
            .map(|point| RuntimePoint {
                at: point.at_ms,
                scheduler_lag_ms: point.scheduler_lag_ms,
                worker_queued: point.worker_queued,
                worker_running: point.worker_running,
                worker_threads: point.worker_threads,
                routes: stats(&point.routes),
                store_ops: stats(&point.store_ops),
            })
            .collect()
    }

    fn watcher_stats(&self, watcher: &str) -> WatcherStats {
        let Some(latest) = &self.latest else {
            return WatcherStats::default();
        };
        let empty = Histogram::default();
        // The oldest reading of the last minute is the base; with none before the latest, the
        // base is nothing (all observations so far).
        let base = match self.lag.front() {
            Some((_, lag)) if self.lag.len() > 1 => lag.get(watcher).unwrap_or(&empty),
            _ => &empty,
        };
        let lag_p99_ms = latest
            .watcher_lag
            .get(watcher)
            .and_then(|now| p99_ms(base, now));
        WatcherStats {
            restarts: latest.watcher_restarts.get(watcher).copied().unwrap_or(0.0) as u64,
            events_handled: latest.watcher_events.get(watcher).copied().unwrap_or(0.0) as u64,
            lag_p99_ms,
        }
    }
}

/// The kept intervals. Cheap to clone.
#[derive(Clone)]
pub struct RuntimeSampler {
    history: Arc<Mutex<History>>,
    metrics: Option<keel::metrics::Metrics>,
    /// The pool's gauges are read from the pool itself: it sets them in the registry only when
    /// they change, and the thread count before the recorder is installed.
    workers: keel::workers::Workers,
}

impl RuntimeSampler {
    /// A sampler reading the installed recorder (none when `[metrics] enabled = false`).
    pub fn new(platform: &Platform, workers: keel::workers::Workers) -> Self {
        let metrics = if platform.config().metrics.enabled {
            keel::metrics::Metrics::install()
                .map_err(|error| tracing::warn!(%error, "ops runtime view has no metrics"))
                .ok()
        } else {
            None
        };
        RuntimeSampler {
            history: Arc::default(),
            metrics,
            workers,
        }
    }

    /// Samples every `SAMPLE_INTERVAL` until shutdown (a task owned by the platform).
    pub fn start(&self, platform: &Platform) {
        if self.metrics.is_none() {
            return;
        }
        let sampler = self.clone();
        let token = platform.shutdown().token();
        platform
            .shutdown()
            .spawn("ops-runtime-sampler", async move {
                let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        _ = tick.tick() => sampler.sample_now(),
                    }
                }
            });
    }

    /// Takes one reading now.
    pub fn sample_now(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let mut snapshot = parse(&metrics.render(), bson::DateTime::now().timestamp_millis());
        let stats = self.workers.pool().stats();
        for (name, value) in [
            ("keel_worker_queued", stats.queued as f64),
            ("keel_worker_running", stats.running as f64),
            ("keel_worker_threads", stats.threads as f64),
        ] {
            snapshot.gauges.insert(name.to_owned(), value);
        }
        self.lock().push(snapshot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every kept interval, oldest first.
    pub fn view(&self) -> RuntimeView {
        RuntimeView {
            metrics_enabled: self.metrics.is_some(),
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            points: self.lock().points(),
        }
    }

    /// Restarts and events so far, and the lag's p99 over the last minute, of `watcher`.
    pub fn watcher_stats(&self, watcher: &str) -> WatcherStats {
        self.lock().watcher_stats(watcher)
    }
}

fn point(before: &Snapshot, after: &Snapshot) -> RuntimePoint {
    let seconds = ((after.at_ms - before.at_ms) as f64 / 1000.0).max(0.001);
    let rates = |now: &BTreeMap<String, Histogram>, then: &BTreeMap<String, Histogram>| {
        let empty = Histogram::default();
        let mut stats: Vec<RateStat> = now
            .iter()
            .map(|(name, hist)| {
                let base = then.get(name).unwrap_or(&empty);
                RateStat {
                    name: name.clone(),
                    per_sec: round2(((hist.count - base.count).max(0.0)) / seconds),
                    p99_ms: p99_ms(base, hist),
                }
            })
            .collect();
        stats.sort_by(|a, b| b.per_sec.total_cmp(&a.per_sec).then(a.name.cmp(&b.name)));
        stats
    };
    let gauge = |name: &str| after.gauges.get(name).copied();
    RuntimePoint {
        at: after.at_ms,
        scheduler_lag_ms: gauge("keel_runtime_scheduling_delay_seconds").map(|s| round2(s * 1e3)),
        worker_queued: gauge("keel_worker_queued"),
        worker_running: gauge("keel_worker_running"),
        worker_threads: gauge("keel_worker_threads"),
        routes: rates(&after.http, &before.http),
        store_ops: rates(&after.store, &before.store),
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The 99th percentile (ms) of what was observed between two renderings of one histogram:
/// the upper bound of the first bucket holding 99% of the new observations (the largest finite
/// bound when they fall in `+Inf`). `None` when nothing was observed.
fn p99_ms(before: &Histogram, after: &Histogram) -> Option<f64> {
    let observed = after.count - before.count;
    if observed <= 0.0 {
        return None;
    }
    let target = observed * 0.99;
    let mut largest_finite = None;
    for (le, cumulative) in &after.buckets {
        let earlier = before
            .buckets
            .iter()
            .find(|(b, _)| b == le)
            .map_or(0.0, |(_, c)| *c);
        if le.is_finite() {
            largest_finite = Some(*le);
        }
        if cumulative - earlier >= target {
            return if le.is_finite() {
                Some(round2(le * 1e3))
            } else {
                largest_finite.map(|l| round2(l * 1e3))
            };
        }
    }
    largest_finite.map(|l| round2(l * 1e3))
}

/// Reads the exposition text: `name{label="value",…} number` lines; `#` lines are comments.
fn parse(text: &str, at_ms: i64) -> Snapshot {
    let mut snapshot = Snapshot {
        at_ms,
        ..Snapshot::default()
    };
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map_or("", |(_, v)| v.as_str())
        };
        match name {
            "keel_runtime_scheduling_delay_seconds"
            | "keel_worker_queued"
            | "keel_worker_running"
            | "keel_worker_threads" => {
                snapshot.gauges.insert(name.to_owned(), value);
            }
            "keel_watcher_restarts_total" => {
                *snapshot
                    .watcher_restarts
                    .entry(label("watcher").to_owned())
                    .or_default() += value;
            }
            "keel_watcher_events_total" => {
                *snapshot
                    .watcher_events
                    .entry(label("watcher").to_owned())
                    .or_default() += value;
            }
            _ => {
                let (family, key) = if let Some(family) = histogram_family(name) {
                    match family.0 {
                        "keel_http_request_duration_seconds" => (
                            &mut snapshot.http,
                            format!("{} {}", label("method"), label("route")),
                        ),
                        "keel_store_op_duration_seconds" => (
                            &mut snapshot.store,
                            format!("{} {}", label("backend"), label("op")),
                        ),
                        "keel_watcher_lag_seconds" => {
                            (&mut snapshot.watcher_lag, label("watcher").to_owned())
                        }
                        _ => continue,
                    }
                } else {
                    continue;
                };
                let (_, part) = histogram_family(name).unwrap_or(("", ""));
                let histogram = family.entry(key).or_default();
                match part {
                    "count" => histogram.count = value,
                    "bucket" => {
                        let le = match label("le") {
                            "+Inf" => f64::INFINITY,
                            text => match text.parse() {
                                Ok(le) => le,
                                Err(_) => continue,
                            },
                        };
                        histogram.buckets.push((le, value));
                    }
                    _ => {}
                }
            }
        }
    }
    for family in [
        &mut snapshot.http,
        &mut snapshot.store,
        &mut snapshot.watcher_lag,
    ] {
        for histogram in family.values_mut() {
            histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    snapshot
}

/// `keel_x_seconds_bucket` → (`keel_x_seconds`, `bucket`); likewise `_count` and `_sum`.
fn histogram_family(name: &str) -> Option<(&str, &str)> {
    ["bucket", "count", "sum"].into_iter().find_map(|part| {
        name.strip_suffix(part)
            .and_then(|n| n.strip_suffix('_'))
            .map(|family| (family, part))
    })
}

type Labels = Vec<(String, String)>;

fn parse_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => return None,
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE keel_http_request_duration_seconds histogram
keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="0.001"} 10
keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="0.01"} 10
keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="+Inf"} 10
keel_http_request_duration_seconds_sum{method="GET",route="/api/items"} 0.005
keel_http_request_duration_seconds_count{method="GET",route="/api/items"} 10
keel_runtime_scheduling_delay_seconds 0.0004
keel_watcher_restarts_total{watcher="surveys"} 2
"#;

    const AFTER: &str = r#"keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="0.001"} 20
keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="0.01"} 30
keel_http_request_duration_seconds_bucket{method="GET",route="/api/items",le="+Inf"} 30
keel_http_request_duration_seconds_count{method="GET",route="/api/items"} 30
keel_store_op_duration_seconds_bucket{backend="embedded",op="find",le="0.001"} 4
keel_store_op_duration_seconds_bucket{backend="embedded",op="find",le="+Inf"} 4
keel_store_op_duration_seconds_count{backend="embedded",op="find"} 4
keel_runtime_scheduling_delay_seconds 0.0012
keel_worker_queued 3
keel_watcher_restarts_total{watcher="surveys"} 3
"#;

    #[test]
    fn consecutive_renderings_become_rates_and_percentiles() {
        let before = parse(BEFORE, 0);
        let after = parse(AFTER, 2_000);
        let point = point(&before, &after);
        assert_eq!(point.scheduler_lag_ms, Some(1.2));
        assert_eq!(point.worker_queued, Some(3.0));
        let items = &point.routes[0];
        assert_eq!(items.name, "GET /api/items");
        assert_eq!(items.per_sec, 10.0, "20 requests in 2 s");
        // Of the 20 new requests, 10 took ≤ 1 ms and 10 ≤ 10 ms: the p99 is in the 10 ms bucket.
        assert_eq!(items.p99_ms, Some(10.0));
        assert_eq!(point.store_ops[0].name, "embedded find");
        assert_eq!(point.store_ops[0].p99_ms, Some(1.0));
    }

    /// A reading with `requests` counted on one route and `lag` watcher events observed, all
    /// at most 1 ms.
    fn reading(requests: u64, lag: u64) -> String {
        format!(
            r#"keel_http_request_duration_seconds_bucket{{method="GET",route="/api/items",le="0.001"}} {requests}
keel_http_request_duration_seconds_bucket{{method="GET",route="/api/items",le="+Inf"}} {requests}
keel_http_request_duration_seconds_count{{method="GET",route="/api/items"}} {requests}
keel_store_op_duration_seconds_bucket{{backend="embedded",op="find",le="0.01"}} {lag}
keel_store_op_duration_seconds_bucket{{backend="embedded",op="find",le="+Inf"}} {lag}
keel_store_op_duration_seconds_count{{backend="embedded",op="find"}} {lag}
keel_watcher_lag_seconds_bucket{{watcher="surveys",le="0.001"}} {lag}
keel_watcher_lag_seconds_bucket{{watcher="surveys",le="+Inf"}} {lag}
keel_watcher_lag_seconds_count{{watcher="surveys"}} {lag}
keel_watcher_events_total{{watcher="surveys"}} {lag}
"#
        )
    }

    #[test]
    fn the_history_keeps_each_interval_as_numbers_and_the_names_once() {
        let mut history = History::default();
        history.push(parse(&reading(0, 0), 0));
        assert!(history.points().is_empty(), "one reading is no interval");
        for n in 1..=(KEPT_POINTS as u64 + 20) {
            history.push(parse(&reading(n * 10, n), n as i64 * 2_000));
        }
        let points = history.points();
        assert_eq!(points.len(), KEPT_POINTS, "the oldest intervals go");
        assert_eq!(history.names, ["GET /api/items", "embedded find"]);
        let last = points.last().unwrap();
        assert_eq!(last.at, (KEPT_POINTS as i64 + 20) * 2_000);
        assert_eq!(last.routes.len(), 1);
        assert_eq!(last.routes[0].name, "GET /api/items");
        assert_eq!(last.routes[0].per_sec, 5.0, "10 requests in 2 s");
        assert_eq!(last.routes[0].p99_ms, Some(1.0));
        assert_eq!(last.store_ops[0].name, "embedded find");
        assert_eq!(last.store_ops[0].p99_ms, Some(10.0));
        // The oldest kept interval is the one that ended 150 intervals before the last.
        assert_eq!(points[0].at, 21 * 2_000);
    }

    #[test]
    fn a_watchers_lag_percentile_looks_back_one_minute() {
        let mut history = History::default();
        assert_eq!(history.watcher_stats("surveys"), WatcherStats::default());
        // Before the window: 5 events that took up to 100 ms.
        history.push(parse(
            r#"keel_watcher_lag_seconds_bucket{watcher="surveys",le="0.001"} 0
keel_watcher_lag_seconds_bucket{watcher="surveys",le="0.1"} 5
keel_watcher_lag_seconds_bucket{watcher="surveys",le="+Inf"} 5
keel_watcher_lag_seconds_count{watcher="surveys"} 5
"#,
            0,
        ));
        let first = history.watcher_stats("surveys");
        assert_eq!(first.lag_p99_ms, Some(100.0), "all so far: the slow ones");
        // Then a minute and more of fast ones: the slow ones fall out of the window.
        for n in 1..=40 {
            let text = format!(
                r#"keel_watcher_lag_seconds_bucket{{watcher="surveys",le="0.001"}} {n}
keel_watcher_lag_seconds_bucket{{watcher="surveys",le="0.1"}} {slow}
keel_watcher_lag_seconds_bucket{{watcher="surveys",le="+Inf"}} {slow}
keel_watcher_lag_seconds_count{{watcher="surveys"}} {slow}
keel_watcher_restarts_total{{watcher="surveys"}} 2
"#,
                slow = n + 5,
            );
            history.push(parse(&text, n * 2_000));
        }
        assert!(history.lag.len() <= 31, "only the last minute's readings");
        let stats = history.watcher_stats("surveys");
        // Over all 45 the p99 would still be 100 ms; over the last minute's 30, 1 ms.
        assert_eq!(stats.lag_p99_ms, Some(1.0));
        assert_eq!(stats.restarts, 2);
        assert_eq!(history.watcher_stats("other"), WatcherStats::default());
        // A clock stepped back an hour: still at most a minute's worth of readings.
        for n in 0..100 {
            history.push(parse(AFTER, 80_000 - 3_600_000 + n * 2_000));
        }
        assert_eq!(history.lag.len(), 31);
    }

    #[test]
    fn quiet_intervals_have_no_percentile_and_labels_may_hold_escapes() {
        let same = parse(AFTER, 0);
        let later = parse(AFTER, 2_000);
        assert_eq!(point(&same, &later).routes[0].p99_ms, None);
        let (name, labels, value) =
            parse_line(r#"x_total{route="/a\"b",le="+Inf"} 7"#).expect("parses");
        assert_eq!(name, "x_total");
        assert_eq!(labels[0], ("route".to_owned(), "/a\"b".to_owned()));
        assert_eq!(labels[1].1, "+Inf");
        assert_eq!(value, 7.0);
    }
}
