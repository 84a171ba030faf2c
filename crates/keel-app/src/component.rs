//! The component contract: what a feature contributes to the application, in one place.
//!
//! A component is a folder (`items/`, `orders/`, …) whose `mod.rs` implements [`Component`]
//! for a unit struct. Every method has an empty default, so a component states only what it
//! has: its API routes, the indexes its queries need, its scheduled tasks, its change-stream
//! watchers, its durable job handlers and its worker-pool computations. `crate::COMPONENTS`
//! lists them once; the router (`api::router`), `keel migrate` and `serve`'s start
//! (`indexes::all`) and the background registries (`background::*`) all read that list, so
//! adding a component is one line there (docs/architecture.md walks through it). This module,
//! `api` and `background` know no component by name.

use std::sync::Arc;

use keel::config::Config;
use keel::jobs::{JobHandlers, JobQueue};
use keel::store::Store;
use keel::store::migrate::IndexDecl;
use keel::tasks::TaskRegistry;
use keel::watchers::Watcher;
use keel::workers::Computations;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;

/// A list of components (the application's is `crate::COMPONENTS`).
pub type Components = &'static [&'static dyn Component];

/// What a background contribution may use: the store, the job queue (to enqueue follow-up
/// work) and the configuration the process started with.
#[derive(Clone)]
pub struct BackgroundContext {
    pub store: Store,
    pub jobs: JobQueue,
    pub config: Arc<Config>,
}

/// What one feature contributes. Implemented by a unit struct in the feature's `mod.rs`.
pub trait Component: Sync {
    /// The feature's name: its folder's (`"items"`), unique among the components.
    fn name(&self) -> &'static str;

    /// Its HTTP routes, each declared with `routes!` so it is in the OpenAPI document. The
    /// session layer is added around all of them by `api::router`.
    fn routes(&self, _api: &ApiState) -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
    }

    /// The indexes its repositories' queries need (created by `keel migrate` and at start).
    fn indexes(&self) -> Vec<IndexDecl> {
        Vec::new()
    }

    /// Registers its scheduled tasks (run by the `scheduler` role, `keel task run`).
    fn tasks(&self, _context: &BackgroundContext, _tasks: &mut TaskRegistry) {}

    /// Its change-stream watchers (run by the `watchers` role).
    fn watchers(&self, _context: &BackgroundContext) -> Vec<Arc<dyn Watcher>> {
        Vec::new()
    }

    /// Registers the handlers of its durable jobs (run by the `jobs` role).
    fn jobs(&self, _context: &BackgroundContext, _handlers: &mut JobHandlers) {}

    /// Registers its CPU-bound computations on the worker pool (also run by `keel worker-run`
    /// for isolated ones, so this takes no store).
    fn computations(&self, _computations: &mut Computations) {}
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use crate::COMPONENTS;

    #[test]
    fn component_names_are_unique() {
        let names: Vec<_> = COMPONENTS.iter().map(|c| c.name()).collect();
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    /// Every `.rs` file under `path` (a file or a folder).
    fn sources(path: &Path) -> Vec<(String, String)> {
        if path.is_file() {
            let text = std::fs::read_to_string(path).expect("reading a source file");
            return vec![(path.display().to_string(), text)];
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).expect("reading a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
                found.extend(sources(&path));
            }
        }
        found
    }

    /// What mounts and runs the components gets them as a list: it never names one, so no
    /// feature module and the API module import each other in a cycle.
    #[test]
    fn platform_modules_name_no_component() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offences = Vec::new();
        for module in ["api", "component.rs", "background", "indexes.rs"] {
            for (file, text) in sources(&src.join(module)) {
                for name in COMPONENTS.iter().map(|c| c.name()) {
                    let path = format!("crate::{name}");
                    let named = text.match_indices(&path).any(|(at, _)| {
                        let next = text[at + path.len()..].chars().next();
                        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    });
                    if named {
                        offences.push(format!("{file} names {path}"));
                    }
                }
            }
        }
        assert!(offences.is_empty(), "{offences:#?}");
    }
}
