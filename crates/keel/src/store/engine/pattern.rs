//! `$regex`: MongoDB's regular expressions on the `regex` crate.
//!
//! The `regex` crate runs in time linear in the input, so a hostile pattern cannot stall the
//! server (PCRE, which MongoDB uses, can backtrack exponentially). The price: backreferences
//! and lookaround do not exist and are reported as `Unsupported`. Compiled programs are capped
//! in size for the same reason.

use bson::Bson;

use super::super::{StoreError, StoreResult};

/// The most a compiled pattern may occupy; generous for real patterns, small enough that a
/// hostile one (`(a{1000}){1000}`) is refused instead of allocating without bound.
const COMPILED_SIZE_LIMIT: usize = 1 << 20;
/// Longest pattern accepted, in bytes.
const PATTERN_LENGTH_LIMIT: usize = 16 * 1024;

/// A compiled `$regex` with the pattern and options it came from (MongoDB's `{f: /re/}` also
/// matches a stored regex value with the same pattern and options).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub options: String,
    compiled: regex::Regex,
}

impl Pattern {
    /// Compiles `source` with MongoDB's options `i` (case-insensitive), `m` (multi-line),
    /// `s` (dot matches newline), `x` (extended: whitespace and `#` comments ignored) and `u`
    /// (accepted; matching is always Unicode-aware).
    pub fn compile(source: &str, options: &str) -> StoreResult<Pattern> {
        if source.len() > PATTERN_LENGTH_LIMIT {
            return Err(StoreError::invalid(format!(
                "$regex pattern is longer than {PATTERN_LENGTH_LIMIT} bytes"
            )));
        }
        let mut builder = regex::RegexBuilder::new(source);
        builder.size_limit(COMPILED_SIZE_LIMIT);
        for option in options.chars() {
            match option {
                'i' => builder.case_insensitive(true),
                'm' => builder.multi_line(true),
                's' => builder.dot_matches_new_line(true),
                'x' => builder.ignore_whitespace(true),
                'u' => &mut builder,
                other => {
                    return Err(StoreError::invalid(format!(
                        "$options: unknown regex option '{other}' (supported: i m s x u)"
                    )));
                }
            };
        }
        let compiled = builder.build().map_err(|e| regex_error(source, e))?;
        Ok(Pattern {
            source: source.to_owned(),
            options: options.to_owned(),
            compiled,
        })
    }

    /// From a BSON regex value (`{f: /re/i}`).
    pub fn from_bson(regex: &bson::Regex) -> StoreResult<Pattern> {
        Pattern::compile(regex.pattern.as_str(), regex.options.as_str())
    }

    /// Strings (and symbols) are searched; a stored regex matches when it is the same regex.
    pub fn matches(&self, value: &Bson) -> bool {
        match value {
            Bson::String(s) | Bson::Symbol(s) => self.compiled.is_match(s),
            Bson::RegularExpression(r) => {
                r.pattern.as_str() == self.source && same_options(r.options.as_str(), &self.options)
            }
            _ => false,
        }
    }
}

fn same_options(a: &str, b: &str) -> bool {
    let mut a: Vec<char> = a.chars().collect();
    let mut b: Vec<char> = b.chars().collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn regex_error(source: &str, error: regex::Error) -> StoreError {
    match error {
        regex::Error::CompiledTooBig(limit) => StoreError::invalid(format!(
            "$regex pattern compiles to more than {limit} bytes"
        )),
        regex::Error::Syntax(message) if message.contains("not supported") => {
            StoreError::unsupported(format!(
                "$regex feature in /{source}/ (backreferences and lookaround are not supported): {}",
                message.lines().last().unwrap_or_default()
            ))
        }
        other => StoreError::invalid(format!("$regex /{source}/ is not valid: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_change_matching() {
        let p = Pattern::compile("^ab", "i").unwrap();
        assert!(p.matches(&Bson::String("ABC".into())));
        let p = Pattern::compile("^b", "m").unwrap();
        assert!(p.matches(&Bson::String("a\nb".into())));
        let p = Pattern::compile("a.b", "s").unwrap();
        assert!(p.matches(&Bson::String("a\nb".into())));
        let p = Pattern::compile("a b # comment", "x").unwrap();
        assert!(p.matches(&Bson::String("ab".into())));
    }

    #[test]
    fn only_strings_are_searched() {
        let p = Pattern::compile("1", "").unwrap();
        assert!(!p.matches(&Bson::Int32(1)));
    }

    #[test]
    fn backreferences_and_lookaround_are_unsupported() {
        for source in [r"(a)\1", "a(?=b)", "(?<!a)b"] {
            let error = Pattern::compile(source, "").unwrap_err();
            assert!(
                matches!(error, StoreError::Unsupported { .. }),
                "{source}: {error:?}"
            );
        }
    }

    #[test]
    fn malformed_and_oversized_patterns_are_invalid() {
        assert!(matches!(
            Pattern::compile("(", "").unwrap_err(),
            StoreError::InvalidQuery { .. }
        ));
        assert!(matches!(
            Pattern::compile("(a{1000}){1000}", "").unwrap_err(),
            StoreError::InvalidQuery { .. }
        ));
        assert!(matches!(
            Pattern::compile("a", "q").unwrap_err(),
            StoreError::InvalidQuery { .. }
        ));
    }
}
