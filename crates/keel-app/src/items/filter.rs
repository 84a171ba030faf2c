//! The getData filter: the guides' `POST /api/getData {filter, limit}`, made safe.
//!
//! The guides pass `filter` straight into `$match` — a client could send `$where`, `$regex`
//! or `$expr` and make the database run its code. Here the filter is parsed into a typed
//! [`DataFilter`]: only whitelisted fields, only the operators `$eq $in $gt $gte $lt $lte`, only
//! values of the field's type. Everything else is a 400 naming the offending path. The
//! repository, not this module, turns the typed filter back into a store query.

use keel::validation::{FieldErrors, bounded_string, json_guard};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::paging::Limit;

/// A field a client may filter on, with its value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    Name,
    Brand,
    Price,
    Tags,
}

impl FilterField {
    pub const ALL: [FilterField; 4] = [Self::Name, Self::Brand, Self::Price, Self::Tags];

    pub fn key(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Brand => "brand",
            Self::Price => "price",
            Self::Tags => "tags",
        }
    }

    fn from_key(key: &str) -> Option<FilterField> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    fn is_numeric(self) -> bool {
        matches!(self, Self::Price)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    In,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl FilterOp {
    fn from_key(key: &str) -> Option<FilterOp> {
        Some(match key {
            "$eq" => Self::Eq,
            "$in" => Self::In,
            "$gt" => Self::Gt,
            "$gte" => Self::Gte,
            "$lt" => Self::Lt,
            "$lte" => Self::Lte,
            _ => return None,
        })
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Eq => "$eq",
            Self::In => "$in",
            Self::Gt => "$gt",
            Self::Gte => "$gte",
            Self::Lt => "$lt",
            Self::Lte => "$lte",
        }
    }
}

/// A scalar a filter compares against: text (length-capped) or a finite number.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    One(FilterValue),
    Many(Vec<FilterValue>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: FilterField,
    pub op: FilterOp,
    pub operand: Operand,
}

/// Conditions joined by AND, as MongoDB reads a filter document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFilter(pub Vec<Condition>);

pub const MAX_IN_VALUES: usize = 100;
pub const MAX_TEXT_CHARS: usize = 200;

/// `POST /api/getData` as it arrives.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDataRequest {
    /// `{field: value | {"$eq"|"$in"|"$gt"|"$gte"|"$lt"|"$lte": value}}` over
    /// `name`, `brand`, `price`, `tags`.
    #[schema(value_type = Option<Object>, example = json!({"price": {"$gte": 10, "$lt": 50}, "brand": "Acme"}))]
    pub filter: Option<Map<String, Value>>,
    /// Default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataQuery {
    pub filter: DataFilter,
    pub limit: Limit,
}

/// True for the only paths where a `$` key may appear in a getData body: `filter.<field>.$op`.
/// The guard lets them through; [`GetDataRequest::parse`] then checks the operator itself.
pub fn is_operator_position(path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    parts.len() == 3
        && parts[0] == "filter"
        && !parts[1].starts_with('$')
        && parts[2].starts_with('$')
}

/// Runs the JSON guard in its getData form: operator keys allowed only at operator positions.
pub fn guard(body: &Value) -> Result<(), FieldErrors> {
    json_guard::check_with_operators(body, &is_operator_position)
}

impl GetDataRequest {
    pub fn parse(self) -> Result<DataQuery, FieldErrors> {
        let mut errors = FieldErrors::new();
        let limit = match self.limit {
            Some(l) => errors.take(Limit::parse("limit", l)).unwrap_or_default(),
            None => Limit::default(),
        };
        let mut conditions = Vec::new();
        for (key, value) in self.filter.unwrap_or_default() {
            let path = format!("filter.{key}");
            let Some(field) = FilterField::from_key(&key) else {
                errors.push(path, "is not a filterable field (name, brand, price, tags)");
                continue;
            };
            parse_field(field, &path, &value, &mut conditions, &mut errors);
        }
        errors.finish(|| {
            Some(DataQuery {
                filter: DataFilter(conditions),
                limit,
            })
        })
    }
}

fn parse_field(
    field: FilterField,
    path: &str,
    value: &Value,
    conditions: &mut Vec<Condition>,
    errors: &mut FieldErrors,
) {
    let Value::Object(ops) = value else {
        if let Some(v) = errors.take(parse_value(field, path, value)) {
            conditions.push(Condition {
                field,
                op: FilterOp::Eq,
                operand: Operand::One(v),
            });
        }
        return;
    };
    if ops.is_empty() {
        errors.push(path, "must not be an empty object");
    }
    for (op_key, operand) in ops {
        let op_path = format!("{path}.{op_key}");
        let Some(op) = FilterOp::from_key(op_key) else {
            errors.push(
                op_path,
                "operator not allowed (use $eq, $in, $gt, $gte, $lt, $lte)",
            );
            continue;
        };
        let parsed = if op == FilterOp::In {
            parse_list(field, &op_path, operand).map(Operand::Many)
        } else {
            parse_value(field, &op_path, operand).map(Operand::One)
        };
        if let Some(operand) = errors.take(parsed) {
            conditions.push(Condition { field, op, operand });
        }
    }
}

fn parse_list(
    field: FilterField,
    path: &str,
    value: &Value,
) -> Result<Vec<FilterValue>, FieldErrors> {
    let Value::Array(items) = value else {
        return Err(FieldErrors::single(path, "must be an array"));
    };
    if items.len() > MAX_IN_VALUES {
        return Err(FieldErrors::single(
            path,
            format!("at most {MAX_IN_VALUES} values"),
        ));
    }
    let mut errors = FieldErrors::new();
    let values: Vec<_> = items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| errors.take(parse_value(field, &format!("{path}[{i}]"), v)))
        .collect();
    errors.finish(|| Some(values))
}

fn parse_value(field: FilterField, path: &str, value: &Value) -> Result<FilterValue, FieldErrors> {
    match value {
        Value::Number(n) if field.is_numeric() => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(FilterValue::Number)
            .ok_or_else(|| FieldErrors::single(path, "must be a finite number")),
        Value::String(s) if !field.is_numeric() => {
            bounded_string(path, s, 0, MAX_TEXT_CHARS).map(FilterValue::Text)
        }
        _ if field.is_numeric() => Err(FieldErrors::single(path, "must be a number")),
        _ => Err(FieldErrors::single(path, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<DataQuery, FieldErrors> {
        guard(&body)?;
        serde_json::from_value::<GetDataRequest>(body)
            .map_err(|e| FieldErrors::single("", e.to_string()))?
            .parse()
    }

    #[test]
    fn whitelisted_fields_and_operators_parse() {
        let q = parse(json!({
            "filter": {"price": {"$gte": 10, "$lt": 50}, "brand": "Acme", "tags": {"$in": ["a", "b"]}},
            "limit": 5
        }))
        .unwrap();
        assert_eq!(q.limit.get(), 5);
        assert_eq!(q.filter.0.len(), 4);
    }

    #[test]
    fn where_and_other_operators_are_refused() {
        for body in [
            json!({"filter": {"$where": "sleep(100)"}}),
            json!({"filter": {"name": {"$regex": ".*"}}}),
            json!({"filter": {"name": {"$ne": null}}}),
            json!({"filter": {"price": {"$gt": {"$expr": 1}}}}),
            json!({"filter": {"password": "x"}}),
            json!({"filter": {"a.b": 1}}),
            json!({"filter": {"price": "cheap"}}),
            json!({"filter": {"name": {"$in": "notalist"}}}),
            json!({"$where": "1"}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
    }

    #[test]
    fn every_bad_condition_is_reported() {
        let errors = parse(json!({
            "filter": {"password": "x", "price": {"$ne": 1, "$gt": "a"}}, "limit": 0
        }))
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors}");
    }

    #[test]
    fn operator_positions_are_exactly_filter_field_op() {
        assert!(is_operator_position("filter.price.$gt"));
        assert!(!is_operator_position("filter.$where"));
        assert!(!is_operator_position("$where"));
        assert!(!is_operator_position("filter.price.$gt.$x"));
    }
}
