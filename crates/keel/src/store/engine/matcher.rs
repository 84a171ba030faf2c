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

use bson::{Bson, Document};

use super::compare::{Number, compare_values, type_rank, values_equal};
use super::filter::{CmpOp, Cond, Expr, InItem};
use super::path::{Reached, resolve};

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
