//! Named computations: pure functions from JSON to JSON.
//!
//! A kind is registered once (the application registers its own, e.g. `process-orders`) and can
//! then run on a pool thread or, unchanged, in an isolated child process: the function only sees
//! its input, so where it runs is a deployment choice (`workers.isolated`), not a code change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A computation: input JSON → output JSON, or a failure message. Must not touch the store or the
/// network: it may run in a process that has neither.
pub type ComputeFn =
    Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// Built into every registry: allocates and touches `{"mb": N}` megabytes, then answers
/// `{"allocatedMb": N}`. It exists so an operator (and the tests) can check that the memory limit
/// of isolated jobs really holds on their platform — some container runtimes ignore RLIMIT_AS.
pub const ALLOCATE_KIND: &str = "keel.allocate";

#[derive(Clone, Default)]
pub struct Computations {
    functions: BTreeMap<String, ComputeFn>,
    isolated: BTreeSet<String>,
}

impl Computations {
    pub fn new() -> Self {
        let mut jobs = Computations::default();
        jobs.register(ALLOCATE_KIND, allocate_and_touch);
        jobs
    }

    /// Registers `kind`; a second registration of the same name replaces the first.
    pub fn register<F>(&mut self, kind: &str, function: F) -> &mut Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        self.functions.insert(kind.to_owned(), Arc::new(function));
        self
    }

    pub fn get(&self, kind: &str) -> Option<ComputeFn> {
        self.functions.get(kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    pub fn is_isolated(&self, kind: &str) -> bool {
        self.isolated.contains(kind)
    }

    pub(super) fn mark_isolated(&mut self, kinds: &[String]) {
        for kind in kinds {
            if self.functions.contains_key(kind) {
                self.isolated.insert(kind.clone());
            } else {
                tracing::warn!(kind = %kind, "workers.isolated names an unknown computation");
            }
        }
    }
}

fn allocate_and_touch(input: serde_json::Value) -> Result<serde_json::Value, String> {
    let mb = input
        .get("mb")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| "keel.allocate needs {\"mb\": <positive integer>}".to_owned())?;
    let bytes = usize::try_from(mb)
        .ok()
        .and_then(|mb| mb.checked_mul(1024 * 1024))
        .ok_or_else(|| format!("{mb} MB does not fit in this machine's address space"))?;
    // vec! of non-zero bytes writes every page, so the memory is really used, not just reserved.
    let block = vec![1u8; bytes];
    let touched = block
        .iter()
        .step_by(4096)
        .map(|b| u64::from(*b))
        .sum::<u64>();
    Ok(serde_json::json!({ "allocatedMb": mb, "pagesTouched": touched }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_kinds_are_found_by_name_and_allocate_is_built_in() {
        let mut jobs = Computations::new();
        jobs.register("double", |v| {
            v.as_i64()
                .map(|n| serde_json::json!(n * 2))
                .ok_or_else(|| "not a number".to_owned())
        });
        let double = jobs.get("double").expect("just registered");
        assert_eq!(double(serde_json::json!(21)), Ok(serde_json::json!(42)));
        assert!(double(serde_json::json!("x")).is_err());
        assert_eq!(
            jobs.kinds().collect::<Vec<_>>(),
            vec!["double", ALLOCATE_KIND]
        );
        let allocate = jobs.get(ALLOCATE_KIND).expect("built in");
        let answer = allocate(serde_json::json!({"mb": 2})).expect("2 MB is fine");
        assert_eq!(answer["allocatedMb"], 2);
        assert!(allocate(serde_json::json!({})).is_err());
    }

    #[test]
    fn only_known_kinds_can_be_isolated() {
        let mut jobs = Computations::new();
        jobs.mark_isolated(&[ALLOCATE_KIND.to_owned(), "nope".to_owned()]);
        assert!(jobs.is_isolated(ALLOCATE_KIND));
        assert!(!jobs.is_isolated("nope"));
    }
}
