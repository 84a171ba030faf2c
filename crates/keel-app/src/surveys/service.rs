//! Survey use-cases: create, complete once (score 0–10), read the daily NPS statistics.

use bson::oid::ObjectId;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::model::{NewSurvey, SurveyCompletion, SurveyRecord, SurveyStatView, SurveyStatus};
use super::repository::SurveyRepository;

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// Unknown id or someone else's survey.
    #[error("survey not found")]
    NotFound,
    #[error("survey already completed")]
    AlreadyCompleted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct SurveyService {
    surveys: SurveyRepository,
}

impl SurveyService {
    pub fn new(store: &Store) -> Self {
        Self {
            surveys: SurveyRepository::new(store),
        }
    }

    #[tracing::instrument(name = "surveys.create", skip_all)]
    pub async fn create(
        &self,
        user_id: ObjectId,
        survey: NewSurvey,
    ) -> Result<SurveyRecord, SurveyError> {
        let record = SurveyRecord {
            id: ObjectId::new(),
            user_id,
            customer_id: survey.customer_id,
            case_id: survey.case_id,
            status: SurveyStatus::Pending,
            score: None,
            comment: None,
            created_at: bson::DateTime::now(),
            completed_at: None,
            processed: false,
        };
        self.surveys.insert(&record).await?;
        Ok(record)
    }

    #[tracing::instrument(name = "surveys.complete", skip_all, fields(survey = %id))]
    pub async fn complete(
        &self,
        user_id: ObjectId,
        id: ObjectId,
        completion: SurveyCompletion,
    ) -> Result<SurveyRecord, SurveyError> {
        if let Some(done) = self
            .surveys
            .complete_pending(user_id, id, &completion)
            .await?
        {
            return Ok(done);
        }
        // Nothing pending matched: tell "not yours / unknown" from "already completed".
        match self.surveys.find_own(user_id, id).await? {
            Some(_) => Err(SurveyError::AlreadyCompleted),
            None => Err(SurveyError::NotFound),
        }
    }

    pub async fn stats(&self) -> Result<Vec<SurveyStatView>, SurveyError> {
        Ok(self.surveys.recent_stats().await?)
    }
}
