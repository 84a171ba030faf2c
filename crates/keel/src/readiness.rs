//! Readiness: may this process receive traffic right now? (`GET /api/ready`)
//!
//! Liveness (`/api/health`) only says the process answers; readiness says its dependencies do.
//! Two kinds of input: components that *report* their state as it changes (a watcher sets
//! itself down while it reconnects), and probes that are *asked* on every check (a store ping,
//! bounded by a timeout). At shutdown the whole process is marked not-ready first, so a load
//! balancer stops sending requests before the listener closes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    reported: RwLock<BTreeMap<String, Result<(), String>>>,
    probes: RwLock<BTreeMap<String, Probe>>,
    is_shutting_down: AtomicBool,
}

/// One component's state in a readiness report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentState {
    pub name: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    pub components: Vec<ComponentState>,
}

impl ReadinessReport {
    pub fn down(&self) -> Vec<&ComponentState> {
        self.components.iter().filter(|c| !c.up).collect()
    }
}

/// The name under which shutdown appears in a report.
pub const SHUTDOWN_COMPONENT: &str = "process";

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports `name` as up.
    pub fn set_up(&self, name: &str) {
        self.write_reported(name, Ok(()));
    }

    /// Reports `name` as down, with a reason an operator can act on (no secrets).
    pub fn set_down(&self, name: &str, reason: impl Into<String>) {
        self.write_reported(name, Err(reason.into()));
    }

    /// Forgets a reported component (it was stopped on purpose).
    pub fn remove(&self, name: &str) {
        self.inner
            .reported
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Registers a check run on every readiness request.
    pub fn add_probe<F, Fut>(&self, name: &str, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let probe: Probe = Arc::new(move || Box::pin(probe()));
        self.inner
            .probes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), probe);
    }

    /// From now on the process reports not-ready: it is shutting down.
    pub fn mark_shutting_down(&self) {
        self.inner.is_shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down.load(Ordering::SeqCst)
    }

    /// Runs every probe (concurrently, each bounded by `probe_timeout`) and collects the report.
    pub async fn check(&self, probe_timeout: Duration) -> ReadinessReport {
        let mut components: Vec<ComponentState> = self
            .inner
            .reported
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, state)| component(name, state.clone()))
            .collect();
        let probes: Vec<(String, Probe)> = self
            .inner
            .probes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, probe)| (name.clone(), probe.clone()))
            .collect();
        let results =
            futures::future::join_all(probes.into_iter().map(|(name, probe)| async move {
                let result = match tokio::time::timeout(probe_timeout, probe()).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {} ms", probe_timeout.as_millis())),
                };
                component(&name, result)
            }))
            .await;
        components.extend(results);
        if self.is_shutting_down() {
            components.push(component(
                SHUTDOWN_COMPONENT,
                Err("shutting down".to_owned()),
            ));
        }
        components.sort_by(|a, b| a.name.cmp(&b.name));
        ReadinessReport {
            ready: components.iter().all(|c| c.up),
            components,
        }
    }

    fn write_reported(&self, name: &str, state: Result<(), String>) {
        self.inner
            .reported
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), state);
    }
}

fn component(name: &str, state: Result<(), String>) -> ComponentState {
    ComponentState {
        name: name.to_owned(),
        up: state.is_ok(),
        reason: state.err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn ready_only_when_every_component_and_probe_is_up() {
        let readiness = Readiness::new();
        assert!(
            readiness.check(TIMEOUT).await.ready,
            "nothing registered: ready"
        );
        readiness.set_up("watchers");
        readiness.add_probe("store", || async { Ok(()) });
        assert!(readiness.check(TIMEOUT).await.ready);
        readiness.set_down("watchers", "reconnecting");
        let report = readiness.check(TIMEOUT).await;
        assert!(!report.ready);
        assert_eq!(report.down()[0].name, "watchers");
        assert_eq!(report.down()[0].reason.as_deref(), Some("reconnecting"));
    }

    #[tokio::test]
    async fn a_hanging_probe_counts_as_down() {
        let readiness = Readiness::new();
        readiness.add_probe("store", futures::future::pending);
        let report = readiness.check(TIMEOUT).await;
        assert!(!report.ready);
        assert_eq!(report.down()[0].name, "store");
    }

    #[tokio::test]
    async fn shutting_down_is_not_ready() {
        let readiness = Readiness::new();
        readiness.mark_shutting_down();
        let report = readiness.check(TIMEOUT).await;
        assert!(!report.ready);
        assert_eq!(report.down()[0].name, SHUTDOWN_COMPONENT);
    }
}
