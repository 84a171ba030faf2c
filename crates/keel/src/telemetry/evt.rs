//! The `evt` convention: structured fields that say what happened, for dashboards and alerts.
//!
//! Every notable event (a task run, a security event, a job dead-lettered) carries
//! `evt.category` (the subsystem: `http`, `task`, `watcher`, `job`, `security`, `store`, …),
//! `evt.name` (what: `process-data`, `login_failed`), `evt.outcome` (`success`, `failure`,
//! `skipped`, `started`) and optionally `evt.tags`. In JSON they nest as
//! `"evt":{"category","name","outcome","tags":[…]}`, so a query like
//! `evt.category:task AND evt.outcome:failure` works in any log store.
//!
//! ```
//! keel::evt!(INFO, "task", "process-data", "success", processed = 42u64, "task finished");
//! keel::evt!(WARN, "security", "login_failed", "failure", tags = ["auth"], ip = "10.0.0.1", "login failed");
//! ```
//! The first argument is a `tracing::Level` constant name (`TRACE` … `ERROR`); anything after
//! the outcome (and the optional tags) is passed to `tracing::event!` as is.

/// `evt.tags` travels as one comma-joined string; the JSON formatter splits it into a list.
pub fn join_tags(tags: &[&str]) -> String {
    tags.join(",")
}

/// Logs a `tracing` event with the `evt {category, name, outcome, tags}` fields. See the
/// module documentation of `keel::telemetry` for the convention.
#[macro_export]
macro_rules! evt {
    ($level:ident, $category:expr, $name:expr, $outcome:expr, tags = [$($tag:expr),* $(,)?] $(, $($rest:tt)+)?) => {
        ::tracing::event!(
            ::tracing::Level::$level,
            evt.category = $category,
            evt.name = $name,
            evt.outcome = $outcome,
            evt.tags = %$crate::telemetry::join_tags(&[$(::core::convert::AsRef::<str>::as_ref(&$tag)),*])
            $(, $($rest)+)?
        )
    };
    ($level:ident, $category:expr, $name:expr, $outcome:expr $(, $($rest:tt)+)?) => {
        ::tracing::event!(
            ::tracing::Level::$level,
            evt.category = $category,
            evt.name = $name,
            evt.outcome = $outcome
            $(, $($rest)+)?
        )
    };
}
