//! Update documents: `$set $unset $inc $mul $min $max $push $pull $addToSet $setOnInsert
//! $currentDate`, parsed once and applied to a document in place.
//!
//! Parsing checks everything that does not depend on the document: known operators, operand
//! shapes, paths that conflict with each other (`$set a` with `$inc a.b`), writes to `_id`
//! other than `$set`-ing the same value. Applying works on a copy and only replaces the
//! document when every operator succeeded, so a failed update never leaves half its changes.

use std::collections::HashSet;

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::filter::{Cond, Expr, is_operator_document, parse_operators, parse_path, parse_query};
use super::writepath;

/// A parsed update document (operators only).
#[derive(Debug, Clone)]
pub struct Update {
    operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
struct Operation {
    parts: Vec<String>,
    action: Action,
}

#[derive(Debug, Clone)]
enum Action {
    Set(Bson),
    SetOnInsert(Bson),
    Unset,
    Inc(Bson),
    Mul(Bson),
    Min(Bson),
    Max(Bson),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
    Pull(PullCondition),
    CurrentDate { as_timestamp: bool },
}

/// What `$pull` removes from an array.
#[derive(Debug, Clone)]
enum PullCondition {
    /// Elements equal to the value.
    Equal(Bson),
    /// Elements satisfying operators (`{$gte: 6}`).
    Operators(Vec<Cond>),
    /// Document elements matching a query (`{score: 8}`).
    Query(Vec<Expr>),
}

impl Update {
    pub fn parse(update: &Document) -> StoreResult<Update> {
        if update.is_empty() {
            return Err(StoreError::invalid("update document is empty"));
        }
        let mut operations = Vec::new();
        for (operator, fields) in update {
            if !operator.starts_with('$') {
                return Err(StoreError::invalid(format!(
                    "update documents hold operators only ('{operator}' is a field): \
                     replacing a whole document is not supported by update_one/update_many"
                )));
            }
            let Bson::Document(fields) = fields else {
                return Err(StoreError::invalid(format!("{operator} needs a document")));
            };
            for (path, operand) in fields {
                let parts = parse_path(path)?;
                let action = parse_action(operator, operand)?;
                let touches_id = parts[0] == "_id";
                let may_touch_id = matches!(action, Action::Set(_) | Action::SetOnInsert(_));
                if touches_id && !(may_touch_id && parts.len() == 1) {
                    return Err(StoreError::invalid(format!(
                        "{operator} on '{path}' would modify the immutable field '_id'"
                    )));
                }
                operations.push(Operation { parts, action });
            }
        }
        check_conflicts(&operations)?;
        Ok(Update { operations })
    }

    /// Applies the update in place. `is_insert` enables `$setOnInsert`; `now` feeds
    /// `$currentDate`. Returns whether the document changed. Changing `_id` is an error.
    pub fn apply(
        &self,
        document: &mut Document,
        is_insert: bool,
        now: bson::DateTime,
    ) -> StoreResult<bool> {
        let mut updated = document.clone();
        for operation in &self.operations {
            operation.apply(&mut updated, is_insert, now)?;
        }
        if !is_insert && updated.get("_id") != document.get("_id") {
            return Err(StoreError::invalid(
                "the update would modify the immutable field '_id'",
            ));
        }
        let changed = updated != *document;
        *document = updated;
        Ok(changed)
    }
}

fn parse_action(operator: &str, operand: &Bson) -> StoreResult<Action> {
    Ok(match operator {
        "$set" => Action::Set(operand.clone()),
        "$setOnInsert" => Action::SetOnInsert(operand.clone()),
        "$unset" => Action::Unset,
        "$inc" => Action::Inc(number_operand(operator, operand)?),
        "$mul" => Action::Mul(number_operand(operator, operand)?),
        "$min" => Action::Min(operand.clone()),
        "$max" => Action::Max(operand.clone()),
        "$push" => Action::Push(each_operand(operator, operand)?),
        "$addToSet" => Action::AddToSet(each_operand(operator, operand)?),
        "$pull" => Action::Pull(pull_operand(operand)?),
        "$currentDate" => Action::CurrentDate {
            as_timestamp: current_date_type(operand)?,
        },
        other => return Err(StoreError::unsupported(other)),
    })
}

fn number_operand(operator: &str, operand: &Bson) -> StoreResult<Bson> {
    match operand {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => Ok(operand.clone()),
        Bson::Decimal128(_) => Err(StoreError::unsupported(format!(
            "{operator} with a decimal128 operand"
        ))),
        other => Err(StoreError::invalid(format!(
            "{operator} needs a number, not {other}"
        ))),
    }
}

/// `$push`/`$addToSet` take a value or `{$each: [values]}`.
fn each_operand(operator: &str, operand: &Bson) -> StoreResult<Vec<Bson>> {
    let Bson::Document(d) = operand else {
        return Ok(vec![operand.clone()]);
    };
    if !is_operator_document(d) {
        return Ok(vec![operand.clone()]);
    }
    let mut values = None;
    for (key, value) in d {
        match (key.as_str(), value) {
            ("$each", Bson::Array(items)) => values = Some(items.clone()),
            ("$each", _) => {
                return Err(StoreError::invalid(format!(
                    "{operator}: $each needs an array"
                )));
            }
            (modifier @ ("$slice" | "$sort" | "$position"), _) => {
                return Err(StoreError::unsupported(format!("{operator} {modifier}")));
            }
            (other, _) => {
                return Err(StoreError::invalid(format!(
                    "{operator}: unknown modifier '{other}'"
                )));
            }
        }
    }
    values.ok_or_else(|| StoreError::invalid(format!("{operator}: modifiers need $each")))
}

fn pull_operand(operand: &Bson) -> StoreResult<PullCondition> {
    Ok(match operand {
        Bson::Document(d) if is_operator_document(d) => {
            PullCondition::Operators(parse_operators(d, 1)?)
        }
        Bson::Document(d) => PullCondition::Query(parse_query(d, 1)?),
        Bson::RegularExpression(r) => {
            PullCondition::Operators(vec![Cond::Regex(super::pattern::Pattern::from_bson(r)?)])
        }
        other => PullCondition::Equal(other.clone()),
    })
}

/// `true`, `{$type: "date"}` → a date; `{$type: "timestamp"}` → a timestamp.
fn current_date_type(operand: &Bson) -> StoreResult<bool> {
    match operand {
        Bson::Boolean(true) => Ok(false),
        Bson::Document(d) if d.len() == 1 => match d.get("$type") {
            Some(Bson::String(t)) if t == "date" => Ok(false),
            Some(Bson::String(t)) if t == "timestamp" => Ok(true),
            _ => Err(StoreError::invalid(
                "$currentDate needs true or {$type: \"date\" | \"timestamp\"}",
            )),
        },
        _ => Err(StoreError::invalid(
            "$currentDate needs true or {$type: \"date\" | \"timestamp\"}",
        )),
    }
}

/// Two operations on the same path, or on a path and its prefix, are refused (MongoDB's
/// "would create a conflict").
fn check_conflicts(operations: &[Operation]) -> StoreResult<()> {
    let paths: Vec<String> = operations.iter().map(|o| o.parts.join(".")).collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(paths.len());
    for path in &paths {
        if !seen.insert(path.as_str()) {
            return Err(conflict(path, path));
        }
    }
    for path in &paths {
        for (index, _) in path.match_indices('.') {
            let prefix = &path[..index];
            if seen.contains(prefix) {
                return Err(conflict(path, prefix));
            }
        }
    }
    Ok(())
}

fn conflict(path: &str, other: &str) -> StoreError {
    StoreError::invalid(format!(
        "updating the path '{path}' would create a conflict at '{other}'"
    ))
}

impl Operation {
    fn apply(
        &self,
        document: &mut Document,
        is_insert: bool,
        now: bson::DateTime,
    ) -> StoreResult<()> {
        let parts = &self.parts;
        match &self.action {
            Action::Set(value) => writepath::set(document, parts, value.clone()),
            Action::SetOnInsert(value) if is_insert => {
                writepath::set(document, parts, value.clone())
            }
            Action::SetOnInsert(_) => Ok(()),
            Action::Unset => {
                writepath::unset(document, parts);
                Ok(())
            }
            Action::CurrentDate { as_timestamp } => {
                let value = if *as_timestamp {
                    let seconds = now.timestamp_millis().div_euclid(1000);
                    Bson::Timestamp(bson::Timestamp {
                        time: u32::try_from(seconds).unwrap_or(0),
                        increment: 1,
                    })
                } else {
                    Bson::DateTime(now)
                };
                writepath::set(document, parts, value)
            }
            Action::Inc(delta) => writepath::modify(document, parts, |current| match current {
                None => Ok(delta.clone()),
                Some(value) => super::arith::add(value, delta, parts),
            }),
            Action::Mul(factor) => writepath::modify(document, parts, |current| match current {
                None => Ok(super::arith::zero_like(factor)),
                Some(value) => super::arith::multiply(value, factor, parts),
            }),
            Action::Min(bound) | Action::Max(bound) => {
                let keep_lower = matches!(self.action, Action::Min(_));
                writepath::modify(document, parts, |current| {
                    Ok(match current {
                        Some(value) => {
                            let order = super::compare_values(bound, value);
                            let replace = if keep_lower {
                                order.is_lt()
                            } else {
                                order.is_gt()
                            };
                            if replace {
                                bound.clone()
                            } else {
                                value.clone()
                            }
                        }
                        None => bound.clone(),
                    })
                })
            }
            Action::Push(values) => with_array(document, parts, "$push", |items| {
                items.extend(values.iter().cloned());
            }),
            Action::AddToSet(values) => with_array(document, parts, "$addToSet", |items| {
                for value in values {
                    if !items.iter().any(|i| super::values_equal(i, value)) {
                        items.push(value.clone());
                    }
                }
            }),
            Action::Pull(condition) => {
                let Some(current) = writepath::get(document, parts) else {
                    return Ok(());
                };
                let Bson::Array(items) = current else {
                    return Err(StoreError::invalid(format!(
                        "$pull on '{}' needs an array, found {current}",
                        parts.join(".")
                    )));
                };
                let kept: Vec<Bson> = items
                    .iter()
                    .filter(|item| !condition.removes(item))
                    .cloned()
                    .collect();
                writepath::set(document, parts, Bson::Array(kept))
            }
        }
    }
}

/// Runs `change` on the array at `parts`, creating it when missing.
fn with_array(
    document: &mut Document,
    parts: &[String],
    operator: &str,
    change: impl FnOnce(&mut Vec<Bson>),
) -> StoreResult<()> {
    writepath::modify(document, parts, |current| {
        let mut items = match current {
            None => Vec::new(),
            Some(Bson::Array(items)) => items.clone(),
            Some(other) => {
                return Err(StoreError::invalid(format!(
                    "{operator} on '{}' needs an array, found {other}",
                    parts.join(".")
                )));
            }
        };
        change(&mut items);
        Ok(Bson::Array(items))
    })
}

impl PullCondition {
    fn removes(&self, item: &Bson) -> bool {
        match self {
            PullCondition::Equal(value) => super::values_equal(item, value),
            PullCondition::Operators(conditions) => {
                let reached = super::path::Reached {
                    values: vec![item],
                    missing: false,
                };
                conditions.iter().all(|c| c.holds(&reached))
            }
            PullCondition::Query(query) => match item {
                Bson::Document(d) => query.iter().all(|e| e.matches(d)),
                _ => false,
            },
        }
    }
}
