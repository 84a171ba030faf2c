//! Surveys: `POST /api/surveys`, `POST /api/surveys/:id/complete`, `GET /api/surveys/stats`.
//! Completion hands work to the background surveys watcher through `processed: false`.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
#[cfg(test)]
mod store_tests;
pub mod watcher;

use std::sync::Arc;

use keel::store::migrate::IndexDecl;
use keel::watchers::Watcher;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;
use crate::component::{BackgroundContext, Component};

/// The surveys component: its routes, the `surveys`/`survey_stats` indexes and the surveys
/// watcher.
pub struct Surveys;

impl Component for Surveys {
    fn name(&self) -> &'static str {
        "surveys"
    }

    fn routes(&self, api: &ApiState) -> OpenApiRouter<ApiState> {
        routes::router(api)
    }

    fn indexes(&self) -> Vec<IndexDecl> {
        repository::SurveyRepository::indexes()
    }

    fn watchers(&self, context: &BackgroundContext) -> Vec<Arc<dyn Watcher>> {
        vec![Arc::new(watcher::SurveysWatcher::new(&context.store))]
    }
}
