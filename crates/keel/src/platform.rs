//! `Platform`: the services every part of keel shares, built once at start-up and passed
//! around by value (the guides' DI container; never a global).
//!
//! It holds the configuration (behind a `watch` channel, so a SIGHUP reload can publish a new
//! one and long-lived loops can react), the readiness registry, the shutdown handle and the
//! store. Cloning is one `Arc` increment. The application's `AppState` wraps it.
//!
//! Every platform has a store: the processes that build one (`keel serve` and the offline
//! commands) open it first, and commands that need no data (`keel config check`, `keel
//! worker-run`) build no platform at all. Tests open a temporary store like any other.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::readiness::Readiness;
use crate::shutdown::Shutdown;
use crate::store::Store;

#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    config: watch::Sender<Arc<Config>>,
    readiness: Readiness,
    shutdown: Shutdown,
    store: Store,
}

impl Platform {
    pub fn new(config: Config, shutdown: Shutdown, store: Store) -> Self {
        let (config, _) = watch::channel(Arc::new(config));
        Self {
            inner: Arc::new(Inner {
                config,
                readiness: Readiness::new(),
                shutdown,
                store,
            }),
        }
    }

    /// The configuration in effect now. Hold the `Arc` for one operation, not forever: a
    /// reload replaces it.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.borrow().clone()
    }

    /// A receiver that sees every configuration published by `replace_config`.
    pub fn watch_config(&self) -> watch::Receiver<Arc<Config>> {
        self.inner.config.subscribe()
    }

    /// Publishes a new configuration (SIGHUP reload of the non-secret settings).
    pub fn replace_config(&self, config: Config) {
        self.inner.config.send_replace(Arc::new(config));
    }

    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// A platform on an embedded store in a fresh temporary directory, for this crate's unit tests;
/// the directory lives as long as the returned value.
#[cfg(test)]
pub(crate) async fn temporary(config: Config) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = crate::store::DatabaseConfig {
        url: crate::secrets::Secret::new(format!("embedded://{}", dir.path().display())),
        ..crate::store::DatabaseConfig::default()
    };
    let store = Store::connect(&database)
        .await
        .expect("opening a temporary embedded store");
    (Platform::new(config, Shutdown::new(), store), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replaced_config_reaches_every_clone_and_watcher() {
        let (platform, _dir) = temporary(Config::default()).await;
        let clone = platform.clone();
        let mut watcher = platform.watch_config();
        let mut next = Config::default();
        next.log.level = "debug".into();
        platform.replace_config(next);
        assert_eq!(clone.config().log.level, "debug");
        watcher.changed().await.unwrap();
        assert_eq!(watcher.borrow().log.level, "debug");
    }
}
