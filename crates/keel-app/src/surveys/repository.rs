//! `surveys` and `survey_stats`. Survey queries are scoped by `userId`; completion is one atomic
//! `find_one_and_update` guarded on `status: "pending"`, so a survey completes exactly once even
//! when two requests race.

use bson::{Bson, Document, doc, oid::ObjectId};
use keel::store::{
    Collection, FindOneAndUpdateOptions, FindOptions, IndexSpec, ReturnDocument, Store,
    StoreResult, UpdateOptions,
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

/// The surveys watcher's queries (`surveys/watcher.rs`).
impl SurveyRepository {
    /// `_id`s of completed, unclaimed surveys after `after`, in `_id` order (the surveys
    /// watcher's catch-up).
    pub async fn completed_unclaimed_survey_ids(
        &self,
        after: Option<&Bson>,
        limit: i64,
    ) -> StoreResult<Vec<Bson>> {
        let filter = doc! { "status": "completed", "processed": false };
        crate::paging::ids_after(&self.surveys, filter, after, limit).await
    }

    /// Claims a completed, unprocessed survey: `processed: false → true` in one atomic step.
    /// `None` when it was not completed, or someone (a replay, another replica) claimed it first.
    pub async fn claim_completed_survey(&self, id: &Bson) -> StoreResult<Option<Document>> {
        let update = doc! { "$set": { "processed": true, "processedDate": bson::DateTime::now() } };
        let options = FindOneAndUpdateOptions {
            return_document: ReturnDocument::After,
            ..FindOneAndUpdateOptions::default()
        };
        self.surveys
            .find_one_and_update(
                doc! { "_id": id, "status": "completed", "processed": false },
                update,
                options,
            )
            .await
    }

    /// Adds one response in `bucket` (`promoters`, `passives`, `detractors`) to `day`'s stats
    /// and returns the counts after it.
    pub async fn add_survey_response(
        &self,
        day: &str,
        bucket: &str,
    ) -> StoreResult<Option<Document>> {
        let update = doc! { "$set": { "day": day }, "$inc": { "responses": 1_i64, bucket: 1_i64 } };
        let options = FindOneAndUpdateOptions {
            upsert: true,
            return_document: ReturnDocument::After,
            ..FindOneAndUpdateOptions::default()
        };
        self.stats
            .find_one_and_update(doc! { "_id": day }, update, options)
            .await
    }

    /// Stores the NPS computed from `responses` responses — only if no response was added
    /// since (then the writer of that one stores a fresher NPS).
    pub async fn set_day_nps(&self, day: &str, responses: i64, nps: f64) -> StoreResult<()> {
        self.stats
            .update_one(
                doc! { "_id": day, "responses": responses },
                doc! { "$set": { "nps": nps } },
                UpdateOptions::default(),
            )
            .await
            .map(|_| ())
    }
}
