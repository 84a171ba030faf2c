//! Telemetry: logs and traces through `tracing`, set up once by the binary.
//!
//! Production writes one JSON object per line (`json.rs`) with `timestamp, level, message,
//! service, env, version, hostname`, the fields of every enclosing span (`request_id`,
//! `trace_id`, …) and the event's own fields; development writes readable lines (coloured on a terminal only). The level comes
//! from `RUST_LOG` when set, else from `log.level`. When `telemetry.otlp_endpoint` is set, spans
//! are also exported over OTLP/HTTP; the HTTP chassis makes an incoming W3C `traceparent` the
//! request span's parent. `init` returns a guard: keep it alive for the process's life and call
//! `shutdown` (or drop it) last, so buffered spans are flushed.
//!
//! Init runs before the async runtime starts: the OTLP exporter owns a blocking HTTP client
//! that must not be created or dropped inside the runtime.

mod evt;
mod filter;
mod json;
mod lines;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

pub use evt::join_tags;
pub use json::{JsonLayer, ProcessFields};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes exported spans when shut down or dropped.
#[must_use = "dropping the guard at once stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    log_filter: LogFilter,
}

/// The installed log filter, replaceable while keel runs (SIGHUP reload of `log.level`).
#[derive(Clone)]
pub struct LogFilter(filter::FilterHandle);

impl LogFilter {
    /// Replaces the filter with the one `config` asks for (`RUST_LOG` still wins when set).
    pub fn apply(&self, config: &Config) -> Result<(), TelemetryError> {
        self.0.reload(directives(config)?);
        Ok(())
    }
}

impl TelemetryGuard {
    /// The handle that changes the log level of the running process.
    pub fn log_filter(&self) -> LogFilter {
        self.log_filter.clone()
    }

    /// Flushes and stops the OTLP exporter. Blocking: call it outside the async runtime.
    pub fn shutdown(mut self) {
        self.flush_and_stop();
    }

    fn flush_and_stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("keel: flushing traces failed: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// The filter in effect: `RUST_LOG` when set and non-empty, else `log.level` (`filter.rs`).
fn directives(config: &Config) -> Result<filter::Directives, TelemetryError> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| config.log.level.clone());
    filter::Directives::parse(&directives)
        .map_err(|e| TelemetryError::Filter(format!("{directives}: {e}")))
}

/// The development format colours its output only on a terminal: files and pipes get plain
/// text. `NO_COLOR` (any non-empty value, <https://no-color.org>) turns colour off everywhere.
fn colour_wanted(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Installs the process-wide subscriber (logs to stdout, a whole line per `write`:
/// `lines.rs`) and, if configured, the OTLP exporter.
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    let (filter, filter_handle) = filter::FilterLayer::new(directives(config)?);
    let provider = match &config.telemetry.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, config)?),
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("keel")));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match config.log_format() {
        LogFormat::Json => registry
            .with(JsonLayer::new(
                ProcessFields::from_config(config),
                lines::Stdout,
            ))
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour_wanted(
                        std::io::stdout().is_terminal(),
                        std::env::var_os("NO_COLOR").as_deref(),
                    ))
                    .with_writer(lines::Stdout),
            )
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    install_panic_hook();
    Ok(TelemetryGuard {
        provider,
        log_filter: LogFilter(filter_handle),
    })
}

fn tracer_provider(endpoint: &str, config: &Config) -> Result<SdkTracerProvider, TelemetryError> {
    let traces_url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    let resource = Resource::builder()
        .with_service_name(config.telemetry.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "deployment.environment.name",
            config.env.as_str(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Panics become `error` events (JSON in production) instead of bare stderr text, with the
/// thread and location; the catch-panic middleware and the supervisor add their own context.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = crate::shutdown::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            panic.message = %message,
            panic.location = %location,
            thread = thread.name().unwrap_or("unnamed"),
            "panic"
        );
    }));
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_under_no_color() {
        assert!(colour_wanted(true, None));
        assert!(
            !colour_wanted(false, None),
            "a file or a pipe gets plain text"
        );
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(
            colour_wanted(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
    }
}
