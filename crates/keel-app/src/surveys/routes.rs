//! `/api/surveys`: create, complete once (score 0–10), daily NPS statistics. All need a login;
//! another user's survey id answers 404.

use axum::extract::{Path, State};
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::{ApiError, Created, Data, List};
use keel::validation::object_id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{CompleteSurveyRequest, CreateSurveyRequest, SurveyStatView, SurveyView};
use super::service::SurveyError;
use super::service::SurveyService;
use crate::api::{ApiState, ComponentState, ErrorBody};
use crate::auth::extract::AuthUser;

impl GuardedInput for CreateSurveyRequest {}
impl GuardedInput for CompleteSurveyRequest {}

/// What the surveys handlers use.
pub struct Services {
    surveys: SurveyService,
}

/// The handlers' state: the shared API state and this component's services.
type SurveysApi = ComponentState<Services>;

pub fn router(state: &ApiState) -> OpenApiRouter<ApiState> {
    let services = Services {
        surveys: SurveyService::new(state.store()),
    };
    OpenApiRouter::new()
        .routes(state.limited(Tier::Api, routes!(create_survey)))
        .routes(state.limited(Tier::Api, routes!(complete_survey)))
        .routes(state.limited(Tier::Api, routes!(survey_stats)))
        .with_state(ComponentState::new(state, services))
}

impl From<SurveyError> for ApiError {
    fn from(e: SurveyError) -> Self {
        match e {
            SurveyError::Invalid(fields) => fields.into(),
            SurveyError::NotFound => ApiError::NotFound("survey".into()),
            SurveyError::AlreadyCompleted => ApiError::Conflict("survey already completed".into()),
            SurveyError::Store(e) => e.into(),
        }
    }
}

/// Opens a survey for a customer and/or case.
#[utoipa::path(post, path = "/api/surveys", tag = "surveys", request_body = CreateSurveyRequest,
    responses(
        (status = 201, description = "Created, status pending", body = Created<SurveyView>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn create_survey(
    State(api): State<SurveysApi>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateSurveyRequest>,
) -> Result<Created<SurveyView>, ApiError> {
    let survey = body.parse().map_err(SurveyError::Invalid)?;
    Ok(Created(api.surveys.create(user.id, survey).await?.into()))
}

/// Completes a pending survey; the surveys watcher then folds it into the statistics.
#[utoipa::path(post, path = "/api/surveys/{id}/complete", tag = "surveys", request_body = CompleteSurveyRequest,
    params(("id" = String, Path, description = "24-hex-digit ObjectId")),
    responses(
        (status = 200, description = "Completed", body = Data<SurveyView>),
        (status = 400, description = "Invalid score or comment", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such survey of this user", body = ErrorBody),
        (status = 409, description = "Already completed", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn complete_survey(
    State(api): State<SurveysApi>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CompleteSurveyRequest>,
) -> Result<Data<SurveyView>, ApiError> {
    let id = object_id("id", &id)?;
    let completion = body.parse().map_err(SurveyError::Invalid)?;
    Ok(Data(
        api.surveys.complete(user.id, id, completion).await?.into(),
    ))
}

/// Daily NPS statistics (newest first, 90 days), from `survey_stats`.
#[utoipa::path(get, path = "/api/surveys/stats", tag = "surveys",
    responses(
        (status = 200, description = "One entry per day", body = List<SurveyStatView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn survey_stats(
    State(api): State<SurveysApi>,
    _user: AuthUser,
) -> Result<List<SurveyStatView>, ApiError> {
    let stats = api.surveys.stats().await?;
    let total = stats.len() as u64;
    Ok(List {
        items: stats,
        total,
    })
}
