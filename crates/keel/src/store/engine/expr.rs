//! Aggregation expressions: the part of MongoDB's expression language the pipeline supports —
//! field references (`"$a.b"`, `"$$ROOT"`), literals (`{$literal: v}` and plain values), and
//! documents and arrays built from them. Any expression operator (`$add`, `$cond`, …) is
//! refused as `Unsupported` naming it, never evaluated differently.
//!
//! Field references follow aggregation's path rules, which differ from the query language's:
//! `"$items.sku"` on an array of documents yields the array of their `sku` values (elements
//! without it are skipped) and numeric components are field names, not array indexes.

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::filter::parse_path;

/// Deepest nesting of documents and arrays inside one expression.
const MAX_EXPRESSION_DEPTH: usize = 100;

#[derive(Debug, Clone)]
pub enum Expression {
    Literal(Bson),
    /// A field of the current document (`"$a.b"`).
    Field(Vec<String>),
    /// The whole current document (`"$$ROOT"`, `"$$CURRENT"`).
    Root,
    Object(Vec<(String, Expression)>),
    Array(Vec<Expression>),
}

impl Expression {
    pub fn parse(value: &Bson) -> StoreResult<Expression> {
        parse(value, 0)
    }

    /// The value, or `None` when it refers to a missing field.
    pub fn evaluate(&self, document: &Document) -> Option<Bson> {
        match self {
            Expression::Literal(value) => Some(value.clone()),
            Expression::Root => Some(Bson::Document(document.clone())),
            Expression::Field(parts) => {
                let (first, rest) = parts.split_first()?;
                field_path(document.get(first)?, rest)
            }
            Expression::Object(fields) => Some(Bson::Document(
                fields
                    .iter()
                    .filter_map(|(name, e)| e.evaluate(document).map(|v| (name.clone(), v)))
                    .collect(),
            )),
            Expression::Array(items) => Some(Bson::Array(
                items
                    .iter()
                    .map(|e| e.evaluate(document).unwrap_or(Bson::Null))
                    .collect(),
            )),
        }
    }
}

fn parse(value: &Bson, depth: usize) -> StoreResult<Expression> {
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(StoreError::invalid(format!(
            "expression nests deeper than {MAX_EXPRESSION_DEPTH} levels"
        )));
    }
    match value {
        Bson::String(s) if s.starts_with("$$") => parse_variable(s),
        Bson::String(s) if s.starts_with('$') => {
            if s.len() == 1 {
                return Err(StoreError::invalid("'$' is not a valid field reference"));
            }
            Ok(Expression::Field(parse_path(&s[1..])?))
        }
        Bson::Document(d) => match d.keys().next() {
            Some(first) if first.starts_with('$') => {
                if first == "$literal" && d.len() == 1 {
                    Ok(Expression::Literal(
                        d.get(first).cloned().unwrap_or(Bson::Null),
                    ))
                } else {
                    Err(StoreError::unsupported(first.clone()))
                }
            }
            _ => {
                let mut fields = Vec::with_capacity(d.len());
                for (name, item) in d {
                    if name.contains('.') || name.is_empty() {
                        return Err(StoreError::invalid(format!(
                            "'{name}' is not a valid field name in an expression"
                        )));
                    }
                    fields.push((name.clone(), parse(item, depth + 1)?));
                }
                Ok(Expression::Object(fields))
            }
        },
        Bson::Array(items) => Ok(Expression::Array(
            items
                .iter()
                .map(|i| parse(i, depth + 1))
                .collect::<StoreResult<_>>()?,
        )),
        other => Ok(Expression::Literal(other.clone())),
    }
}

fn parse_variable(reference: &str) -> StoreResult<Expression> {
    let body = &reference[2..];
    let (name, path) = match body.split_once('.') {
        Some((name, path)) => (name, Some(path)),
        None => (body, None),
    };
    if name != "ROOT" && name != "CURRENT" {
        return Err(StoreError::unsupported(format!("variable $${name}")));
    }
    match path {
        None => Ok(Expression::Root),
        Some(path) => Ok(Expression::Field(parse_path(path)?)),
    }
}

/// Aggregation's path walk: arrays map over their elements, skipping those without a value.
fn field_path(value: &Bson, parts: &[String]) -> Option<Bson> {
    let Some((first, rest)) = parts.split_first() else {
        return Some(value.clone());
    };
    match value {
        Bson::Document(d) => field_path(d.get(first)?, rest),
        Bson::Array(items) => Some(Bson::Array(
            items
                .iter()
                .filter(|i| matches!(i, Bson::Document(_) | Bson::Array(_)))
                .filter_map(|i| field_path(i, parts))
                .collect(),
        )),
        _ => None,
    }
}

/// Sets `value` at a dotted path, creating (or overwriting non-document) parents, as
/// `$addFields` does.
pub fn set_field(document: &mut Document, parts: &[String], value: Bson) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        document.insert(first.clone(), value);
        return;
    }
    let entry = document
        .entry(first.clone())
        .or_insert_with(|| Bson::Document(Document::new()));
    if !matches!(entry, Bson::Document(_)) {
        *entry = Bson::Document(Document::new());
    }
    if let Bson::Document(inner) = entry {
        set_field(inner, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use bson::{bson, doc};

    use super::*;

    fn eval(expression: Bson, document: Document) -> Option<Bson> {
        Expression::parse(&expression).unwrap().evaluate(&document)
    }

    #[test]
    fn field_references_walk_documents_and_map_arrays() {
        let d = doc! {"a": {"b": 1}, "items": [{"sku": "x"}, {"n": 1}, 5, {"sku": "y"}]};
        assert_eq!(eval(bson!("$a.b"), d.clone()), Some(bson!(1)));
        assert_eq!(
            eval(bson!("$items.sku"), d.clone()),
            Some(bson!(["x", "y"]))
        );
        assert_eq!(eval(bson!("$nope"), d.clone()), None);
        assert_eq!(eval(bson!("$$ROOT.a"), d.clone()), Some(bson!({"b": 1})));
    }

    #[test]
    fn objects_arrays_and_literals() {
        let d = doc! {"x": 1};
        assert_eq!(
            eval(
                bson!({"k": "$x", "gone": "$nope", "lit": "text"}),
                d.clone()
            ),
            Some(bson!({"k": 1, "lit": "text"}))
        );
        assert_eq!(
            eval(bson!(["$x", "$nope"]), d.clone()),
            Some(bson!([1, null]))
        );
        assert_eq!(eval(bson!({"$literal": "$x"}), d), Some(bson!("$x")));
    }

    #[test]
    fn operators_and_unknown_variables_are_unsupported() {
        for e in [bson!({"$add": [1, 2]}), bson!("$$NOW")] {
            assert!(matches!(
                Expression::parse(&e),
                Err(StoreError::Unsupported { .. })
            ));
        }
    }
}
