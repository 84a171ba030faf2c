//! Brands: a unique name and an `active` flag. Items may only be created for an active brand.

use bson::oid::ObjectId;
use keel::validation::{FieldErrors, bounded_string};
use serde::{Deserialize, Serialize};

/// 1 to 100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandName(String);

impl BrandName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<BrandName, FieldErrors> {
        bounded_string(field, raw, 1, Self::MAX_CHARS).map(BrandName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBrandRequest {
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(required, value_type = String, min_length = 1, max_length = 100, example = "Acme")]
    pub name: Option<String>,
    /// Defaults to true.
    pub active: Option<bool>,
}

#[derive(Debug)]
pub struct NewBrand {
    pub name: BrandName,
    pub is_active: bool,
}

impl CreateBrandRequest {
    pub fn parse(self) -> Result<NewBrand, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = match self.name {
            Some(raw) => errors.take(BrandName::parse("name", &raw)),
            None => {
                errors.push("name", "is required");
                None
            }
        };
        errors.finish(|| {
            Some(NewBrand {
                name: name?,
                is_active: self.active.unwrap_or(true),
            })
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrandRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub active: bool,
    pub created_at: bson::DateTime,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrandView {
    #[serde(rename = "_id")]
    pub id: String,
    pub active: bool,
    pub created_at: String,
    pub name: String,
}

impl From<BrandRecord> for BrandView {
    fn from(b: BrandRecord) -> Self {
        BrandView {
            id: b.id.to_hex(),
            name: b.name,
            active: b.active,
            created_at: b.created_at.try_to_rfc3339_string().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_name_is_required_and_capped() {
        assert!(
            CreateBrandRequest {
                name: None,
                active: None
            }
            .parse()
            .is_err()
        );
        assert!(BrandName::parse("name", &"b".repeat(101)).is_err());
        let brand = CreateBrandRequest {
            name: Some(" Acme ".into()),
            active: None,
        }
        .parse()
        .unwrap();
        assert_eq!(brand.name.as_str(), "Acme");
        assert!(brand.is_active);
    }
}
