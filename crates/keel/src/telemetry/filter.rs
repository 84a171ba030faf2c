//! The log filter: which spans and events are recorded (`RUST_LOG`, else `log.level`),
//! replaceable while keel runs (SIGHUP).
//!
//! Directives of targets and levels only (`info`, `info,keel::store=debug`) — every shipped
//! configuration — are a `Targets` filter: decided once per callsite, and nothing to do while a
//! span lives. Directives that filter by span or field (`[http.request]=debug`,
//! `keel[{user_id}]=trace`) need `EnvFilter`, which follows every span as it is entered and
//! left. `EnvFilter` does so under two locks shared by all threads, and
//! `tracing_subscriber::reload` adds a third around every call: on a request's span and line,
//! two dozen lock round trips on memory both worker threads write (`docs/performance.md`). Here
//! the span calls reach the filter only while it is an `EnvFilter`, and an atomic flag says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber, span};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

/// Parsed filter directives.
pub enum Directives {
    /// Targets and levels only.
    Static(Box<Targets>),
    /// With span or field filters.
    Dynamic(Box<EnvFilter>),
}

impl Directives {
    /// The filter these directives are, as a layer of a subscriber `S`.
    fn layer<S>(&self) -> &dyn Layer<S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        match self {
            Directives::Static(targets) => &**targets,
            Directives::Dynamic(env) => &**env,
        }
    }

    /// Parses `text` as `EnvFilter` does (its errors are the ones reported). Text of plain
    /// `target=level`, `target` and `level` items only is read as `Targets`, which decides
    /// those the same way; anything else (spans, fields, spaces, empty items) stays `EnvFilter`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let env = EnvFilter::builder()
            .parse(text)
            .map_err(|e| e.to_string())?;
        let is_plain = !text.is_empty()
            && text.split(',').all(|item| {
                !item.is_empty()
                    && item.matches('=').count() <= 1
                    && item.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'=' | b'-')
                    })
            });
        if is_plain && let Ok(targets) = text.parse::<Targets>() {
            return Ok(Directives::Static(Box::new(targets)));
        }
        Ok(Directives::Dynamic(Box::new(env)))
    }
}

/// The installed filter (a `Layer`); [`FilterHandle`] replaces its directives.
pub struct FilterLayer(Arc<Shared>);

/// Replaces the directives of a [`FilterLayer`].
#[derive(Clone)]
pub struct FilterHandle(Arc<Shared>);

struct Shared {
    directives: RwLock<Directives>,
    /// Whether `directives` is `Dynamic`: read on every span call, written only on reload.
    is_dynamic: AtomicBool,
}

impl FilterLayer {
    pub fn new(directives: Directives) -> (Self, FilterHandle) {
        let shared = Arc::new(Shared {
            is_dynamic: AtomicBool::new(matches!(directives, Directives::Dynamic(_))),
            directives: RwLock::new(directives),
        });
        (FilterLayer(shared.clone()), FilterHandle(shared))
    }
}

impl FilterHandle {
    /// Puts `directives` in effect for every callsite, already registered or not.
    pub fn reload(&self, directives: Directives) {
        let is_dynamic = matches!(directives, Directives::Dynamic(_));
        {
            let mut current = self
                .0
                .directives
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *current = directives;
            self.0.is_dynamic.store(is_dynamic, Ordering::Release);
        }
        // Asks every callsite again (and recomputes the maximum level); needs the lock free.
        tracing::callsite::rebuild_interest_cache();
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Directives> {
        self.directives
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The `EnvFilter`, when the directives need one, for a span call.
    fn with_dynamic(&self, f: impl FnOnce(&EnvFilter)) {
        if !self.is_dynamic.load(Ordering::Acquire) {
            return;
        }
        if let Directives::Dynamic(env) = &*self.read() {
            f(env);
        }
    }
}

impl<S> Layer<S> for FilterLayer
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.read().layer::<S>().register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.read().layer::<S>().enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.read().layer::<S>().max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.with_dynamic(|env| env.on_new_span(attrs, id, ctx));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.with_dynamic(|env| env.on_record(id, values, ctx));
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.with_dynamic(|env| env.on_enter(id, ctx));
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.with_dynamic(|env| env.on_exit(id, ctx));
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.with_dynamic(|env| env.on_close(id, ctx));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Counts the events that reach it.
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Which of a fixed set of events `filter` lets through, as a bit per event.
    fn passed(filter: impl Layer<tracing_subscriber::Registry> + Send + Sync + 'static) -> u32 {
        let count = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(Count(count.clone()));
        let mut passed = 0;
        tracing::subscriber::with_default(subscriber, || {
            let events: [&dyn Fn(); 8] = [
                &|| tracing::info!(target: "keel::http::observe", "a"),
                &|| tracing::debug!(target: "keel::http::observe", "b"),
                &|| tracing::debug!(target: "keel::store", "c"),
                &|| tracing::trace!(target: "keel::store::embedded", "d"),
                &|| tracing::warn!(target: "hyper", "e"),
                &|| tracing::info!(target: "hyper::proto", "f"),
                &|| tracing::error!(target: "keelish", "g"),
                &|| tracing::info!(target: "other", "h"),
            ];
            for (bit, event) in events.iter().enumerate() {
                let before = count.load(Ordering::Relaxed);
                event();
                if count.load(Ordering::Relaxed) > before {
                    passed |= 1 << bit;
                }
            }
        });
        passed
    }

    #[test]
    fn plain_directives_decide_as_env_filter_does() {
        for text in [
            "info",
            "warn",
            "debug,hyper=warn",
            "warn,keel::store=debug",
            "keel=trace",
            "keel",
            "off,keel::http=info",
            "ERROR,keel::store::embedded=TRACE",
            "info,hyper::proto=off",
        ] {
            let parsed = Directives::parse(text).unwrap();
            assert!(matches!(parsed, Directives::Static(_)), "{text}");
            let (layer, _) = FilterLayer::new(parsed);
            let env = EnvFilter::builder().parse(text).unwrap();
            assert_eq!(passed(layer), passed(env), "{text}");
        }
    }

    #[test]
    fn span_and_field_directives_stay_env_filter() {
        for text in [
            "info,[http.request]=debug",
            "keel[{user_id}]=trace",
            "info, keel=debug",
            "info,,keel=debug",
        ] {
            let Ok(env) = EnvFilter::builder().parse(text) else {
                assert!(Directives::parse(text).is_err(), "{text}");
                continue;
            };
            let parsed = Directives::parse(text).unwrap();
            assert!(matches!(parsed, Directives::Dynamic(_)), "{text}");
            let (layer, _) = FilterLayer::new(parsed);
            assert_eq!(passed(layer), passed(env), "{text}");
        }
        assert!(Directives::parse("info,keel=loud").is_err());
    }

    #[test]
    fn a_span_directive_filters_inside_the_span_and_a_reload_takes_effect() {
        let count = Arc::new(AtomicUsize::new(0));
        let (layer, handle) = FilterLayer::new(Directives::parse("warn").unwrap());
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(Count(count.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "keel::x", "dropped");
            assert_eq!(count.load(Ordering::Relaxed), 0);
            handle.reload(Directives::parse("warn,[outer]=debug").unwrap());
            tracing::info_span!(target: "keel::x", "outer").in_scope(|| {
                tracing::debug!(target: "keel::x", "kept inside the span");
            });
            tracing::debug!(target: "keel::x", "dropped outside it");
            assert_eq!(count.load(Ordering::Relaxed), 1);
            handle.reload(Directives::parse("debug").unwrap());
            tracing::debug!(target: "keel::x", "kept");
            assert_eq!(count.load(Ordering::Relaxed), 2);
        });
    }
}
