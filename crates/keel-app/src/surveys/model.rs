//! Surveys: created `pending` for a customer/case, completed once with a 0–10 score. Completion
//! sets `processed: false`, which is what the surveys watcher (background work) picks up to
//! update `survey_stats`.

use bson::{Bson, Document, oid::ObjectId};
use keel::validation::{FieldErrors, bounded_string};
use serde::{Deserialize, Serialize};

/// A net-promoter score: 0..=10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score(u8);

impl Score {
    pub fn parse(raw: i64) -> Result<Score, FieldErrors> {
        if (0..=10).contains(&raw) {
            Ok(Score(raw as u8))
        } else {
            Err(FieldErrors::single(
                "score",
                "must be an integer from 0 to 10",
            ))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A free-text comment, at most 2000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment(String);

impl Comment {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Comment, FieldErrors> {
        let text: String = raw.trim().to_string();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(FieldErrors::single(
                "comment",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        // Newlines and tabs are fine in a comment; other control characters are not.
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(FieldErrors::single(
                "comment",
                "must not contain control characters",
            ));
        }
        Ok(Comment(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MAX_REFERENCE_CHARS: usize = 64;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSurveyRequest {
    /// 1 to 64 characters once trimmed.
    #[schema(min_length = 1, max_length = 64, example = "cust-42")]
    pub customer_id: Option<String>,
    /// 1 to 64 characters once trimmed.
    #[schema(min_length = 1, max_length = 64, example = "case-7")]
    pub case_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewSurvey {
    pub customer_id: Option<String>,
    pub case_id: Option<String>,
}

impl CreateSurveyRequest {
    pub fn parse(self) -> Result<NewSurvey, FieldErrors> {
        let mut errors = FieldErrors::new();
        let customer_id = self
            .customer_id
            .and_then(|c| errors.take(bounded_string("customerId", &c, 1, MAX_REFERENCE_CHARS)));
        let case_id = self
            .case_id
            .and_then(|c| errors.take(bounded_string("caseId", &c, 1, MAX_REFERENCE_CHARS)));
        errors.finish(|| {
            Some(NewSurvey {
                customer_id,
                case_id,
            })
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteSurveyRequest {
    #[schema(required, value_type = i64, minimum = 0, maximum = 10, example = 9)]
    pub score: Option<i64>,
    /// At most 2000 characters once trimmed.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SurveyCompletion {
    pub score: Score,
    pub comment: Option<Comment>,
}

impl CompleteSurveyRequest {
    pub fn parse(self) -> Result<SurveyCompletion, FieldErrors> {
        let mut errors = FieldErrors::new();
        let score = match self.score {
            Some(s) => errors.take(Score::parse(s)),
            None => {
                errors.push("score", "is required");
                None
            }
        };
        let comment = match self.comment {
            Some(c) => errors.take(Comment::parse(&c)).map(Some),
            None => Some(None),
        };
        errors.finish(|| {
            Some(SurveyCompletion {
                score: score?,
                comment: comment?,
            })
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SurveyStatus {
    Pending,
    Completed,
}

/// A survey as stored in `surveys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    pub status: SurveyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<bson::DateTime>,
    #[serde(default)]
    pub processed: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SurveyView {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<i32>,
    pub status: SurveyStatus,
}

impl From<SurveyRecord> for SurveyView {
    fn from(s: SurveyRecord) -> Self {
        SurveyView {
            id: s.id.to_hex(),
            customer_id: s.customer_id,
            case_id: s.case_id,
            status: s.status,
            score: s.score,
            comment: s.comment,
            created_at: s.created_at.try_to_rfc3339_string().unwrap_or_default(),
            completed_at: s.completed_at.and_then(|d| d.try_to_rfc3339_string().ok()),
        }
    }
}

/// One day of NPS statistics, as `GET /api/surveys/stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SurveyStatView {
    #[schema(example = "2025-01-31")]
    pub day: String,
    pub detractors: i64,
    /// (promoters − detractors) / responses × 100, rounded to one decimal.
    pub nps: f64,
    pub passives: i64,
    pub promoters: i64,
    pub responses: i64,
}

impl SurveyStatView {
    /// Reads a `survey_stats` document written by the surveys watcher. The document is input
    /// too: numbers may be stored as int32, int64 or double, `day` as text or a date; a
    /// document without a usable day is skipped rather than failing the whole listing.
    pub fn from_document(doc: &Document) -> Option<SurveyStatView> {
        let day = match doc.get("day").or_else(|| doc.get("_id")) {
            Some(Bson::String(s)) => s.clone(),
            Some(Bson::DateTime(d)) => d.try_to_rfc3339_string().ok()?.chars().take(10).collect(),
            _ => return None,
        };
        let (promoters, passives, detractors) = (
            count(doc, "promoters"),
            count(doc, "passives"),
            count(doc, "detractors"),
        );
        let mut responses = count(doc, "responses");
        if responses == 0 {
            responses = promoters + passives + detractors;
        }
        let nps = match doc.get("nps") {
            Some(Bson::Double(f)) if f.is_finite() => *f,
            Some(Bson::Int32(n)) => f64::from(*n),
            Some(Bson::Int64(n)) => *n as f64,
            _ => nps(promoters, detractors, responses),
        };
        Some(SurveyStatView {
            day,
            responses,
            promoters,
            passives,
            detractors,
            nps,
        })
    }
}

/// Promoter 9–10, passive 7–8, detractor 0–6; `None` outside 0–10. The one NPS bucketing,
/// used by the surveys watcher when it counts a completion.
pub fn nps_bucket(score: i64) -> Option<&'static str> {
    match score {
        9..=10 => Some("promoters"),
        7..=8 => Some("passives"),
        0..=6 => Some("detractors"),
        _ => None,
    }
}

/// Net promoter score, (promoters − detractors) / responses × 100 rounded to one decimal; 0
/// without responses. The one NPS formula (the watcher stores it, the stats view recomputes it
/// for documents without one).
pub fn nps(promoters: i64, detractors: i64, responses: i64) -> f64 {
    if responses <= 0 {
        return 0.0;
    }
    ((promoters - detractors) as f64 / responses as f64 * 1000.0).round() / 10.0
}

/// A count stored as any numeric type (documents read back are input too); 0 otherwise.
pub fn count(document: &Document, key: &str) -> i64 {
    match document.get(key) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(f)) if f.is_finite() => *f as i64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn score_is_0_to_10() {
        assert!(Score::parse(0).is_ok() && Score::parse(10).is_ok());
        assert!(Score::parse(11).is_err() && Score::parse(-1).is_err());
    }

    #[test]
    fn completion_reports_every_problem() {
        let errors = CompleteSurveyRequest {
            score: Some(42),
            comment: Some("x".repeat(2001)),
        }
        .parse()
        .unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn stats_documents_are_read_leniently() {
        let view = SurveyStatView::from_document(&doc! {
            "day": "2025-01-31", "promoters": 3_i32, "passives": 1_i64, "detractors": 1.0
        })
        .unwrap();
        assert_eq!(view.responses, 5);
        assert_eq!(view.nps, 40.0);
        assert!(SurveyStatView::from_document(&doc! {"promoters": 1}).is_none());
    }
}
