//! Watcher `surveys` (the guides' `watchers/watchSurveys.js`): a survey that becomes completed
//! and is not processed is claimed (`processed: false → true`, `processedDate`), and its score is
//! added to `survey_stats` for its day: `responses`, NPS buckets (promoter 9–10, passive 7–8,
//! detractor 0–6) and `nps = (promoters − detractors) / responses × 100`, one decimal.
//!
//! The claim makes the effect happen once per survey across replays and replicas. A crash
//! between the claim and the stats update loses that one response from the stats (it is never
//! counted twice); the survey keeps `processed: true` and the log line says it was claimed.

use bson::{Bson, Document, doc};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::store::{ChangeEvent, ChangeOp, Store, WatchOptions};
use keel::watchers::{Watcher, WatcherError, catch_up_in_pages};

use super::repository::{SURVEYS, SurveyRepository};
use crate::surveys::model::{count, nps, nps_bucket};

pub const SURVEYS_WATCHER: &str = "surveys";

pub struct SurveysWatcher {
    repository: SurveyRepository,
}

impl SurveysWatcher {
    pub fn new(store: &Store) -> Self {
        SurveysWatcher {
            repository: SurveyRepository::new(store),
        }
    }

    async fn process(&self, id: &Bson) -> Result<(), WatcherError> {
        let Some(survey) = self.repository.claim_completed_survey(id).await? else {
            return Ok(()); // not ours: already claimed by a replay or another replica
        };
        let score = survey
            .get("score")
            .map(|s| count(&doc! { "s": s.clone() }, "s"))
            .unwrap_or(-1);
        let Some(bucket) = nps_bucket(score) else {
            tracing::warn!(survey_id = %id, score, "completed survey has no valid score; claimed, not counted");
            return Ok(());
        };
        let day = completion_day(&survey);
        let Some(after) = self.repository.add_survey_response(&day, bucket).await? else {
            return Err(WatcherError::handler(
                "survey_stats upsert returned no document",
            ));
        };
        let responses = count(&after, "responses");
        let nps = nps(
            count(&after, "promoters"),
            count(&after, "detractors"),
            responses,
        );
        self.repository.set_day_nps(&day, responses, nps).await?;
        keel::evt!(
            INFO, "survey", "surveyCompleted", "success",
            tags = ["survey", "customer-feedback"],
            survey.id = %id,
            survey.score = score,
            survey.day = %day,
            usr.customerId = survey.get_str("customerId").unwrap_or(""),
            usr.caseId = survey.get_str("caseId").unwrap_or(""),
            usr.id = %survey.get("userId").cloned().unwrap_or(Bson::Null),
            "Survey completed"
        );
        Ok(())
    }
}

impl Watcher for SurveysWatcher {
    fn name(&self) -> &str {
        SURVEYS_WATCHER
    }

    fn collection(&self) -> &str {
        SURVEYS
    }

    fn options(&self) -> WatchOptions {
        WatchOptions {
            filter: Some(doc! { "status": "completed", "processed": false }),
            ops: Some(vec![ChangeOp::Insert, ChangeOp::Update, ChangeOp::Replace]),
            resume_after: None,
        }
    }

    fn handle<'a>(&'a self, event: &'a ChangeEvent) -> BoxFuture<'a, Result<(), WatcherError>> {
        self.process(&event.id).boxed()
    }

    /// After a gap: every completed survey not yet claimed is processed (the claim keeps one
    /// counted once, should its event also arrive).
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<u64>, WatcherError>> {
        catch_up_in_pages(
            move |after| {
                async move {
                    Ok(self
                        .repository
                        .completed_unclaimed_survey_ids(after.as_ref(), 100)
                        .await?)
                }
                .boxed()
            },
            move |id| async move { self.process(&id).await }.boxed(),
        )
        .boxed()
    }
}

/// `YYYY-MM-DD` (UTC) of the completion, or of now when the survey has no `completedAt`.
fn completion_day(survey: &Document) -> String {
    let at = survey
        .get_datetime("completedAt")
        .copied()
        .unwrap_or_else(|_| bson::DateTime::now());
    at.try_to_rfc3339_string()
        .map(|text| text.chars().take(10).collect())
        .unwrap_or_else(|_| "unknown-day".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_fall_into_the_nps_buckets() {
        let buckets: Vec<_> = (-1..=11).map(nps_bucket).collect();
        assert_eq!(buckets[0], None);
        assert_eq!(&buckets[1..8], &[Some("detractors"); 7]);
        assert_eq!(&buckets[8..10], &[Some("passives"); 2]);
        assert_eq!(&buckets[10..12], &[Some("promoters"); 2]);
        assert_eq!(buckets[12], None);
    }

    #[test]
    fn nps_is_promoters_minus_detractors_over_responses() {
        assert_eq!(nps(2, 1, 3), 33.3);
        assert_eq!(nps(0, 3, 3), -100.0);
        assert_eq!(nps(0, 0, 0), 0.0);
    }
}
