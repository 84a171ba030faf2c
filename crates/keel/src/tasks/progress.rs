//! Progress of a running task: a bar for a human at a terminal, a log line every N items for
//! everyone else (servers, CI, `docker logs`), where a redrawn bar would be noise.

use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    task: String,
    every: u64,
    done: AtomicU64,
    total: AtomicU64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `show_bar`: draw an indicatif bar (only when stderr is a terminal: `keel task run` decides).
    pub(crate) fn new(task: &str, every: u64, show_bar: bool) -> Self {
        let bar = show_bar.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix(task.to_owned());
            bar
        });
        Progress {
            task: task.to_owned(),
            every: every.max(1),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bar,
        }
    }

    /// A reporter that only counts (for tests and nested work).
    pub fn quiet(task: &str) -> Self {
        Progress::new(task, u64::MAX, false)
    }

    /// How many items the task expects to process, when it knows.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Counts `n` more processed items.
    pub fn inc(&self, n: u64) {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let now = before + n;
        if let Some(bar) = &self.bar {
            bar.set_position(now);
        } else if before / self.every != now / self.every {
            let total = self.total.load(Ordering::Relaxed);
            tracing::info!(task = %self.task, processed = now, total, "task progress");
        }
    }

    /// Items processed so far.
    pub fn processed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_increment() {
        let progress = Progress::new("t", 10, false);
        progress.set_total(25);
        for _ in 0..5 {
            progress.inc(5);
        }
        assert_eq!(progress.processed(), 25);
    }
}
