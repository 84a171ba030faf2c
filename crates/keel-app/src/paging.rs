//! Paging parameters shared by every list route: `limit` (default 100, at most 1000) and `skip`.
//!
//! Both arrive as query-string text or JSON numbers; both are parsed here once so a list route
//! never sees an unbounded or negative page.

use keel::validation::FieldErrors;

/// How many documents a list returns: 1..=1000, default 100 (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u16);

impl Limit {
    pub const DEFAULT: Limit = Limit(100);
    pub const MAX: u16 = 1000;

    pub fn parse(field: &str, raw: i64) -> Result<Limit, FieldErrors> {
        if (1..=i64::from(Self::MAX)).contains(&raw) {
            Ok(Limit(raw as u16))
        } else {
            Err(FieldErrors::single(
                field,
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    pub fn parse_text(field: &str, raw: &str) -> Result<Limit, FieldErrors> {
        let n = parse_integer(field, raw)?;
        Self::parse(field, n)
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How many documents to skip: 0..=100,000. Deep offsets are refused rather than scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skip(u32);

impl Skip {
    pub const MAX: u32 = 100_000;

    pub fn parse(field: &str, raw: i64) -> Result<Skip, FieldErrors> {
        if (0..=i64::from(Self::MAX)).contains(&raw) {
            Ok(Skip(raw as u32))
        } else {
            Err(FieldErrors::single(
                field,
                format!("must be between 0 and {}", Self::MAX),
            ))
        }
    }

    pub fn parse_text(field: &str, raw: &str) -> Result<Skip, FieldErrors> {
        let n = parse_integer(field, raw)?;
        Self::parse(field, n)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

fn parse_integer(field: &str, raw: &str) -> Result<i64, FieldErrors> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 12 {
        return Err(FieldErrors::single(field, "must be an integer"));
    }
    raw.parse::<i64>()
        .map_err(|_| FieldErrors::single(field, "must be an integer"))
}

/// One page of the `_id`s matching `filter`, after `after`, in `_id` order.
pub(crate) async fn ids_after(
    collection: &keel::store::Collection,
    mut filter: bson::Document,
    after: Option<&bson::Bson>,
    limit: i64,
) -> keel::store::StoreResult<Vec<bson::Bson>> {
    if let Some(after) = after {
        filter.insert("_id", bson::doc! { "$gt": after.clone() });
    }
    let options = keel::store::FindOptions::default()
        .sort(bson::doc! { "_id": 1 })
        .limit(limit);
    Ok(collection
        .find(filter, options)
        .await?
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_bounded_and_defaults_to_100() {
        assert_eq!(Limit::default().get(), 100);
        assert_eq!(Limit::parse_text("limit", "1000").unwrap().get(), 1000);
        for bad in ["0", "1001", "-1", "abc", "", "99999999999999"] {
            assert!(Limit::parse_text("limit", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn skip_is_bounded() {
        assert_eq!(Skip::parse_text("skip", "0").unwrap().get(), 0);
        assert!(Skip::parse_text("skip", "-1").is_err());
        assert!(Skip::parse_text("skip", "100001").is_err());
    }
}
