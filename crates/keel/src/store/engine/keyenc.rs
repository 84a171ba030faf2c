//! Index keys as bytes whose bytewise order is MongoDB's value order.
//!
//! The embedded backend stores index entries in SQLite as BLOBs and scans them by range, so
//! the bytes must sort exactly as `compare_values` does: `encode_key(a) < encode_key(b)`
//! bytewise iff `a < b`, and equal values (1, 1i64, 1.0) encode to the same bytes.
//!
//! Layout: one type-bracket byte, then the value:
//! - numbers: the `f64` nearest the value in an order-preserving 8-byte form (sign bit flipped
//!   for positives, all bits flipped for negatives; `-0.0` as `0.0`; NaN as all zeros, below
//!   `-inf`), then a 2-byte signed *residual* `value - nearest_f64` (non-zero only for
//!   int64 values beyond 2^53, where it is at most 2^10 in magnitude). Rounding is monotonic,
//!   so the pair orders exactly like the integer;
//! - strings: UTF-8 bytes with `0x00` escaped as `00 FF`, terminated by `00 00`;
//! - documents: per field `01`, the value's bracket byte, the escaped name, the value; `00` ends;
//! - arrays: per element `01` and the element; `00` ends;
//! - binary: length (4 bytes BE), subtype, bytes; ObjectId: its 12 bytes; booleans: `00`/`01`;
//!   dates: millis as order-preserving i64; timestamps: time then increment (BE).
//!
//! Every value encoding is prefix-free, so composite encodings order correctly. Decimal128 is
//! encoded through its nearest `f64` (the same approximation `compare_values` makes).

use bson::{Bson, Document};

use super::compare::{Number, type_rank};

/// An order-preserving byte encoding of a value: `encode_key(a) < encode_key(b)` (bytewise)
/// exactly when `compare_values(a, b) == Less`; equal values (e.g. 1 and 1.0) encode equal.
pub fn encode_key(value: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_into(value, &mut out);
    out
}

fn encode_into(value: &Bson, out: &mut Vec<u8>) {
    out.push(type_rank(value));
    match value {
        Bson::MinKey | Bson::MaxKey | Bson::Null | Bson::Undefined | Bson::DbPointer(_) => {}
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
            if let Some(number) = Number::of(value) {
                encode_number(number, out);
            }
        }
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => encode_str(s, out),
        Bson::Document(d) => encode_document(d, out),
        Bson::Array(items) => {
            for item in items {
                out.push(1);
                encode_into(item, out);
            }
            out.push(0);
        }
        Bson::Binary(b) => {
            let length = u32::try_from(b.bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&length.to_be_bytes());
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(id) => out.extend_from_slice(&id.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => out.extend_from_slice(&ordered_i64(d.timestamp_millis())),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        Bson::RegularExpression(r) => {
            encode_str(r.pattern.as_str(), out);
            encode_str(r.options.as_str(), out);
        }
        Bson::JavaScriptCodeWithScope(c) => {
            encode_str(&c.code, out);
            encode_document(&c.scope, out);
        }
    }
}

fn encode_document(document: &Document, out: &mut Vec<u8>) {
    for (name, value) in document {
        out.push(1);
        out.push(type_rank(value));
        encode_str(name, out);
        encode_into(value, out);
    }
    out.push(0);
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &byte in s.as_bytes() {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn ordered_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

fn encode_number(number: Number, out: &mut Vec<u8>) {
    let (nearest, residual) = match number {
        Number::Float(f) => (f, 0i16),
        Number::Int(i) => {
            let nearest = i as f64;
            // `nearest` is integral and within [-2^63, 2^63], so it fits an i128 exactly; the
            // rounding error of an i64 is at most half an ulp at 2^63, i.e. 2^10.
            let error = i128::from(i) - nearest as i128;
            (nearest, i16::try_from(error).unwrap_or(0))
        }
    };
    let bits = if nearest.is_nan() {
        0
    } else {
        let normalized = if nearest == 0.0 { 0.0f64 } else { nearest };
        let raw = normalized.to_bits();
        if raw >> 63 == 1 {
            !raw
        } else {
            raw | (1 << 63)
        }
    };
    out.extend_from_slice(&bits.to_be_bytes());
    out.extend_from_slice(&((residual as u16) ^ (1 << 15)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use bson::{bson, doc};

    use super::super::compare_values;
    use super::*;

    fn check(a: &Bson, b: &Bson) {
        let bytes = encode_key(a).cmp(&encode_key(b));
        assert_eq!(bytes, compare_values(a, b), "{a:?} vs {b:?}");
    }

    #[test]
    fn equal_numbers_encode_equal() {
        assert_eq!(encode_key(&Bson::Int32(1)), encode_key(&Bson::Double(1.0)));
        assert_eq!(encode_key(&Bson::Int64(-3)), encode_key(&Bson::Int32(-3)));
        assert_eq!(encode_key(&Bson::Double(-0.0)), encode_key(&Bson::Int32(0)));
    }

    #[test]
    fn large_integers_keep_their_order() {
        let around = [
            Bson::Int64(i64::MIN),
            Bson::Double(-9_223_372_036_854_775_808.0),
            Bson::Int64(9_007_199_254_740_992),
            Bson::Int64(9_007_199_254_740_993),
            Bson::Double(9_007_199_254_740_994.0),
            Bson::Int64(i64::MAX - 1),
            Bson::Int64(i64::MAX),
            Bson::Double(9_223_372_036_854_775_808.0),
            Bson::Double(f64::INFINITY),
            Bson::Double(f64::NAN),
        ];
        for a in &around {
            for b in &around {
                check(a, b);
            }
        }
    }

    #[test]
    fn composite_values_keep_their_order() {
        let values = [
            Bson::Null,
            bson!("a"),
            bson!("a\u{0}"),
            bson!("a\u{0}b"),
            bson!("ab"),
            bson!({"a": 1}),
            bson!({"a": 1, "b": 2}),
            bson!({"a": "x"}),
            bson!({"b": 0}),
            bson!([]),
            bson!([1]),
            bson!([1, 2]),
            bson!(["x"]),
            Bson::Document(doc! {"": 1}),
            Bson::Boolean(true),
            Bson::MaxKey,
        ];
        for a in &values {
            for b in &values {
                check(a, b);
            }
        }
        assert_eq!(
            encode_key(&bson!([1, 2])).cmp(&encode_key(&bson!([1.0, 2i64]))),
            Ordering::Equal
        );
    }
}
