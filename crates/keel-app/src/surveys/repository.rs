//! `surveys` and `survey_stats`. Survey queries are scoped by `userId`; completion is one atomic
//! `find_one_and_update` guarded on `status: "pending"`, so a survey completes exactly once even
//! when two requests race.

use bson::{doc, oid::ObjectId};
use keel::store::{
    Collection, FindOneAndUpdateOptions, FindOptions, IndexSpec, ReturnDocument, Store, StoreResult,
};

use super::model::{SurveyCompletion, SurveyRecord, SurveyStatView};
use crate::indexes::IndexDecl;

pub const SURVEYS: &str = "surveys";
pub const SURVEY_STATS: &str = "survey_stats";
/// Days of statistics returned, newest first.
pub const STATS_DAYS: i64 = 90;

#[derive(Clone)]
pub struct SurveyRepository {
    surveys: Collection,
    stats: Collection,
}

impl SurveyRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            surveys: store.collection(SURVEYS),
            stats: store.collection(SURVEY_STATS),
        }
    }

    /// A user's surveys; the watcher's "completed and unprocessed" scan; stats by day.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![
            IndexDecl::new(SURVEYS, IndexSpec::new(doc! {"userId": 1})),
            IndexDecl::new(SURVEYS, IndexSpec::new(doc! {"status": 1, "processed": 1})),
            IndexDecl::new(SURVEY_STATS, IndexSpec::new(doc! {"day": 1})),
        ]
    }

    pub async fn insert(&self, survey: &SurveyRecord) -> StoreResult<()> {
        self.surveys.insert_as(survey).await.map(|_| ())
    }

    pub async fn find_own(
        &self,
        user_id: ObjectId,
        id: ObjectId,
    ) -> StoreResult<Option<SurveyRecord>> {
        self.surveys
            .find_one_as(doc! {"_id": id, "userId": user_id}, FindOptions::default())
            .await
    }

    /// Completes the caller's pending survey; `None` when there is no such pending survey.
    pub async fn complete_pending(
        &self,
        user_id: ObjectId,
        id: ObjectId,
        completion: &SurveyCompletion,
    ) -> StoreResult<Option<SurveyRecord>> {
        let mut set = doc! {
            "status": "completed",
            "score": i32::from(completion.score.get()),
            "completedAt": bson::DateTime::now(),
            "processed": false,
        };
        if let Some(comment) = &completion.comment {
            set.insert("comment", comment.as_str());
        }
        let options = FindOneAndUpdateOptions {
            return_document: ReturnDocument::After,
            ..Default::default()
        };
        let updated = self
            .surveys
            .find_one_and_update(
                doc! {"_id": id, "userId": user_id, "status": "pending"},
                doc! {"$set": set},
                options,
            )
            .await?;
        updated.map(keel::store::from_document).transpose()
    }

    pub async fn recent_stats(&self) -> StoreResult<Vec<SurveyStatView>> {
        let options = FindOptions::default()
            .sort(doc! {"day": -1})
            .limit(STATS_DAYS);
        let docs = self.stats.find(doc! {}, options).await?;
        Ok(docs
            .iter()
            .filter_map(SurveyStatView::from_document)
            .collect())
    }
}
