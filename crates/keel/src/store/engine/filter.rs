//! Filters: parsing MongoDB's query documents into a tree the matcher walks.
//!
//! Parsing is where hostile input is stopped: every operator is known or refused
//! (`Unsupported` naming it), shapes are checked (`InvalidQuery`), regexes are compiled once
//! with size limits, and nesting is capped so matching can recurse safely.

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::pattern::Pattern;

/// Deepest nesting of `$and`/`$or`/`$nor`/`$not`/`$elemMatch` a filter may have.
pub const MAX_FILTER_DEPTH: usize = 100;

/// Most components a dotted path may have (paths are walked recursively).
pub const MAX_PATH_COMPONENTS: usize = 100;

/// A parsed filter. Parsing rejects unknown operators with `Unsupported` and malformed ones
/// with `InvalidQuery`.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Top-level conditions, all of which must hold.
    pub(super) conditions: Vec<Expr>,
}

/// One node of a filter.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Nor(Vec<Expr>),
    /// Conditions on the values a dotted path reaches; all must hold.
    Field {
        path: String,
        parts: Vec<String>,
        conditions: Vec<Cond>,
    },
}

/// A condition on the values at one path.
#[derive(Debug, Clone)]
pub(super) enum Cond {
    Eq(Bson),
    Ne(Bson),
    Cmp(CmpOp, Bson),
    In(Vec<InItem>),
    Nin(Vec<InItem>),
    Exists(bool),
    Regex(Pattern),
    Not(Vec<Cond>),
    /// `$elemMatch` with a query on the elements' fields.
    ElemMatchDocument(Vec<Expr>),
    /// `$elemMatch` with operators applied to each element itself.
    ElemMatchValue(Vec<Cond>),
    Size(usize),
    All(Vec<InItem>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// An element of `$in`/`$nin`/`$all`: a value, or a regex that matches strings.
#[derive(Debug, Clone)]
pub(super) enum InItem {
    Value(Bson),
    Regex(Pattern),
}

impl Filter {
    pub fn parse(filter: &Document) -> StoreResult<Filter> {
        Ok(Filter {
            conditions: parse_query(filter, 0)?,
        })
    }

    /// True when the filter has no conditions (it matches every document).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    pub fn matches(&self, document: &Document) -> bool {
        self.conditions.iter().all(|e| e.matches(document))
    }
}

fn too_deep() -> StoreError {
    StoreError::invalid(format!(
        "filter nests deeper than {MAX_FILTER_DEPTH} levels"
    ))
}

/// A query document: implicit `$and` of its fields and logical operators.
pub(super) fn parse_query(filter: &Document, depth: usize) -> StoreResult<Vec<Expr>> {
    if depth > MAX_FILTER_DEPTH {
        return Err(too_deep());
    }
    let mut conditions = Vec::with_capacity(filter.len());
    for (key, value) in filter {
        if let Some(operator) = key.strip_prefix('$') {
            match operator {
                "and" => conditions.push(Expr::And(parse_branches(key, value, depth)?)),
                "or" => conditions.push(Expr::Or(parse_branches(key, value, depth)?)),
                "nor" => conditions.push(Expr::Nor(parse_branches(key, value, depth)?)),
                "comment" => {}
                _ => return Err(StoreError::unsupported(key.clone())),
            }
        } else {
            conditions.push(parse_field(key, value, depth)?);
        }
    }
    Ok(conditions)
}

fn parse_branches(key: &str, value: &Bson, depth: usize) -> StoreResult<Vec<Expr>> {
    let Bson::Array(items) = value else {
        return Err(StoreError::invalid(format!("{key} needs an array")));
    };
    if items.is_empty() {
        return Err(StoreError::invalid(format!(
            "{key} needs a non-empty array"
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Bson::Document(d) => Ok(Expr::And(parse_query(d, depth + 1)?)),
            _ => Err(StoreError::invalid(format!(
                "{key} entries must be documents"
            ))),
        })
        .collect()
}

/// Checks a dotted path and splits it.
pub(super) fn parse_path(path: &str) -> StoreResult<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.len() > MAX_PATH_COMPONENTS {
        return Err(StoreError::invalid(format!(
            "field path has more than {MAX_PATH_COMPONENTS} components"
        )));
    }
    if parts.iter().any(String::is_empty) {
        return Err(StoreError::invalid(format!(
            "field path '{path}' has an empty component"
        )));
    }
    if let Some(part) = parts.iter().find(|p| p.starts_with('$')) {
        return Err(StoreError::unsupported(format!(
            "positional or $-prefixed path component '{part}' in '{path}'"
        )));
    }
    Ok(parts)
}

fn parse_field(path: &str, value: &Bson, depth: usize) -> StoreResult<Expr> {
    let parts = parse_path(path)?;
    let conditions = match value {
        Bson::Document(d) if is_operator_document(d) => parse_operators(d, depth)?,
        Bson::RegularExpression(r) => vec![Cond::Regex(Pattern::from_bson(r)?)],
        other => vec![Cond::Eq(other.clone())],
    };
    Ok(Expr::Field {
        path: path.to_owned(),
        parts,
        conditions,
    })
}

/// A document whose first key starts with `$` holds operators; otherwise it is a literal
/// (MongoDB's rule).
pub(super) fn is_operator_document(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// `{$gt: 1, $lt: 5}`: every key must be an operator.
pub(super) fn parse_operators(ops: &Document, depth: usize) -> StoreResult<Vec<Cond>> {
    if depth > MAX_FILTER_DEPTH {
        return Err(too_deep());
    }
    let mut conditions = Vec::with_capacity(ops.len());
    let regex_options = match ops.get("$options") {
        None => None,
        Some(Bson::String(o)) if ops.contains_key("$regex") => Some(o.as_str()),
        Some(Bson::String(_)) => return Err(StoreError::invalid("$options needs a $regex")),
        Some(_) => return Err(StoreError::invalid("$options must be a string")),
    };
    for (key, value) in ops {
        let condition = match key.as_str() {
            "$eq" => Cond::Eq(value.clone()),
            "$ne" => Cond::Ne(value.clone()),
            "$gt" => Cond::Cmp(CmpOp::Gt, value.clone()),
            "$gte" => Cond::Cmp(CmpOp::Gte, value.clone()),
            "$lt" => Cond::Cmp(CmpOp::Lt, value.clone()),
            "$lte" => Cond::Cmp(CmpOp::Lte, value.clone()),
            "$in" => Cond::In(parse_items(key, value)?),
            "$nin" => Cond::Nin(parse_items(key, value)?),
            "$all" => Cond::All(parse_items(key, value)?),
            "$exists" => Cond::Exists(truthy(value)),
            "$size" => Cond::Size(parse_size(value)?),
            "$regex" => Cond::Regex(parse_regex(value, regex_options)?),
            "$options" => continue,
            "$not" => Cond::Not(parse_not(value, depth)?),
            "$elemMatch" => parse_elem_match(value, depth)?,
            other if other.starts_with('$') => return Err(StoreError::unsupported(other)),
            other => {
                return Err(StoreError::invalid(format!(
                    "'{other}' mixed with operators: a condition document holds operators only"
                )));
            }
        };
        conditions.push(condition);
    }
    Ok(conditions)
}

fn parse_items(key: &str, value: &Bson) -> StoreResult<Vec<InItem>> {
    let Bson::Array(items) = value else {
        return Err(StoreError::invalid(format!("{key} needs an array")));
    };
    items
        .iter()
        .map(|item| match item {
            Bson::RegularExpression(r) => Ok(InItem::Regex(Pattern::from_bson(r)?)),
            Bson::Document(d) if is_operator_document(d) => Err(StoreError::invalid(format!(
                "{key} cannot hold operator documents"
            ))),
            other => Ok(InItem::Value(other.clone())),
        })
        .collect()
}

fn parse_size(value: &Bson) -> StoreResult<usize> {
    let size = match value {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => *f as i64,
        _ => return Err(StoreError::invalid("$size needs a whole number")),
    };
    usize::try_from(size).map_err(|_| StoreError::invalid("$size cannot be negative"))
}

fn parse_regex(value: &Bson, options: Option<&str>) -> StoreResult<Pattern> {
    match value {
        Bson::String(source) => Pattern::compile(source, options.unwrap_or("")),
        Bson::RegularExpression(r) => match options {
            Some(o) if !r.options.as_str().is_empty() && !o.is_empty() => Err(StoreError::invalid(
                "$options given both in the regex and in $options",
            )),
            Some(o) if !o.is_empty() => Pattern::compile(r.pattern.as_str(), o),
            _ => Pattern::from_bson(r),
        },
        _ => Err(StoreError::invalid("$regex needs a string or a regex")),
    }
}

fn parse_not(value: &Bson, depth: usize) -> StoreResult<Vec<Cond>> {
    match value {
        Bson::RegularExpression(r) => Ok(vec![Cond::Regex(Pattern::from_bson(r)?)]),
        Bson::Document(d) if is_operator_document(d) => parse_operators(d, depth + 1),
        _ => Err(StoreError::invalid(
            "$not needs a regex or a document of operators",
        )),
    }
}

fn parse_elem_match(value: &Bson, depth: usize) -> StoreResult<Cond> {
    let Bson::Document(d) = value else {
        return Err(StoreError::invalid("$elemMatch needs a document"));
    };
    let is_value_form = d
        .keys()
        .next()
        .is_some_and(|k| k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor"));
    if is_value_form {
        Ok(Cond::ElemMatchValue(parse_operators(d, depth + 1)?))
    } else {
        Ok(Cond::ElemMatchDocument(parse_query(d, depth + 1)?))
    }
}

/// MongoDB's truthiness for flags such as `$exists`.
pub(super) fn truthy(value: &Bson) -> bool {
    match value {
        Bson::Boolean(b) => *b,
        Bson::Int32(n) => *n != 0,
        Bson::Int64(n) => *n != 0,
        Bson::Double(f) => *f != 0.0,
        Bson::Null | Bson::Undefined => false,
        _ => true,
    }
}
