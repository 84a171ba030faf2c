//! The `$group` stage: documents bucketed by an `_id` expression, each bucket folded by
//! accumulators (`$sum $avg $min $max $count $push $addToSet $first $last`).
//!
//! Groups are keyed by `encode_key` of the `_id` value, so `1` and `1.0` share a group as in
//! MongoDB; output groups come in order of first appearance (MongoDB leaves it unspecified).

use std::collections::HashMap;

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::compare::{compare_values, values_equal};
use super::expr::Expression;
use super::keyenc::encode_key;

#[derive(Debug, Clone)]
pub struct Group {
    id: Expression,
    accumulators: Vec<(String, Accumulator, Expression)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Accumulator {
    Sum,
    Avg,
    Min,
    Max,
    Push,
    AddToSet,
    First,
    Last,
}

/// The running state of one accumulator in one group.
#[derive(Debug, Clone)]
enum State {
    Sum(Total),
    Avg(Total, u64),
    Extreme(Option<Bson>),
    List(Vec<Bson>),
    First(Option<Bson>),
    Last(Option<Bson>),
}

/// A sum that stays an integer while it can (int32, widening to int64), as MongoDB's does.
#[derive(Debug, Clone, Copy)]
enum Total {
    Int(i64, bool),
    Float(f64),
}

impl Total {
    fn add(self, value: &Bson) -> Total {
        let int = match value {
            Bson::Int32(n) => Some((i64::from(*n), false)),
            Bson::Int64(n) => Some((*n, true)),
            _ => None,
        };
        let float = match value {
            Bson::Double(f) => Some(*f),
            Bson::Decimal128(d) => Some(super::compare::decimal_to_f64(d)),
            _ => None,
        };
        match (self, int, float) {
            (Total::Int(sum, wide), Some((n, is_wide)), _) => match sum.checked_add(n) {
                Some(s) => Total::Int(s, wide || is_wide),
                None => Total::Float(sum as f64 + n as f64),
            },
            (Total::Int(sum, _), None, Some(f)) => Total::Float(sum as f64 + f),
            (Total::Float(sum), Some((n, _)), _) => Total::Float(sum + n as f64),
            (Total::Float(sum), None, Some(f)) => Total::Float(sum + f),
            // Non-numbers are ignored, as MongoDB's $sum does.
            (total, None, None) => total,
        }
    }

    fn to_bson(self) -> Bson {
        match self {
            Total::Int(n, false) => i32::try_from(n).map_or(Bson::Int64(n), Bson::Int32),
            Total::Int(n, true) => Bson::Int64(n),
            Total::Float(f) => Bson::Double(f),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Total::Int(n, _) => n as f64,
            Total::Float(f) => f,
        }
    }
}

impl Group {
    pub fn parse(spec: &Bson) -> StoreResult<Group> {
        let Bson::Document(spec) = spec else {
            return Err(StoreError::invalid("$group needs a document"));
        };
        let id = spec
            .get("_id")
            .ok_or_else(|| StoreError::invalid("$group needs an _id (null for one group)"))?;
        let id = Expression::parse(id)?;
        let mut accumulators = Vec::new();
        for (name, value) in spec.iter().filter(|(name, _)| *name != "_id") {
            if name.contains('.') || name.starts_with('$') {
                return Err(StoreError::invalid(format!(
                    "$group output field '{name}' cannot contain '.' or start with '$'"
                )));
            }
            accumulators.push(parse_accumulator(name, value)?);
        }
        Ok(Group { id, accumulators })
    }

    pub fn run(&self, documents: Vec<Document>) -> Vec<Document> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Bson, Vec<State>)> = Vec::new();
        for document in &documents {
            let key = self.id.evaluate(document).unwrap_or(Bson::Null);
            let slot = *index.entry(encode_key(&key)).or_insert_with(|| {
                let states = self
                    .accumulators
                    .iter()
                    .map(|(_, a, _)| a.start())
                    .collect();
                groups.push((key, states));
                groups.len() - 1
            });
            let states = &mut groups[slot].1;
            for ((_, accumulator, expression), state) in self.accumulators.iter().zip(states) {
                accumulator.fold(state, expression.evaluate(document));
            }
        }
        groups
            .into_iter()
            .map(|(key, states)| {
                let mut out = Document::new();
                out.insert("_id", key);
                for ((name, _, _), state) in self.accumulators.iter().zip(states) {
                    out.insert(name.clone(), state.finish());
                }
                out
            })
            .collect()
    }
}

fn parse_accumulator(name: &str, value: &Bson) -> StoreResult<(String, Accumulator, Expression)> {
    let Bson::Document(d) = value else {
        return Err(StoreError::invalid(format!(
            "$group field '{name}' needs an accumulator document like {{$sum: 1}}"
        )));
    };
    if d.len() != 1 {
        return Err(StoreError::invalid(format!(
            "$group field '{name}' needs exactly one accumulator"
        )));
    }
    let Some((operator, argument)) = d.iter().next() else {
        return Err(StoreError::invalid(format!(
            "$group field '{name}' is empty"
        )));
    };
    let accumulator = match operator.as_str() {
        "$sum" => Accumulator::Sum,
        "$avg" => Accumulator::Avg,
        "$min" => Accumulator::Min,
        "$max" => Accumulator::Max,
        "$push" => Accumulator::Push,
        "$addToSet" => Accumulator::AddToSet,
        "$first" => Accumulator::First,
        "$last" => Accumulator::Last,
        "$count" => {
            if !matches!(argument, Bson::Document(a) if a.is_empty()) {
                return Err(StoreError::invalid("$count accumulator takes {}"));
            }
            return Ok((
                name.to_owned(),
                Accumulator::Sum,
                Expression::Literal(Bson::Int32(1)),
            ));
        }
        other => return Err(StoreError::unsupported(other)),
    };
    Ok((name.to_owned(), accumulator, Expression::parse(argument)?))
}

impl Accumulator {
    fn start(self) -> State {
        match self {
            Accumulator::Sum => State::Sum(Total::Int(0, false)),
            Accumulator::Avg => State::Avg(Total::Int(0, false), 0),
            Accumulator::Min | Accumulator::Max => State::Extreme(None),
            Accumulator::Push | Accumulator::AddToSet => State::List(Vec::new()),
            Accumulator::First => State::First(None),
            Accumulator::Last => State::Last(None),
        }
    }

    fn fold(self, state: &mut State, value: Option<Bson>) {
        match state {
            State::Sum(total) => {
                if let Some(v) = value {
                    *total = total.add(&v);
                }
            }
            State::Avg(total, count) => {
                if let Some(
                    v @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)),
                ) = value
                {
                    *total = total.add(&v);
                    *count += 1;
                }
            }
            State::Extreme(current) => {
                // $min/$max ignore null and missing values.
                let Some(v) = value.filter(|v| !matches!(v, Bson::Null | Bson::Undefined)) else {
                    return;
                };
                let replace = match current {
                    None => true,
                    Some(c) => {
                        let order = compare_values(&v, c);
                        if self == Accumulator::Min {
                            order.is_lt()
                        } else {
                            order.is_gt()
                        }
                    }
                };
                if replace {
                    *current = Some(v);
                }
            }
            State::List(items) => {
                if let Some(v) = value
                    && (self == Accumulator::Push || !items.iter().any(|i| values_equal(i, &v)))
                {
                    items.push(v);
                }
            }
            State::First(first) => {
                if first.is_none() {
                    *first = Some(value.unwrap_or(Bson::Null));
                }
            }
            State::Last(last) => *last = Some(value.unwrap_or(Bson::Null)),
        }
    }
}

impl State {
    fn finish(self) -> Bson {
        match self {
            State::Sum(total) => total.to_bson(),
            State::Avg(_, 0) => Bson::Null,
            State::Avg(total, count) => Bson::Double(total.as_f64() / count as f64),
            State::Extreme(value) | State::First(value) | State::Last(value) => {
                value.unwrap_or(Bson::Null)
            }
            State::List(items) => Bson::Array(items),
        }
    }
}
