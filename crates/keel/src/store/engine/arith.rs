//! Arithmetic for `$inc` and `$mul` with MongoDB's numeric widening: int32 results that
//! overflow become int64, any double makes the result a double, and an int64 overflow is an
//! error (MongoDB refuses it rather than losing precision).

use bson::Bson;

use super::super::{StoreError, StoreResult};

enum Operand {
    Int32(i32),
    Int64(i64),
    Double(f64),
}

fn operand(value: &Bson, operator: &str, parts: &[String]) -> StoreResult<Operand> {
    match value {
        Bson::Int32(n) => Ok(Operand::Int32(*n)),
        Bson::Int64(n) => Ok(Operand::Int64(*n)),
        Bson::Double(f) => Ok(Operand::Double(*f)),
        Bson::Decimal128(_) => Err(StoreError::unsupported(format!(
            "{operator} on the decimal128 field '{}'",
            parts.join(".")
        ))),
        other => Err(StoreError::invalid(format!(
            "{operator} needs a number at '{}', found {other}",
            parts.join(".")
        ))),
    }
}

fn as_i64(o: &Operand) -> Option<i64> {
    match o {
        Operand::Int32(n) => Some(i64::from(*n)),
        Operand::Int64(n) => Some(*n),
        Operand::Double(_) => None,
    }
}

fn as_f64(o: &Operand) -> f64 {
    match o {
        Operand::Int32(n) => f64::from(*n),
        Operand::Int64(n) => *n as f64,
        Operand::Double(f) => *f,
    }
}

fn combine(
    current: &Bson,
    other: &Bson,
    operator: &str,
    parts: &[String],
    int_op: fn(i64, i64) -> Option<i64>,
    float_op: fn(f64, f64) -> f64,
) -> StoreResult<Bson> {
    let a = operand(current, operator, parts)?;
    let b = operand(other, operator, parts)?;
    if let (Operand::Int32(_), Operand::Int32(_)) = (&a, &b) {
        // Two int32s never overflow an i64; the result narrows back when it fits.
        let result = int_op(as_i64(&a).unwrap_or(0), as_i64(&b).unwrap_or(0)).unwrap_or(0);
        return Ok(i32::try_from(result).map_or(Bson::Int64(result), Bson::Int32));
    }
    match (as_i64(&a), as_i64(&b)) {
        (Some(x), Some(y)) => int_op(x, y).map(Bson::Int64).ok_or_else(|| {
            StoreError::invalid(format!(
                "{operator} on '{}' overflows a 64-bit integer",
                parts.join(".")
            ))
        }),
        _ => Ok(Bson::Double(float_op(as_f64(&a), as_f64(&b)))),
    }
}

pub fn add(current: &Bson, delta: &Bson, parts: &[String]) -> StoreResult<Bson> {
    combine(current, delta, "$inc", parts, i64::checked_add, |x, y| {
        x + y
    })
}

pub fn multiply(current: &Bson, factor: &Bson, parts: &[String]) -> StoreResult<Bson> {
    combine(current, factor, "$mul", parts, i64::checked_mul, |x, y| {
        x * y
    })
}

/// `$mul` on a missing field sets it to zero of the factor's type.
pub fn zero_like(factor: &Bson) -> Bson {
    match factor {
        Bson::Int32(_) => Bson::Int32(0),
        Bson::Int64(_) => Bson::Int64(0),
        _ => Bson::Double(0.0),
    }
}
