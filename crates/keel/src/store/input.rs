//! Untrusted input on its way to the store: the guides' `isRealMongoObjectId`, `safeString` and
//! `safeInt`, as functions that parse once at the edge so the code inside can trust the value.
//!
//! Two deliberate differences from the guides' JavaScript. `safe_string` does not strip `<`,
//! `>` or `$`: with BSON filters built from typed values a string can never become an operator
//! (the injection `$`-stripping guarded against), and HTML escaping belongs where HTML is
//! written. And `safe_int` is strict — `"12abc"` is not 12 but the default — because a value
//! that only half parses is a client bug worth not guessing about.

use bson::oid::ObjectId;

/// An id that is not the 24 lowercase hexadecimal characters of an ObjectId.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected 24 lowercase hexadecimal characters")]
pub struct InvalidId;

/// Parses an ObjectId from its canonical text: exactly 24 lowercase hex characters. Like the
/// guides' `String(new ObjectID(id)) === String(id)`, other spellings (uppercase, 12-byte
/// strings, surrounding spaces) are refused, so one document has one id string.
pub fn parse_object_id(input: &str) -> Result<ObjectId, InvalidId> {
    let canonical = input.len() == 24
        && input
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return Err(InvalidId);
    }
    ObjectId::parse_str(input).map_err(|_| InvalidId)
}

/// The guides' default cap for free text (`safeString(str, maxLength = 1000)`).
pub const DEFAULT_MAX_STRING_CHARS: usize = 1000;

/// Free text made safe to store and log: control characters (including newlines and tabs, the
/// tools of log forging) and Unicode bidi/line-separator controls removed, then cut to at most
/// `max_chars` characters — on a character boundary, never mid-UTF-8.
pub fn safe_string(input: &str, max_chars: usize) -> String {
    input
        .chars()
        .filter(|c| !is_unsafe_char(*c))
        .take(max_chars)
        .collect()
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// An integer from text (a query parameter, a header), or `default` when it is not one.
/// Surrounding whitespace is ignored; anything else makes it not an integer.
pub fn safe_int(input: &str, default: i64) -> i64 {
    input.trim().parse().unwrap_or(default)
}

/// Like `safe_int`, then clamped into `min..=max` (a page size asked as 10 000 becomes `max`).
/// `default` is returned as given when the input is not an integer.
pub fn safe_int_in(input: &str, min: i64, max: i64, default: i64) -> i64 {
    match input.trim().parse::<i64>() {
        Ok(value) => value.max(min).min(max),
        Err(_) => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_parses_its_canonical_form_only() {
        let id = ObjectId::new();
        assert_eq!(parse_object_id(&id.to_hex()), Ok(id));
        assert_eq!(
            parse_object_id("65f1c2d2a1b2c3d4e5f60718").map(|id| id.to_hex()),
            Ok("65f1c2d2a1b2c3d4e5f60718".to_string())
        );
        for bad in [
            "",
            "65F1C2D2A1B2C3D4E5F60718",
            "65f1c2d2a1b2c3d4e5f6071",
            "65f1c2d2a1b2c3d4e5f607189",
            "65f1c2d2a1b2c3d4e5f6071g",
            " 65f1c2d2a1b2c3d4e5f60718",
            "abcdefghijkl",
            "65f1c2d2a1b2c3d4e5f6071é",
            "{\"$ne\": null}",
        ] {
            assert_eq!(parse_object_id(bad), Err(InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn safe_string_removes_control_characters() {
        assert_eq!(
            safe_string("line1\nline2\r\t\u{0}\u{1b}[31mred", 100),
            "line1line2[31mred"
        );
        assert_eq!(
            safe_string("evil\u{202E}txt.exe\u{2028}", 100),
            "eviltxt.exe"
        );
        assert_eq!(
            safe_string("  keeps spaces & <tags> $ok  ", 100),
            "  keeps spaces & <tags> $ok  "
        );
    }

    #[test]
    fn safe_string_caps_length_on_character_boundaries() {
        assert_eq!(safe_string("héllo wörld", 4), "héll");
        assert_eq!(safe_string("日本語テキスト", 3), "日本語");
        assert_eq!(safe_string("👍👍👍", 2), "👍👍");
        assert_eq!(safe_string("short", DEFAULT_MAX_STRING_CHARS), "short");
        assert_eq!(safe_string("anything", 0), "");
        // The cap counts the characters kept, not the ones removed.
        assert_eq!(safe_string("\n\n\nabc", 3), "abc");
    }

    #[test]
    fn safe_int_parses_or_falls_back() {
        assert_eq!(safe_int("42", 0), 42);
        assert_eq!(safe_int(" -7 ", 0), -7);
        assert_eq!(safe_int("+3", 0), 3);
        assert_eq!(safe_int("", 10), 10);
        assert_eq!(safe_int("12abc", 10), 10);
        assert_eq!(safe_int("1.5", 10), 10);
        assert_eq!(safe_int("99999999999999999999", 10), 10);
        assert_eq!(safe_int("NaN", -1), -1);
    }

    #[test]
    fn safe_int_in_clamps_into_bounds() {
        assert_eq!(safe_int_in("50", 1, 100, 20), 50);
        assert_eq!(safe_int_in("10000", 1, 100, 20), 100);
        assert_eq!(safe_int_in("-5", 1, 100, 20), 1);
        assert_eq!(safe_int_in("many", 1, 100, 20), 20);
    }
}
