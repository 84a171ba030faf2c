//! What a filter tells the planner and the upsert path: the `_id` it pins, the index range it
//! allows, the document an upsert starts from.
//!
//! Everything here is an *over-approximation* the backend narrows candidates with; the
//! matcher still decides every candidate. The one rule that must hold: every document the
//! filter matches has at least one index key inside what `index_scan` returns, given index
//! keys built as `path::index_keys` builds them (multikey, `Null` for missing).

use bson::{Bson, Document};

use super::compare::type_rank;
use super::filter::{CmpOp, Cond, Expr, Filter, InItem};

/// What an index on one field can contribute to a query: candidate keys, never the final say.
/// The backend scans these keys, then `Filter::matches` decides every candidate.
// Ranges are built once per query: their size does not matter, the shape is the contract.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum IndexScan {
    /// Exact keys (`$eq`, `$in`, `{field: value}`).
    Keys(Vec<Bson>),
    /// A range; bounds are `(value, inclusive)`. Within one type bracket, as MongoDB does.
    Range {
        lower: Option<(Bson, bool)>,
        upper: Option<(Bson, bool)>,
    },
}

/// Top-level conditions, with `$and` flattened: every one of them must hold.
fn and_ed(conditions: &[Expr]) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut stack: Vec<&Expr> = conditions.iter().rev().collect();
    while let Some(expr) = stack.pop() {
        match expr {
            Expr::And(inner) => stack.extend(inner.iter().rev()),
            other => out.push(other),
        }
    }
    out
}

/// The conditions and-ed on exactly `field`.
fn field_conditions<'a>(conditions: &'a [Expr], field: &str) -> Vec<&'a Cond> {
    and_ed(conditions)
        .into_iter()
        .filter_map(|e| match e {
            Expr::Field {
                path, conditions, ..
            } if path == field => Some(conditions),
            _ => None,
        })
        .flatten()
        .collect()
}

impl Filter {
    /// The `_id` this filter pins, if it is `{_id: v}` or `{_id: {$eq: v}}` (possibly and-ed).
    /// The backend fetches that one document and still runs `matches` on it.
    pub fn id_equality(&self) -> Option<&Bson> {
        field_conditions(&self.conditions, "_id")
            .into_iter()
            .find_map(|c| match c {
                Cond::Eq(value) => Some(value),
                _ => None,
            })
    }

    /// How an index on `field` can narrow this filter, when it can, assuming the index may be
    /// multikey (some document holds an array at `field`): only one condition is used, because
    /// with arrays `{$gt: 5, $lt: 10}` may be satisfied by two different elements.
    pub fn index_scan(&self, field: &str) -> Option<IndexScan> {
        self.index_scan_for(field, true)
    }

    /// As `index_scan`; when the backend knows no document holds an array at `field`
    /// (`multikey == false`), range conditions on the same bracket are intersected.
    pub fn index_scan_for(&self, field: &str, multikey: bool) -> Option<IndexScan> {
        scan_conditions(&self.conditions, field, multikey)
    }

    /// The field and the index scan whose keys are exactly this filter's matches, when the
    /// filter is one field's `{field: v}`, `{field: {$eq: v}}` or `{field: {$in: [v, …]}}` with
    /// plain values (numbers but NaN, strings, ObjectIds, booleans, dates, `null`), or range
    /// conditions (`$gt`, `$gte`, `$lt`, `$lte`) whose bounds are plain values of one type
    /// bracket (not `null`). Then, on an index on `field` that holds no arrays, the documents it
    /// matches are exactly those whose key lies in the scan: `encode_key` gives equal values
    /// equal bytes and orders them as `compare_values` does; a missing field is indexed as
    /// `null`, which `{field: null}` matches and no range does; NaN sorts below every number,
    /// outside every numeric range; a range stays within its bracket, as the matcher's
    /// comparisons do. So counting the scan's keys counts the matches.
    pub fn exact_scan(&self) -> Option<(&str, IndexScan)> {
        let [
            Expr::Field {
                path, conditions, ..
            },
        ] = and_ed(&self.conditions).as_slice()
        else {
            return None;
        };
        let plain = |value: &Bson| match value {
            Bson::Double(f) => !f.is_nan(),
            Bson::Int32(_)
            | Bson::Int64(_)
            | Bson::String(_)
            | Bson::ObjectId(_)
            | Bson::Boolean(_)
            | Bson::DateTime(_)
            | Bson::Null => true,
            _ => false,
        };
        let values: Vec<Bson> = match conditions.as_slice() {
            [Cond::Eq(value)] => vec![value.clone()],
            [Cond::In(items)] => items
                .iter()
                .map(|item| match item {
                    InItem::Value(value) => Some(value.clone()),
                    InItem::Regex(_) => None,
                })
                .collect::<Option<_>>()?,
            [Cond::Cmp(_, first), ..] => {
                let one_bracket = conditions.iter().all(|condition| {
                    matches!(condition, Cond::Cmp(_, bound)
                        if plain(bound)
                            && !matches!(bound, Bson::Null)
                            && type_rank(bound) == type_rank(first))
                });
                // Non-multikey: the conditions' ranges are intersected, as one value must
                // satisfy them all.
                return one_bracket
                    .then(|| field_scan(conditions, false))
                    .flatten()
                    .map(|scan| (path.as_str(), scan));
            }
            _ => return None,
        };
        values
            .iter()
            .all(plain)
            .then(|| (path.as_str(), IndexScan::Keys(values)))
    }

    /// The document an upsert starts from: the filter's equality conditions (`{f: v}`,
    /// `{f: {$eq: v}}`, and-ed), dotted paths expanded into embedded documents. Operators other
    /// than `$eq` contribute nothing, as in MongoDB.
    pub fn upsert_seed(&self) -> Document {
        let mut seed = Document::new();
        for expr in and_ed(&self.conditions) {
            if let Expr::Field {
                parts, conditions, ..
            } = expr
            {
                for condition in conditions {
                    if let Cond::Eq(value) = condition {
                        seed_path(&mut seed, parts, value.clone());
                    }
                }
            }
        }
        seed
    }
}

fn scan_conditions(conditions: &[Expr], field: &str, multikey: bool) -> Option<IndexScan> {
    let exprs = and_ed(conditions);
    let mut best_range: Option<IndexScan> = None;
    for expr in &exprs {
        let candidate = match expr {
            Expr::Field {
                path, conditions, ..
            } if path == field => field_scan(conditions, multikey),
            Expr::Or(branches) => or_scan(branches, field),
            _ => None,
        };
        match candidate {
            Some(keys @ IndexScan::Keys(_)) => return Some(keys),
            Some(range) if best_range.is_none() => best_range = Some(range),
            _ => {}
        }
    }
    best_range
}

/// `$or` narrows only when every branch narrows to exact keys on this field.
fn or_scan(branches: &[Expr], field: &str) -> Option<IndexScan> {
    let mut keys = Vec::new();
    for branch in branches {
        match scan_conditions(std::slice::from_ref(branch), field, true)? {
            IndexScan::Keys(k) => keys.extend(k),
            IndexScan::Range { .. } => return None,
        }
    }
    Some(IndexScan::Keys(keys))
}

fn field_scan(conditions: &[Cond], multikey: bool) -> Option<IndexScan> {
    let mut range: Option<(Bound, Bound, u8)> = None;
    for condition in conditions {
        match condition {
            Cond::Eq(value) => return Some(IndexScan::Keys(vec![value.clone()])),
            Cond::In(items) => {
                let values: Option<Vec<Bson>> = items
                    .iter()
                    .map(|i| match i {
                        InItem::Value(v) => Some(v.clone()),
                        InItem::Regex(_) => None,
                    })
                    .collect();
                if let Some(values) = values {
                    return Some(IndexScan::Keys(values));
                }
            }
            Cond::Cmp(op, bound) => {
                let Some((lower, upper)) = bracket_range(*op, bound) else {
                    continue;
                };
                let rank = type_rank(bound);
                range = match range {
                    None => Some((lower, upper, rank)),
                    Some((l, u, r)) if !multikey && r == rank => {
                        Some((tighter(l, lower, true), tighter(u, upper, false), r))
                    }
                    kept => kept,
                };
            }
            _ => {}
        }
    }
    range.map(|(lower, upper, _)| IndexScan::Range { lower, upper })
}

type Bound = Option<(Bson, bool)>;

fn tighter(current: Bound, new: Bound, is_lower: bool) -> Bound {
    use std::cmp::Ordering::*;
    match (current, new) {
        (None, b) | (b, None) => b,
        (Some(a), Some(b)) => {
            let order = super::compare_values(&a.0, &b.0);
            let keep_a = match order {
                Equal => !a.1,
                Greater => is_lower,
                Less => !is_lower,
            };
            Some(if keep_a { a } else { b })
        }
    }
}

/// The range `op bound` covers, closed at the edge of `bound`'s type bracket. `None` for
/// brackets the planner does not narrow (null, arrays, documents, regexes, binary, keys).
fn bracket_range(op: CmpOp, bound: &Bson) -> Option<(Bound, Bound)> {
    let (min, max) = bracket_edges(bound)?;
    let is_nan = matches!(bound, Bson::Double(f) if f.is_nan());
    if is_nan {
        // Only `$gte`/`$lte: NaN` match anything (NaN itself).
        return matches!(op, CmpOp::Gte | CmpOp::Lte)
            .then(|| (Some((bound.clone(), true)), Some((bound.clone(), true))));
    }
    Some(match op {
        CmpOp::Gt => (Some((bound.clone(), false)), Some(max)),
        CmpOp::Gte => (Some((bound.clone(), true)), Some(max)),
        CmpOp::Lt => (Some(min), Some((bound.clone(), false))),
        CmpOp::Lte => (Some(min), Some((bound.clone(), true))),
    })
}

/// The lowest and highest keys of the bracket `value` belongs to, as `(key, inclusive)`.
fn bracket_edges(value: &Bson) -> Option<((Bson, bool), (Bson, bool))> {
    use bson::{DateTime, Timestamp, oid::ObjectId};
    Some(match value {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => (
            (Bson::Double(f64::NEG_INFINITY), true),
            (Bson::Double(f64::INFINITY), true),
        ),
        Bson::String(_) | Bson::Symbol(_) => (
            (Bson::String(String::new()), true),
            (Bson::Document(Document::new()), false),
        ),
        Bson::ObjectId(_) => (
            (Bson::ObjectId(ObjectId::from_bytes([0; 12])), true),
            (Bson::ObjectId(ObjectId::from_bytes([0xff; 12])), true),
        ),
        Bson::Boolean(_) => ((Bson::Boolean(false), true), (Bson::Boolean(true), true)),
        Bson::DateTime(_) => (
            (Bson::DateTime(DateTime::MIN), true),
            (Bson::DateTime(DateTime::MAX), true),
        ),
        Bson::Timestamp(_) => (
            (
                Bson::Timestamp(Timestamp {
                    time: 0,
                    increment: 0,
                }),
                true,
            ),
            (
                Bson::Timestamp(Timestamp {
                    time: u32::MAX,
                    increment: u32::MAX,
                }),
                true,
            ),
        ),
        _ => return None,
    })
}

/// Sets `parts` in `seed`, creating embedded documents; a path that collides with a value
/// already seeded is skipped (the update or the matcher will report the conflict).
fn seed_path(seed: &mut Document, parts: &[String], value: Bson) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut current = seed;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| Bson::Document(Document::new()));
        match entry {
            Bson::Document(d) => current = d,
            _ => return,
        }
    }
    if !current.contains_key(last) {
        current.insert(last.clone(), value);
    }
}
