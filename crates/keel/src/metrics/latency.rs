//! Every `*_seconds` histogram — the request and store latencies every request records into,
//! and the rarer job, task, watcher and worker durations — kept as bucket counters rather than
//! in the Prometheus recorder.
//!
//! The recorder keeps each sample a histogram records (8 bytes, in blocks of 64 allocated as
//! they fill) until its upkeep or a render folds them into the buckets, and frees the blocks
//! through an epoch collector, on whichever thread collects. A listing load records ~60 k
//! samples a second: ~1 MiB held between the ops console's renders (2 s apart), and ~1,000
//! blocks a second allocated on one thread and freed on another (mimalloc's page allocations
//! over a 60 s load 11.4 k, 2.4 k with these: `docs/performance.md`, round 21). Here a sample
//! is two atomic additions into memory allocated once per series.
//!
//! One registry, [`HISTOGRAMS`], holds them all: keel's recorder (`super::KeelRecorder`) hands
//! out its series for `histogram!` of any `*_seconds` name, and the two hot paths (the HTTP
//! layer, the store's `dispatch!`) take theirs from it directly with [`latency`], so a handle
//! they keep is the real series whether or not the recorder was installed yet. The text is
//! written with the exporter's own formatting functions, in the order the recorder writes a
//! histogram.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use indexmap::IndexMap;
use metrics::{Key, Label};
use metrics_exporter_prometheus::LabelSet;
use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};

/// Latency buckets (seconds) for every `*_seconds` histogram: 100 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// Whether a histogram of this name is kept here (else by the Prometheus recorder).
pub(super) fn is_latency(name: &str) -> bool {
    name.ends_with("_seconds")
}

/// The most one sample adds to a series' sum (~116 days): 1,800 of them before it would wrap.
const MAX_SUMMED_SECONDS: f64 = 1e7;

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
        self.record_seconds(elapsed.as_secs_f64());
    }

    /// Counts one sample of `seconds`: a negative one as 0, a NaN above every bound.
    fn record_seconds(&self, seconds: f64) {
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // A negative or NaN sample adds nothing to the sum (`as` saturates at 0, and NaN is 0);
        // one above `MAX_SUMMED_SECONDS` adds that, so the sum cannot wrap.
        let summed = if seconds.is_nan() {
            0.0
        } else {
            seconds.min(MAX_SUMMED_SECONDS)
        };
        let nanos = (summed * 1e9) as u64;
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

/// `histogram!`'s handle on a series.
impl metrics::HistogramFn for Latency {
    fn record(&self, value: f64) {
        self.record_seconds(value);
    }
}

/// Histograms by name, each with its help text and its series by label values. Bounded by
/// what records into it: route patterns and methods, store backends and operations, task,
/// job and watcher names — never ids.
#[derive(Debug)]
pub struct Histograms {
    families: RwLock<BTreeMap<String, Family>>,
}

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    series: Vec<(LabelSet, Arc<Latency>)>,
}

/// The process's histograms (a process global for the reason the recorder is one: code deep in
/// the stack records without being handed anything).
pub static HISTOGRAMS: Histograms = Histograms::new();

/// The series of the histogram `name` with these labels, made on first use. Callers keep the
/// handle: finding it compares strings.
pub fn latency(name: &str, labels: &[(&str, &str)]) -> Arc<Latency> {
    HISTOGRAMS.series(&key(name, labels))
}

/// The `metrics` key of `name` with these labels, as `histogram!` would make it.
fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let labels = labels
        .iter()
        .map(|&(key, value)| Label::new(key.to_owned(), value.to_owned()));
    Key::from_parts(name.to_owned(), labels.collect::<Vec<_>>())
}

impl Histograms {
    const fn new() -> Self {
        Histograms {
            families: RwLock::new(BTreeMap::new()),
        }
    }

    /// The series of `key` (a name and its labels), made on first use.
    pub fn series(&self, key: &Key) -> Arc<Latency> {
        let name = key.name();
        let labels = LabelSet::from_key_and_global(key, &IndexMap::new());
        let found = |families: &BTreeMap<String, Family>| {
            families.get(name).and_then(|family| {
                family
                    .series
                    .iter()
                    .find(|(have, _)| *have == labels)
                    .map(|(_, latency)| Arc::clone(latency))
            })
        };
        if let Some(latency) = found(&self.read()) {
            return latency;
        }
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(latency) = found(&families) {
            return latency;
        }
        let latency = Arc::new(Latency::new());
        families
            .entry(name.to_owned())
            .or_default()
            .series
            .push((labels, Arc::clone(&latency)));
        latency
    }

    /// The help text of `name` (`describe_histogram!`); the first one stays, as in the recorder.
    pub(super) fn describe(&self, name: &str, help: &str) {
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_owned()).or_default();
        if family.help.is_none() {
            family.help = Some(help.to_owned());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Family>> {
        self.families.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends every histogram with a series, by name, in the Prometheus text format as the
    /// recorder writes one: `# HELP` (when described), `# TYPE`, per series its buckets,
    /// `+Inf`, `_sum` and `_count`, then a blank line.
    pub fn render(&self, out: &mut String) {
        for (name, family) in self.read().iter() {
            render_family(name, family, out);
        }
    }
}

/// One histogram as the recorder writes one (its `render`), with the exporter's functions.
fn render_family(name: &str, family: &Family, out: &mut String) {
    if family.series.is_empty() {
        return;
    }
    if let Some(help) = &family.help {
        write_help_line(out, name, None, None, help);
    }
    write_type_line(out, name, None, None, "histogram");
    for (labels, latency) in &family.series {
        let (cumulative, total, sum) = latency.read();
        for (le, count) in LATENCY_BUCKETS.iter().zip(cumulative) {
            write_metric_line(
                out,
                name,
                Some("bucket"),
                labels,
                Some(("le", le)),
                count,
                None,
            );
        }
        let inf = Some(("le", "+Inf"));
        write_metric_line(out, name, Some("bucket"), labels, inf, total, None);
        write_metric_line::<&str, f64>(out, name, Some("sum"), labels, None, sum, None);
        write_metric_line::<&str, u64>(out, name, Some("count"), labels, None, total, None);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(histograms: &Histograms, name: &str, labels: &[(&str, &str)]) -> Arc<Latency> {
        histograms.series(&key(name, labels))
    }

    fn rendered(histograms: &Histograms) -> String {
        let mut text = String::new();
        histograms.render(&mut text);
        text
    }

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them_and_render_cumulatively() {
        let histograms = Histograms::new();
        histograms.describe("t_seconds", "Test latency");
        let latency = series(
            &histograms,
            "t_seconds",
            &[("method", "GET"), ("route", "/a")],
        );
        latency.record(Duration::from_micros(100)); // le 0.0001 exactly
        latency.record(Duration::from_micros(700)); // le 0.001
        latency.record(Duration::from_millis(1)); // le 0.001 exactly
        latency.record(Duration::from_secs(61)); // above every bound
        let text = rendered(&histograms);
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
        let histograms = Histograms::new();
        histograms.describe("t_seconds", "Test latency");
        assert_eq!(rendered(&histograms), "");

        let labels = [("backend", "embedded"), ("op", "find")];
        let first = series(&histograms, "t_seconds", &labels);
        let again = series(&histograms, "t_seconds", &labels);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same labels, the same series"
        );
        series(
            &histograms,
            "t_seconds",
            &[("backend", "embedded"), ("op", "count")],
        )
        .record(Duration::from_millis(3));
        let text = rendered(&histograms);
        assert_eq!(text.matches("# TYPE").count(), 1);
        assert_eq!(text.matches("_count{").count(), 2);
        assert!(text.contains(r#"t_seconds_count{backend="embedded",op="find"} 0"#));
        assert!(text.contains(r#"t_seconds_count{backend="embedded",op="count"} 1"#));
    }

    #[test]
    fn histograms_render_by_name_unlabelled_and_undescribed_ones_too() {
        let histograms = Histograms::new();
        series(&histograms, "z_seconds", &[]).record(Duration::from_millis(2));
        series(&histograms, "a_seconds", &[("task", "t")]).record(Duration::from_millis(2));
        let text = rendered(&histograms);
        let a = text.find("# TYPE a_seconds histogram").expect("a rendered");
        let z = text.find("# TYPE z_seconds histogram").expect("z rendered");
        assert!(a < z, "{text}");
        assert!(!text.contains("# HELP"), "nothing was described");
        assert!(
            text.contains("\nz_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("\nz_seconds_sum 0.002\n"), "{text}");
        assert!(text.contains("\nz_seconds_count 1\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let histograms = Histograms::new();
        series(
            &histograms,
            "t_seconds",
            &[("method", "GET"), ("route", "/a\"b\nc")],
        )
        .record(Duration::from_millis(1));
        let text = rendered(&histograms);
        assert!(
            text.contains(r#"t_seconds_count{method="GET",route="/a\"b\nc"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn odd_samples_are_counted_without_harm() {
        let latency = Latency::new();
        metrics::HistogramFn::record(&latency, -1.0);
        metrics::HistogramFn::record(&latency, f64::NAN);
        metrics::HistogramFn::record(&latency, f64::INFINITY);
        let (cumulative, total, sum) = latency.read();
        assert_eq!(total, 3);
        assert_eq!(cumulative[0], 1, "a negative sample is the smallest");
        assert_eq!(
            cumulative[LATENCY_BUCKETS.len() - 1],
            1,
            "NaN and ∞ above every bound"
        );
        assert_eq!(sum, MAX_SUMMED_SECONDS, "∞ adds the most one sample may");
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
