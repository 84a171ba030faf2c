//! Items: what a client may send to create one, and what a listing may filter on.
//!
//! Creation input (`CreateItemRequest`) and list parameters (`ItemListQuery`) are parsed into
//! `NewItem` / `ItemQuery`, which cannot hold an invalid name, price or page. The free-form
//! getData filter has its own parser in [`super::filter`].

use bson::RawDocument;
use bson::oid::ObjectId;
use keel::store::StoreError;
use keel::store::raw::RawText;
use keel::validation::{FieldErrors, bounded_string};
use serde::{Deserialize, Serialize};

use super::render::StoredItem;
use crate::brands::model::BrandName;
use crate::money::Price;
use crate::paging::{Limit, Skip};

/// 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName(String);

impl ItemName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<ItemName, FieldErrors> {
        bounded_string("name", raw, 1, Self::MAX_CHARS).map(ItemName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 40;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateItemRequest {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(required, value_type = String, min_length = 1, max_length = 200, example = "Anvil")]
    pub name: Option<String>,
    /// The name of an existing, active brand.
    #[schema(required, value_type = String, min_length = 1, max_length = 100, example = "Acme")]
    pub brand: Option<String>,
    /// At most two decimals.
    #[schema(required, value_type = f64, minimum = 0, maximum = 1000000, example = 19.99)]
    pub price: Option<f64>,
    /// At most 2000 characters once trimmed; empty is none.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(schema_with = tags_schema)]
    pub tags: Option<Vec<String>>,
}

/// `tags` as `parse_tags` takes them (null is none).
fn tags_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .max_items(Some(MAX_TAGS))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_TAG_CHARS)),
        )
        .description(Some(
            "At most 20 tags of 1 to 40 characters (once trimmed); duplicates are dropped.",
        ))
        .build()
}

/// A valid item, not yet stored.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub name: ItemName,
    pub brand: BrandName,
    pub price: Price,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

impl CreateItemRequest {
    pub fn parse(self) -> Result<NewItem, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = required(&mut errors, "name", self.name.map(|n| ItemName::parse(&n)));
        let brand = required(
            &mut errors,
            "brand",
            self.brand.map(|b| BrandName::parse("brand", &b)),
        );
        let price = required(
            &mut errors,
            "price",
            self.price.map(|p| Price::parse("price", p)),
        );
        let description = match self.description {
            Some(d) => errors
                .take(bounded_string("description", &d, 0, MAX_DESCRIPTION_CHARS))
                .map(Some),
            None => Some(None),
        };
        let tags = errors.take(parse_tags(self.tags.unwrap_or_default()));
        errors.finish(|| {
            Some(NewItem {
                name: name?,
                brand: brand?,
                price: price?,
                description: description?.filter(|d| !d.is_empty()),
                tags: tags?,
            })
        })
    }
}

fn required<T>(
    errors: &mut FieldErrors,
    field: &str,
    parsed: Option<Result<T, FieldErrors>>,
) -> Option<T> {
    match parsed {
        Some(result) => errors.take(result),
        None => {
            errors.push(field, "is required");
            None
        }
    }
}

fn parse_tags(raw: Vec<String>) -> Result<Vec<String>, FieldErrors> {
    let mut errors = FieldErrors::new();
    if raw.len() > MAX_TAGS {
        errors.push("tags", format!("at most {MAX_TAGS} tags"));
        return Err(errors);
    }
    let mut tags = Vec::with_capacity(raw.len());
    for (i, tag) in raw.iter().enumerate() {
        if let Some(t) = errors.take(bounded_string(&format!("tags[{i}]"), tag, 1, MAX_TAG_CHARS))
            && !tags.contains(&t)
        {
            tags.push(t);
        }
    }
    errors.finish(|| Some(tags))
}

/// An item as stored in `items`. `processed` is the flag the `process-data` task claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub brand: String,
    pub price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<ObjectId>,
    pub created_at: bson::DateTime,
    /// Absent until `process-data` has looked at the item (the task selects items without it),
    /// then `true` once enriched or `false` once set aside with a `processError`. A new item is
    /// stored without it: written as `false`, the task would never pick it up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub processed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    #[serde(rename = "_id")]
    pub id: String,
    pub brand: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub name: String,
    pub price: f64,
    pub tags: Vec<String>,
}

impl From<ItemRecord> for ItemView {
    fn from(item: ItemRecord) -> Self {
        ItemView {
            id: keel::store::object_id_hex(&item.id),
            brand: item.brand,
            created_at: item.created_at.try_to_rfc3339_string().unwrap_or_default(),
            description: item.description,
            name: item.name,
            price: item.price,
            tags: item.tags,
        }
    }
}

impl ItemView {
    /// An item as the API shows it, read straight from its stored BSON with the rules of
    /// [`StoredItem::read`] (`ItemRecord`'s). Listings skip this view and write the stored
    /// fields straight into JSON (`render.rs`); this is the reference they are checked against.
    pub fn from_raw(document: &RawDocument) -> Result<ItemView, StoreError> {
        let item = StoredItem::read(document.as_bytes())?;
        let owned = |text: RawText<'_>| {
            text.to_str().map(str::to_owned).map_err(|e| {
                StoreError::Backend(format!("stored item has an unexpected shape: {e}"))
            })
        };
        Ok(ItemView {
            id: keel::store::object_id_hex(&item.id),
            brand: owned(item.brand)?,
            created_at: item.created_at.try_to_rfc3339_string().unwrap_or_default(),
            description: item.description.map(owned).transpose()?,
            name: owned(item.name)?,
            price: item.price,
            tags: item.tags()?.into_iter().map(str::to_owned).collect(),
        })
    }
}

/// `GET /api/items` query string, as it arrives. Only these keys are accepted.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ItemListQuery {
    /// Exact brand name.
    #[param(min_length = 1, max_length = 100)]
    pub brand: Option<String>,
    #[param(value_type = Option<f64>, minimum = 0, maximum = 1000000)]
    pub min_price: Option<String>,
    #[param(value_type = Option<f64>, minimum = 0, maximum = 1000000)]
    pub max_price: Option<String>,
    /// Case-insensitive substring of the name (matched literally).
    #[param(min_length = 1, max_length = 100)]
    pub q: Option<String>,
    /// One of `name`, `-name`, `price`, `-price`, `createdAt`, `-createdAt`.
    #[param(pattern = "^-?(name|price|createdAt)$")]
    pub sort: Option<String>,
    /// Default 100.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    #[param(value_type = Option<u32>, minimum = 0, maximum = 100000)]
    pub skip: Option<String>,
}

/// The whitelisted sort orders of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemSort {
    /// Insertion order (`_id`), stable across pages.
    #[default]
    Inserted,
    NameAscending,
    NameDescending,
    PriceAscending,
    PriceDescending,
    OldestFirst,
    NewestFirst,
}

impl ItemSort {
    pub fn parse(raw: &str) -> Result<ItemSort, FieldErrors> {
        Ok(match raw.trim() {
            "name" => ItemSort::NameAscending,
            "-name" => ItemSort::NameDescending,
            "price" => ItemSort::PriceAscending,
            "-price" => ItemSort::PriceDescending,
            "createdAt" => ItemSort::OldestFirst,
            "-createdAt" => ItemSort::NewestFirst,
            _ => {
                return Err(FieldErrors::single(
                    "sort",
                    "must be one of name, -name, price, -price, createdAt, -createdAt",
                ));
            }
        })
    }
}

pub const MAX_SEARCH_CHARS: usize = 100;

/// A parsed listing request.
#[derive(Debug, Clone, Default)]
pub struct ItemQuery {
    pub brand: Option<BrandName>,
    pub min_price: Option<Price>,
    pub max_price: Option<Price>,
    pub name_contains: Option<String>,
    pub sort: ItemSort,
    pub limit: Limit,
    pub skip: Skip,
}

impl ItemListQuery {
    pub fn parse(self) -> Result<ItemQuery, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut query = ItemQuery::default();
        if let Some(b) = self.brand {
            query.brand = errors.take(BrandName::parse("brand", &b));
        }
        if let Some(p) = self.min_price {
            query.min_price = errors.take(Price::parse_text("minPrice", &p));
        }
        if let Some(p) = self.max_price {
            query.max_price = errors.take(Price::parse_text("maxPrice", &p));
        }
        if let (Some(min), Some(max)) = (query.min_price, query.max_price)
            && min > max
        {
            errors.push("minPrice", "must not exceed maxPrice");
        }
        if let Some(q) = self.q {
            query.name_contains = errors.take(bounded_string("q", &q, 1, MAX_SEARCH_CHARS));
        }
        if let Some(s) = self.sort {
            query.sort = errors.take(ItemSort::parse(&s)).unwrap_or_default();
        }
        if let Some(l) = self.limit {
            query.limit = errors
                .take(Limit::parse_text("limit", &l))
                .unwrap_or_default();
        }
        if let Some(s) = self.skip {
            query.skip = errors
                .take(Skip::parse_text("skip", &s))
                .unwrap_or_default();
        }
        errors.finish(|| Some(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: serde_json::Value) -> Result<NewItem, FieldErrors> {
        serde_json::from_value::<CreateItemRequest>(json)
            .unwrap()
            .parse()
    }

    #[test]
    fn a_valid_item_parses() {
        let item = create(serde_json::json!({
            "name": "Anvil", "brand": "Acme", "price": 19.99, "tags": ["heavy", "heavy", "iron"]
        }))
        .unwrap();
        assert_eq!(item.price.cents(), 1999);
        assert_eq!(item.tags, ["heavy", "iron"]);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = create(serde_json::json!({
            "name": "", "price": -1, "tags": ["", "ok"]
        }))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "brand", "price", "tags[0]"]);
    }

    fn record(description: Option<&str>, tags: &[&str]) -> ItemRecord {
        ItemRecord {
            id: ObjectId::new(),
            name: "Anvil \"heavy\" é".into(),
            brand: "Acme".into(),
            price: 19.99,
            description: description.map(str::to_owned),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            created_by: Some(ObjectId::new()),
            created_at: bson::DateTime::from_millis(1_764_628_996_500),
            processed: true,
        }
    }

    #[test]
    fn a_view_read_from_stored_bytes_is_the_view_of_the_decoded_record() {
        for item in [record(Some("x"), &["a", "b"]), record(None, &[])] {
            let raw = bson::serialize_to_raw_document_buf(&item).unwrap();
            let direct = ItemView::from_raw(&raw).unwrap();
            let via_record = ItemView::from(keel::store::from_raw::<ItemRecord>(&raw).unwrap());
            assert_eq!(direct, via_record);
            assert_eq!(
                serde_json::to_string(&direct).unwrap(),
                serde_json::to_string(&serde_json::to_value(&via_record).unwrap()).unwrap()
            );
        }
    }

    #[test]
    fn stored_items_of_another_shape_are_errors_not_panics() {
        let oid = ObjectId::new();
        let now = bson::DateTime::now();
        let bad = [
            bson::doc! {"_id": oid, "name": "n", "brand": "b", "createdAt": now},
            bson::doc! {"_id": oid, "name": 5, "brand": "b", "price": 1, "createdAt": now},
            bson::doc! {"_id": "x", "name": "n", "brand": "b", "price": 1, "createdAt": now},
            bson::doc! {"_id": oid, "name": "n", "brand": "b", "price": 1, "createdAt": now, "tags": [1]},
        ];
        for document in bad {
            let raw = bson::RawDocumentBuf::try_from(&document).unwrap();
            assert!(ItemView::from_raw(&raw).is_err(), "{document}");
        }
        let ints = bson::doc! {"_id": oid, "name": "n", "brand": "b", "price": 7i64, "createdAt": now, "description": null, "extra": 1};
        let view = ItemView::from_raw(&bson::RawDocumentBuf::try_from(&ints).unwrap()).unwrap();
        assert_eq!(
            (view.price, view.description, view.tags.len()),
            (7.0, None, 0)
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed = serde_json::from_value::<CreateItemRequest>(serde_json::json!({
            "name": "x", "owner": "me"
        }));
        assert!(parsed.is_err());
    }

    #[test]
    fn list_query_collects_every_problem() {
        let raw = ItemListQuery {
            min_price: Some("abc".into()),
            sort: Some("password".into()),
            limit: Some("5000".into()),
            skip: Some("-2".into()),
            ..Default::default()
        };
        let errors = raw.parse().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["minPrice", "sort", "limit", "skip"]);
    }

    #[test]
    fn price_range_must_be_ordered() {
        let raw = ItemListQuery {
            min_price: Some("10".into()),
            max_price: Some("5".into()),
            ..Default::default()
        };
        assert!(raw.parse().is_err());
    }
}
