//! Deciding whether a document matches a parsed filter, with MongoDB's semantics:
//!
//! - a condition holds when *some* value the path reaches satisfies it, and an array reached
//!   is tested both as a whole and element by element (`{tags: "x"}` matches `["x", "y"]`);
//! - a missing field behaves as `null` for equality (`{f: null}` matches a missing `f`);
//! - range operators only compare within one type bracket (`{$gt: 5}` never matches a string),
//!   and NaN is only ever equal to NaN;
//! - `$ne`, `$nin` and `$not` are the negation of `$eq`, `$in` and their operand, so
//!   `{tags: {$ne: "x"}}` rejects any array containing "x".
//!
//! Recursion follows the filter's structure only, whose depth parsing has capped.

use std::cmp::Ordering;

use bson::{Bson, Document, RawBsonRef, RawDocument};

use super::compare::{Number, compare_values, type_rank, values_equal};
use super::filter::{CmpOp, Cond, Expr, Filter, InItem};
use super::path::{Reached, resolve};

/// The most top-level fields `Filter::matches_raw` looks up in one pass.
const RAW_FIELDS: usize = 8;

impl Filter {
    /// `matches` read from a stored document's bytes without building the document, when
    /// every condition is on a top-level field (`{price: {$gte: 10, $lte: 200}}`, `{brand:
    /// "Acme"}`, `{processed: {$exists: false}}`): one pass over the fields, and only the
    /// values those conditions name are decoded. A top-level path reaches the field's value or
    /// nothing (missing), exactly what `resolve` finds there, and the same `Cond::holds`
    /// decides. `None` when it cannot tell — a dotted path, a logical operator, more than
    /// `RAW_FIELDS` conditions, a field stored twice (a decoded document keeps one of them),
    /// bytes that do not parse — and then the caller decodes the document and asks `matches`.
    pub fn matches_raw(&self, document: &RawDocument) -> Option<bool> {
        let exprs = &self.conditions;
        if exprs.len() > RAW_FIELDS {
            return None;
        }
        let mut fields: [(&str, &[Cond]); RAW_FIELDS] = [("", &[]); RAW_FIELDS];
        for (field, expr) in fields.iter_mut().zip(exprs) {
            match expr {
                Expr::Field {
                    parts, conditions, ..
                } if parts.len() == 1 => *field = (&parts[0], conditions),
                _ => return None,
            }
        }
        let fields = &fields[..exprs.len()];
        let mut found: [Option<RawBsonRef<'_>>; RAW_FIELDS] = [None; RAW_FIELDS];
        for element in document {
            let (key, value) = element.ok()?;
            for ((name, _), slot) in fields.iter().zip(found.iter_mut()) {
                if *name == key.as_str() {
                    if slot.is_some() {
                        return None;
                    }
                    *slot = Some(value);
                }
            }
        }
        for ((_, conditions), value) in fields.iter().zip(found) {
            let value = match value {
                Some(raw) => Some(Bson::try_from(raw).ok()?),
                None => None,
            };
            let reached = Reached {
                values: value.iter().collect(),
                missing: value.is_none(),
            };
            if !conditions.iter().all(|c| c.holds(&reached)) {
                return Some(false);
            }
        }
        Some(true)
    }
}

impl Expr {
    pub(super) fn matches(&self, document: &Document) -> bool {
        match self {
            Expr::And(all) => all.iter().all(|e| e.matches(document)),
            Expr::Or(any) => any.iter().any(|e| e.matches(document)),
            Expr::Nor(none) => !none.iter().any(|e| e.matches(document)),
            Expr::Field {
                parts, conditions, ..
            } => {
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let reached = resolve(document, &parts);
                conditions.iter().all(|c| c.holds(&reached))
            }
        }
    }
}

impl Cond {
    /// Whether the condition holds for what a path reached in one document.
    pub(super) fn holds(&self, reached: &Reached<'_>) -> bool {
        match self {
            Cond::Eq(value) => equals(reached, value),
            Cond::Ne(value) => !equals(reached, value),
            Cond::Cmp(op, bound) => compares(reached, *op, bound),
            Cond::In(items) => items.iter().any(|item| item_holds(reached, item)),
            Cond::Nin(items) => !items.iter().any(|item| item_holds(reached, item)),
            Cond::All(items) => {
                !items.is_empty() && items.iter().all(|item| item_holds(reached, item))
            }
            Cond::Exists(expected) => reached.values.is_empty() != *expected,
            Cond::Regex(pattern) => reached.leaves().any(|v| pattern.matches(v)),
            Cond::Not(conditions) => !conditions.iter().all(|c| c.holds(reached)),
            Cond::Size(size) => reached
                .values
                .iter()
                .any(|v| matches!(v, Bson::Array(items) if items.len() == *size)),
            Cond::ElemMatchDocument(query) => arrays(reached).any(|element| match element {
                Bson::Document(d) => query.iter().all(|e| e.matches(d)),
                _ => false,
            }),
            Cond::ElemMatchValue(conditions) => arrays(reached).any(|element| {
                let single = Reached {
                    values: vec![element],
                    missing: false,
                };
                conditions.iter().all(|c| c.holds(&single))
            }),
        }
    }
}

/// Elements of every array the path reached.
fn arrays<'a>(reached: &'a Reached<'a>) -> impl Iterator<Item = &'a Bson> + 'a {
    reached.values.iter().flat_map(|v| match v {
        Bson::Array(items) => items.as_slice(),
        _ => &[],
    })
}

fn is_nullish(value: &Bson) -> bool {
    matches!(value, Bson::Null | Bson::Undefined)
}

fn equals(reached: &Reached<'_>, value: &Bson) -> bool {
    if is_nullish(value) && reached.missing {
        return true;
    }
    reached.leaves().any(|leaf| values_equal(leaf, value))
}

fn item_holds(reached: &Reached<'_>, item: &InItem) -> bool {
    match item {
        InItem::Value(value) => equals(reached, value),
        InItem::Regex(pattern) => reached.leaves().any(|v| pattern.matches(v)),
    }
}

fn compares(reached: &Reached<'_>, op: CmpOp, bound: &Bson) -> bool {
    // `$gte: null` / `$lte: null` are equality with null (missing included); nothing is
    // strictly above or below null within its bracket.
    if is_nullish(bound) {
        return matches!(op, CmpOp::Gte | CmpOp::Lte) && equals(reached, bound);
    }
    reached
        .leaves()
        .any(|leaf| compare_in_bracket(leaf, op, bound))
}

/// One value against a bound, only when both are in the same type bracket.
pub(super) fn compare_in_bracket(value: &Bson, op: CmpOp, bound: &Bson) -> bool {
    if type_rank(value) != type_rank(bound) {
        return false;
    }
    let value_nan = Number::of(value).is_some_and(Number::is_nan);
    let bound_nan = Number::of(bound).is_some_and(Number::is_nan);
    if value_nan || bound_nan {
        // NaN is equal to NaN and unordered against every other number.
        return value_nan && bound_nan && matches!(op, CmpOp::Gte | CmpOp::Lte);
    }
    let order = compare_values(value, bound);
    match op {
        CmpOp::Gt => order == Ordering::Greater,
        CmpOp::Gte => order != Ordering::Less,
        CmpOp::Lt => order == Ordering::Less,
        CmpOp::Lte => order != Ordering::Greater,
    }
}
