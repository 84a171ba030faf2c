//! The latency histograms every request records into — `keel_http_request_duration_seconds`
//! and `keel_store_op_duration_seconds` — kept as bucket counters rather than in the Prometheus
//! recorder.
//!
//! The recorder keeps each sample a histogram records (8 bytes, in blocks of 64 allocated as
//! they fill) until its upkeep or a render folds them into the buckets, and frees the blocks
//! through an epoch collector, on whichever thread collects. A listing load records ~60 k
//! samples a second: ~1 MiB held between the ops console's renders (2 s apart), and ~1,000
//! blocks a second allocated on one thread and freed on another (mimalloc's page allocations
//! over a 60 s load 11.4 k, 2.4 k now: `docs/performance.md`, round 21). Here a sample is two
//! atomic additions into memory allocated once per series. The text rendered is the
//! recorder's format: the same lines, in the same order within a series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::LATENCY_BUCKETS;

/// One series: how many samples fell into each bucket (not cumulative; the last counts those
/// above every bound) and the sum of all of them in nanoseconds.
#[derive(Debug)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    fn new() -> Self {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one sample.
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, the total (`+Inf` and `_count`, the same number by
    /// construction even while samples are being recorded) and the sum in seconds.
    fn read(&self) -> ([u64; LATENCY_BUCKETS.len()], u64, f64) {
        let mut cumulative = [0; LATENCY_BUCKETS.len()];
        let mut total = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            total = total.saturating_add(bucket.load(Ordering::Relaxed));
            if let Some(slot) = cumulative.get_mut(i) {
                *slot = total;
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, total, sum)
    }
}

/// A histogram's series by their two label values. Bounded by its callers: route patterns and
/// methods, store backends and operation names.
#[derive(Debug)]
pub struct LatencyFamily {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; 2],
    series: RwLock<Vec<([String; 2], Arc<Latency>)>>,
}

/// `keel_http_request_duration_seconds{method,route}`.
pub static HTTP_REQUEST_DURATION: LatencyFamily = LatencyFamily::new(
    "keel_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
);

/// `keel_store_op_duration_seconds{backend,op}`.
pub static STORE_OP_DURATION: LatencyFamily = LatencyFamily::new(
    "keel_store_op_duration_seconds",
    "Store operation latency by backend and operation",
    ["backend", "op"],
);

impl LatencyFamily {
    const fn new(name: &'static str, help: &'static str, labels: [&'static str; 2]) -> Self {
        LatencyFamily {
            name,
            help,
            labels,
            series: RwLock::new(Vec::new()),
        }
    }

    /// The series with these label values, made on first use. Callers keep the handle: finding
    /// it compares strings.
    pub fn series(&self, values: [&str; 2]) -> Arc<Latency> {
        let found = |series: &[([String; 2], Arc<Latency>)]| {
            series
                .iter()
                .find(|(labels, _)| labels[0] == values[0] && labels[1] == values[1])
                .map(|(_, latency)| Arc::clone(latency))
        };
        if let Some(latency) = found(&self.series.read().unwrap_or_else(PoisonError::into_inner)) {
            return latency;
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(latency) = found(&series) {
            return latency;
        }
        let latency = Arc::new(Latency::new());
        series.push((values.map(str::to_owned), Arc::clone(&latency)));
        latency
    }

    /// Appends the family in the Prometheus text format, as the recorder writes a histogram:
    /// `# HELP`, `# TYPE`, per series its buckets, `+Inf`, `_sum` and `_count`, then a blank
    /// line. Nothing until a series exists.
    pub fn render(&self, out: &mut String) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        if series.is_empty() {
            return;
        }
        let name = self.name;
        let _ = write!(
            out,
            "# HELP {name} {}\n# TYPE {name} histogram\n",
            self.help
        );
        for (values, latency) in series.iter() {
            let mut labels = String::new();
            for (label, value) in self.labels.iter().zip(values) {
                let value = metrics_exporter_prometheus::formatting::sanitize_label_value(value);
                let _ = write!(labels, "{label}=\"{value}\",");
            }
            let (cumulative, total, sum) = latency.read();
            for (le, count) in LATENCY_BUCKETS.iter().zip(cumulative) {
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {total}");
            let labels = labels.trim_end_matches(',');
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them_and_render_cumulatively() {
        let family = LatencyFamily::new("t_seconds", "Test latency", ["method", "route"]);
        let latency = family.series(["GET", "/a"]);
        latency.record(Duration::from_micros(100)); // le 0.0001 exactly
        latency.record(Duration::from_micros(700)); // le 0.001
        latency.record(Duration::from_millis(1)); // le 0.001 exactly
        latency.record(Duration::from_secs(61)); // above every bound
        let mut text = String::new();
        family.render(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP t_seconds Test latency");
        assert_eq!(lines[1], "# TYPE t_seconds histogram");
        assert_eq!(
            lines[2],
            r#"t_seconds_bucket{method="GET",route="/a",le="0.0001"} 1"#
        );
        assert_eq!(
            lines[3],
            r#"t_seconds_bucket{method="GET",route="/a",le="0.0005"} 1"#
        );
        assert_eq!(
            lines[4],
            r#"t_seconds_bucket{method="GET",route="/a",le="0.001"} 3"#
        );
        let last_bound = 2 + LATENCY_BUCKETS.len() - 1;
        assert_eq!(
            lines[last_bound],
            r#"t_seconds_bucket{method="GET",route="/a",le="60"} 3"#
        );
        assert_eq!(
            &lines[last_bound + 1..],
            [
                r#"t_seconds_bucket{method="GET",route="/a",le="+Inf"} 4"#,
                r#"t_seconds_sum{method="GET",route="/a"} 61.0018"#,
                r#"t_seconds_count{method="GET",route="/a"} 4"#,
                "",
            ],
            "a blank line closes the family"
        );
    }

    #[test]
    fn a_family_renders_nothing_until_a_series_exists_and_each_series_once() {
        let family = LatencyFamily::new("t_seconds", "Test latency", ["backend", "op"]);
        let mut text = String::new();
        family.render(&mut text);
        assert_eq!(text, "");

        let first = family.series(["embedded", "find"]);
        let again = family.series(["embedded", "find"]);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same labels, the same series"
        );
        family
            .series(["embedded", "count"])
            .record(Duration::from_millis(3));
        family.render(&mut text);
        assert_eq!(text.matches("# TYPE").count(), 1);
        assert_eq!(text.matches("_count{").count(), 2);
        assert!(text.contains(r#"t_seconds_count{backend="embedded",op="find"} 0"#));
        assert!(text.contains(r#"t_seconds_count{backend="embedded",op="count"} 1"#));
    }

    #[test]
    fn label_values_are_escaped() {
        let family = LatencyFamily::new("t_seconds", "Test latency", ["method", "route"]);
        family
            .series(["GET", "/a\"b\nc"])
            .record(Duration::from_millis(1));
        let mut text = String::new();
        family.render(&mut text);
        assert!(
            text.contains(r#"t_seconds_count{method="GET",route="/a\"b\nc"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn samples_recorded_from_many_threads_are_all_counted() {
        let latency = Arc::new(Latency::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let latency = Arc::clone(&latency);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        latency.record(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let (cumulative, total, sum) = latency.read();
        assert_eq!(total, 40_000);
        assert_eq!(cumulative[LATENCY_BUCKETS.len() - 1], 40_000);
        assert_eq!(cumulative[2], 0, "nothing at or below 1 ms");
        assert!((sum - 80.0).abs() < 1e-6, "{sum}");
    }
}
