//! The Runtime view's numbers: every `SAMPLE_INTERVAL` this replica reads its own metrics
//! registry (the Prometheus recorder keel installs, `keel::metrics`) and keeps the last
//! `KEPT_SAMPLES` snapshots in memory; `/api/ops/runtime` turns consecutive snapshots into
//! rates and 99th percentiles. The recorder exposes its values only as rendered exposition
//! text, so the parsing happens here, once, on the server; the page gets JSON.
//!
//! Memory is bounded: at most `KEPT_SAMPLES` snapshots, each a few hundred numbers (the series
//! are per route pattern and store operation, never per id).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel::Platform;

use super::model::{RateStat, RuntimePoint, RuntimeView};

/// How often the metrics are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Snapshots kept: five minutes at the interval above (plus the base of the first rate).
pub const KEPT_SAMPLES: usize = 151;

/// A histogram as rendered: the count and the cumulative buckets `(le, count)`, `le` ascending
/// with `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    count: f64,
    buckets: Vec<(f64, f64)>,
}

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

/// The kept snapshots. Cheap to clone.
#[derive(Clone)]
pub struct RuntimeSampler {
    snapshots: Arc<Mutex<VecDeque<Snapshot>>>,
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
            snapshots: Arc::default(),
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

    /// Takes one snapshot now.
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
        let mut kept = self.lock();
        if kept.len() == KEPT_SAMPLES {
            kept.pop_front();
        }
        kept.push_back(snapshot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Snapshot>> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every interval between consecutive snapshots, oldest first.
    pub fn view(&self) -> RuntimeView {
        let kept = self.lock();
        let points = kept
            .iter()
            .zip(kept.iter().skip(1))
            .map(|(before, after)| point(before, after))
            .collect();
        RuntimeView {
            metrics_enabled: self.metrics.is_some(),
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            points,
        }
    }

    /// Restarts and events so far, and the lag's p99 over the last minute, of `watcher`.
    pub fn watcher_stats(&self, watcher: &str) -> WatcherStats {
        let kept = self.lock();
        let Some(latest) = kept.back() else {
            return WatcherStats::default();
        };
        let minute_ago = kept
            .iter()
            .find(|s| latest.at_ms - s.at_ms <= 60_000)
            .unwrap_or(latest);
        let lag_p99_ms = latest.watcher_lag.get(watcher).and_then(|now| {
            let empty = Histogram::default();
            let then = minute_ago.watcher_lag.get(watcher).unwrap_or(&empty);
            let then = if std::ptr::eq(minute_ago, latest) {
                &empty
            } else {
                then
            };
            p99_ms(then, now)
        });
        WatcherStats {
            restarts: latest.watcher_restarts.get(watcher).copied().unwrap_or(0.0) as u64,
            events_handled: latest.watcher_events.get(watcher).copied().unwrap_or(0.0) as u64,
            lag_p99_ms,
        }
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
