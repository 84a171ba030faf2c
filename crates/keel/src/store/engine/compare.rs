//! MongoDB's total order over BSON values.
//!
//! Every comparison the engine makes (range operators, sort, `$min`/`$max`, grouping, index
//! keys) goes through `compare_values`, so "is 1 equal to 1.0?" and "does a string sort after a
//! number?" are answered in exactly one place. Values of different types compare by their type
//! bracket first; numbers of any width compare by value, exactly (no rounding through `f64`
//! for integers).

use std::cmp::Ordering;

use bson::{Bson, Document};

/// The type bracket of a value, in MongoDB's canonical order. `Null`, `Undefined` and a
/// missing field share a bracket; all number types share one; `Symbol` and `String` share one.
pub fn type_rank(value: &Bson) -> u8 {
    match value {
        Bson::MinKey => 1,
        Bson::Null | Bson::Undefined => 2,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 3,
        Bson::String(_) | Bson::Symbol(_) => 4,
        Bson::Document(_) => 5,
        Bson::Array(_) => 6,
        Bson::Binary(_) => 7,
        Bson::ObjectId(_) => 8,
        Bson::Boolean(_) => 9,
        Bson::DateTime(_) => 10,
        Bson::Timestamp(_) => 11,
        Bson::RegularExpression(_) => 12,
        Bson::DbPointer(_) => 13,
        Bson::JavaScriptCode(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::MaxKey => 16,
    }
}

/// A number reduced to what comparison needs: an exact integer or a float.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn of(value: &Bson) -> Option<Number> {
        match value {
            Bson::Int32(i) => Some(Number::Int(i64::from(*i))),
            Bson::Int64(i) => Some(Number::Int(*i)),
            Bson::Double(f) => Some(Number::Float(*f)),
            Bson::Decimal128(d) => Some(Number::Float(decimal_to_f64(d))),
            _ => None,
        }
    }

    pub(crate) fn is_nan(self) -> bool {
        matches!(self, Number::Float(f) if f.is_nan())
    }
}

/// Decimal128 is compared through its nearest `f64` (a documented deviation: MongoDB compares
/// decimals exactly). The bson crate renders decimals as text; an unparsable rendering
/// (it should not happen) becomes NaN, the lowest number.
pub(crate) fn decimal_to_f64(d: &bson::Decimal128) -> f64 {
    let text = d.to_string();
    match text.as_str() {
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => text.parse().unwrap_or(f64::NAN),
    }
}

/// Compares two numbers exactly. NaN equals NaN and is below every other number.
pub(crate) fn compare_numbers(a: Number, b: Number) -> Ordering {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x.cmp(&y),
        (Number::Float(x), Number::Float(y)) => compare_floats(x, y),
        (Number::Int(x), Number::Float(y)) => compare_int_float(x, y),
        (Number::Float(x), Number::Int(y)) => compare_int_float(y, x).reverse(),
    }
}

fn compare_floats(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // Neither is NaN, so partial_cmp is total here (and -0.0 == 0.0, as in MongoDB).
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// An i64 against an f64 without losing precision for integers beyond 2^53.
fn compare_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // 2^63 is exactly representable; every i64 is below it.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_POW_63 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    // `floor` is integral and within [-2^63, 2^63), so the cast is exact.
    let whole = floor as i64;
    match i.cmp(&whole) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

/// MongoDB's comparison of two values: type bracket, then value within the bracket.
pub fn compare_values(a: &Bson, b: &Bson) -> Ordering {
    let (rank_a, rank_b) = (type_rank(a), type_rank(b));
    if rank_a != rank_b {
        return rank_a.cmp(&rank_b);
    }
    match (a, b) {
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => x.cmp(y),
        (Bson::Document(x), Bson::Document(y)) => compare_documents(x, y),
        (Bson::Array(x), Bson::Array(y)) => compare_arrays(x, y),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_str()
            .cmp(y.pattern.as_str())
            .then_with(|| x.options.as_str().cmp(y.options.as_str())),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x
            .code
            .cmp(&y.code)
            .then_with(|| compare_documents(&x.scope, &y.scope)),
        _ => match (Number::of(a), Number::of(b)) {
            (Some(x), Some(y)) => compare_numbers(x, y),
            // MinKey, MaxKey, null/undefined and DBPointer: all members of the bracket are equal.
            _ => Ordering::Equal,
        },
    }
}

/// Field by field: each pair by type bracket, then field name, then value; a prefix is smaller.
pub fn compare_documents(a: &Document, b: &Document) -> Ordering {
    let mut left = a.iter();
    let mut right = b.iter();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let order = type_rank(va)
                    .cmp(&type_rank(vb))
                    .then_with(|| ka.cmp(kb))
                    .then_with(|| compare_values(va, vb));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Element by element; a prefix is smaller.
pub fn compare_arrays(a: &[Bson], b: &[Bson]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = compare_values(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// True when two values are equal under MongoDB's comparison (so `1 == 1.0`).
pub fn values_equal(a: &Bson, b: &Bson) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// How deeply documents and arrays nest inside `document` (a flat document is 1). Iterative,
/// so it is safe on any input; callers reject documents deeper than they can recurse into.
pub fn nesting_depth(document: &Document) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Bson, usize)> = document.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        match value {
            Bson::Document(d) => {
                deepest = deepest.max(depth);
                stack.extend(d.values().map(|v| (v, depth + 1)));
            }
            Bson::Array(a) => {
                deepest = deepest.max(depth);
                stack.extend(a.iter().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use bson::{doc, oid::ObjectId};

    use super::*;

    fn less(a: Bson, b: Bson) {
        assert_eq!(compare_values(&a, &b), Ordering::Less, "{a:?} < {b:?}");
        assert_eq!(compare_values(&b, &a), Ordering::Greater, "{b:?} > {a:?}");
    }

    #[test]
    fn type_brackets_follow_mongodb_order() {
        let ordered = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(1_000_000),
            Bson::String(String::new()),
            Bson::Document(doc! {}),
            Bson::Array(vec![]),
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![],
            }),
            Bson::ObjectId(ObjectId::new()),
            Bson::Boolean(false),
            Bson::DateTime(bson::DateTime::from_millis(0)),
            Bson::Timestamp(bson::Timestamp {
                time: 0,
                increment: 0,
            }),
            Bson::MaxKey,
        ];
        for pair in ordered.windows(2) {
            less(pair[0].clone(), pair[1].clone());
        }
    }

    #[test]
    fn numbers_compare_by_value_across_types() {
        assert_eq!(
            compare_values(&Bson::Int32(1), &Bson::Double(1.0)),
            Ordering::Equal
        );
        assert_eq!(
            compare_values(&Bson::Int64(7), &Bson::Int32(7)),
            Ordering::Equal
        );
        less(Bson::Int32(1), Bson::Double(1.5));
        less(Bson::Double(f64::NAN), Bson::Double(f64::NEG_INFINITY));
        less(Bson::Double(f64::NAN), Bson::Int64(i64::MIN));
        // 2^53 + 1 is not representable as f64: still compared exactly.
        less(
            Bson::Double(9_007_199_254_740_992.0),
            Bson::Int64(9_007_199_254_740_993),
        );
        less(
            Bson::Int64(i64::MAX),
            Bson::Double(9_223_372_036_854_775_808.0),
        );
        assert_eq!(
            compare_values(&Bson::Double(-0.0), &Bson::Int32(0)),
            Ordering::Equal
        );
    }

    #[test]
    fn null_and_undefined_share_a_bracket() {
        assert_eq!(
            compare_values(&Bson::Null, &Bson::Undefined),
            Ordering::Equal
        );
    }

    #[test]
    fn documents_compare_field_by_field_and_arrays_element_by_element() {
        less(doc! {"a": 1}.into(), doc! {"a": 2}.into());
        less(doc! {"a": 1}.into(), doc! {"b": 1}.into());
        less(doc! {"a": 1}.into(), doc! {"a": 1, "b": 0}.into());
        less(doc! {"a": 5}.into(), doc! {"a": "x"}.into());
        less(bson::bson!([1, 2]), bson::bson!([1, 3]));
        less(bson::bson!([1]), bson::bson!([1, 0]));
        less(bson::bson!(["a"]), bson::bson!([{}]));
    }

    #[test]
    fn strings_compare_bytewise() {
        less(Bson::String("B".into()), Bson::String("a".into()));
        less(Bson::String("a".into()), Bson::String("ab".into()));
    }

    #[test]
    fn nesting_depth_counts_documents_and_arrays() {
        assert_eq!(nesting_depth(&doc! {"a": 1}), 1);
        assert_eq!(nesting_depth(&doc! {"a": {"b": [1]}}), 3);
    }
}
