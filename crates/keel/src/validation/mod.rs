//! Validation vocabulary shared by every layer that parses client input.
//!
//! Input is parsed once, at the edge, into types that cannot be invalid (STYLE: "types carry the
//! rules"). When it fails, the client deserves to learn about *every* bad field at once, so parsers
//! push into a [`FieldErrors`] collector instead of returning at the first problem; the HTTP layer
//! renders the collection as the `details` of a 400 envelope.
//!
//! [`json_guard`] is the first line of that edge: it refuses operator-shaped keys (`$…`, `a.b`)
//! anywhere in a client JSON document before any typed parsing happens, so no client value can
//! ever reach the store as a query operator.

pub mod json_guard;

use std::fmt;

use bson::oid::ObjectId;
use serde::Serialize;

/// One bad field (`field` is a JSON path such as `lines[2].qty` or `filter.price.$gt`): the same
/// type the HTTP layer lists in a 400's `details`.
pub use crate::http::FieldError;

/// Every problem found in one input. Empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A collection holding exactly one problem.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.push(field, message);
        errors
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Keeps the value when the parse succeeded, records the problems when it did not.
    /// Lets a constructor parse every field, then decide once.
    pub fn take<T>(&mut self, result: Result<T, FieldErrors>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(errors) => {
                self.0.extend(errors.0);
                None
            }
        }
    }

    /// Moves the problems of a nested input under `prefix` (`lines[0]` + `qty` → `lines[0].qty`).
    pub fn extend_prefixed(&mut self, prefix: &str, errors: FieldErrors) {
        for mut e in errors.0 {
            e.field = if e.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.field)
            };
            self.0.push(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok(value)` when nothing was recorded. The value is built lazily so callers can unwrap
    /// the `Option`s filled by [`take`](Self::take) inside the closure.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, FieldErrors> {
        if !self.is_empty() {
            return Err(self);
        }
        build().ok_or_else(|| FieldErrors::single("", "invalid input"))
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

/// Every bad field becomes one entry of a 400 `validation_failed`.
impl From<FieldErrors> for crate::http::ApiError {
    fn from(errors: FieldErrors) -> Self {
        crate::http::ApiError::Validation(errors.into_vec())
    }
}

/// Trims and checks a required string: between `min` and `max` characters (not bytes), no
/// control characters. Length is counted in `char`s so a multi-byte name is not penalised.
pub fn bounded_string(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, FieldErrors> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        let message = if min == 1 {
            "must not be empty".to_string()
        } else {
            format!("must be at least {min} characters")
        };
        return Err(FieldErrors::single(field, message));
    }
    if chars > max {
        return Err(FieldErrors::single(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(FieldErrors::single(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_string())
}

/// What [`object_id`] accepts, as a regular expression (for API documents).
pub const OBJECT_ID_PATTERN: &str = "^[0-9a-f]{24}$";

/// Parses a canonical ObjectId (24 lowercase hex digits, the store's `parse_object_id`), the
/// only id shape the API accepts, as a field error.
pub fn object_id(field: &str, raw: &str) -> Result<ObjectId, FieldErrors> {
    crate::store::input::parse_object_id(raw)
        .map_err(|_| FieldErrors::single(field, "must be a 24-character lowercase hex ObjectId"))
}

/// Escapes every regular-expression metacharacter so client text matches literally.
pub fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_string_trims_and_counts_characters() {
        assert_eq!(bounded_string("name", "  héllo ", 1, 5).unwrap(), "héllo");
        assert!(bounded_string("name", "   ", 1, 5).is_err());
        assert!(bounded_string("name", "abcdef", 1, 5).is_err());
        assert!(bounded_string("name", "a\u{0}b", 1, 5).is_err());
    }

    #[test]
    fn collector_keeps_every_problem_with_paths() {
        let mut errors = FieldErrors::new();
        let name = errors.take(bounded_string("name", "", 1, 5));
        let id = errors.take(object_id("id", "zz"));
        let mut nested = FieldErrors::new();
        nested.push("qty", "must be positive");
        errors.extend_prefixed("lines[0]", nested);
        assert!(name.is_none() && id.is_none());
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "id", "lines[0].qty"]);
        assert!(errors.finish(|| Some(())).is_err());
    }

    #[test]
    fn object_id_accepts_only_24_hex_digits() {
        assert!(object_id("id", "507f1f77bcf86cd799439011").is_ok());
        for bad in [
            "",
            "507f1f77bcf86cd79943901",
            "507f1f77bcf86cd79943901g",
            "x".repeat(24).as_str(),
        ] {
            assert!(object_id("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escape_regex_neutralises_metacharacters() {
        assert_eq!(escape_regex("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(escape_regex("plain"), "plain");
    }
}
