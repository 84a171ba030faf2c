//! The JSON input guard: no client document may carry a key that MongoDB would read as an
//! operator (`$where`, `$gt`, …) or as a path (`a.b`), at any depth.
//!
//! Typed parsing with `deny_unknown_fields` already refuses most of these, but not inside
//! free-form values (a `tags` array of objects, a `filter` map) and not with a message that says
//! *why*. The guard runs on the raw `serde_json::Value` before typed parsing, so the rule holds for
//! every route, including ones written later. Nesting is capped: a deeply nested body is refused
//! rather than walked (serde_json's own recursion limit is 128; ours is much lower).
//!
//! The one place allowed to accept `$` keys is the getData filter, which parses its operators
//! against a whitelist itself; it calls [`check_with_operators`] for that.

use serde_json::Value;

use super::FieldErrors;

/// How deep objects and arrays may nest in a client document.
pub const MAX_DEPTH: usize = 16;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 128;
/// The guard stops collecting after this many problems (the client learns enough).
const MAX_REPORTED: usize = 32;

/// Refuses `$`-prefixed keys, keys containing `.` or NUL, over-long keys and over-deep nesting,
/// reporting every offending path.
pub fn check(value: &Value) -> Result<(), FieldErrors> {
    run(value, &|_path| false)
}

/// Like [`check`], but a `$` key is tolerated when `allows_operator(path)` says so; the caller must
/// then validate that operator against its own whitelist. Dots are refused everywhere.
pub fn check_with_operators(
    value: &Value,
    allows_operator: &dyn Fn(&str) -> bool,
) -> Result<(), FieldErrors> {
    run(value, allows_operator)
}

fn run(value: &Value, allows_operator: &dyn Fn(&str) -> bool) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::new();
    walk(value, "", 0, allows_operator, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn walk(
    value: &Value,
    path: &str,
    depth: usize,
    allows_operator: &dyn Fn(&str) -> bool,
    errors: &mut FieldErrors,
) {
    if errors.len() >= MAX_REPORTED {
        return;
    }
    match value {
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                errors.push(
                    path,
                    format!("nesting deeper than {MAX_DEPTH} levels is not accepted"),
                );
                return;
            }
            for (key, child) in map {
                let child_path = join(path, key);
                if let Some(problem) = key_problem(key) {
                    let operator_ok = key.starts_with('$')
                        && !key.contains(['.', '\0'])
                        && key.len() <= MAX_KEY_LEN
                        && allows_operator(&child_path);
                    if !operator_ok {
                        errors.push(child_path.clone(), problem);
                        if errors.len() >= MAX_REPORTED {
                            return;
                        }
                    }
                }
                walk(child, &child_path, depth + 1, allows_operator, errors);
            }
        }
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                errors.push(
                    path,
                    format!("nesting deeper than {MAX_DEPTH} levels is not accepted"),
                );
                return;
            }
            for (i, child) in items.iter().enumerate() {
                walk(
                    child,
                    &format!("{path}[{i}]"),
                    depth + 1,
                    allows_operator,
                    errors,
                );
            }
        }
        _ => {}
    }
}

fn key_problem(key: &str) -> Option<&'static str> {
    if key.starts_with('$') {
        Some("keys starting with '$' are not accepted")
    } else if key.contains('.') {
        Some("keys containing '.' are not accepted")
    } else if key.contains('\0') {
        Some("keys containing NUL are not accepted")
    } else if key.is_empty() {
        Some("empty keys are not accepted")
    } else if key.len() > MAX_KEY_LEN {
        Some("key is too long")
    } else {
        None
    }
}

fn join(path: &str, key: &str) -> String {
    // Keys are echoed back in error details: cap what a hostile key can make us print.
    let key: String = key.chars().take(MAX_KEY_LEN).collect();
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(errors: FieldErrors) -> Vec<String> {
        errors.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn plain_documents_pass() {
        check(&json!({"name": "x", "tags": ["a", {"k": 1}], "n": null})).unwrap();
    }

    #[test]
    fn operator_and_dotted_keys_are_refused_at_any_depth_and_all_reported() {
        let doc = json!({
            "$where": "sleep(1000)",
            "price": {"$gt": 0},
            "a.b": 1,
            "tags": [{"ok": 1}, {"deep": {"$ne": null}}]
        });
        let got = fields(check(&doc).unwrap_err());
        for want in ["$where", "price.$gt", "a.b", "tags[1].deep.$ne"] {
            assert!(got.iter().any(|f| f == want), "{want} missing from {got:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_cap_is_refused() {
        let mut doc = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            doc = json!({ "x": doc });
        }
        assert!(check(&doc).is_err());
        let mut shallow = json!(1);
        for _ in 0..(MAX_DEPTH - 1) {
            shallow = json!([shallow]);
        }
        check(&shallow).unwrap();
    }

    #[test]
    fn whitelisted_operator_positions_pass_but_dots_never_do() {
        let allow = |path: &str| path.starts_with("filter.price.");
        check_with_operators(&json!({"filter": {"price": {"$gt": 1}}}), &allow).unwrap();
        assert!(check_with_operators(&json!({"filter": {"$where": "1"}}), &allow).is_err());
        assert!(check_with_operators(&json!({"filter": {"price": {"$g.t": 1}}}), &allow).is_err());
    }

    #[test]
    fn the_number_of_reported_problems_is_bounded() {
        let mut map = serde_json::Map::new();
        for i in 0..1000 {
            map.insert(format!("${i}"), json!(1));
        }
        let errors = check(&Value::Object(map)).unwrap_err();
        assert!(errors.len() <= MAX_REPORTED);
    }
}
