//! A JSON writer for responses rendered straight from stored bytes (listings), with exactly the
//! bytes `serde_json` writes for the same values.
//!
//! serde_json checks a string's bytes one at a time through its `Formatter` and an `io::Write`;
//! on a 100-item listing that was an eighth of the request (`docs/performance.md`). Here a string
//! is checked eight bytes at a time and every run that needs no escape is copied in one go. What
//! is escaped, and how, is serde_json's: `"` and `\` with a backslash, `\b \t \n \f \r` by name,
//! other control characters as `\u00XX` in lowercase hex; DEL and non-ASCII text as they are.
//! Numbers go through `itoa` and `zmij`, the formatters serde_json itself uses (serde_json
//! 1.0.154 writes floats with zmij: `1e+21`, not ryu's `1e21`), and a non-finite float is
//! `null` as in serde_json. Unit tests pin every case against serde_json.

/// `text` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    write_str_contents(out, text);
    out.push(b'"');
}

/// Bytes the caller has checked to be UTF-8 (`store::raw::RawText::check`), as a JSON string.
/// Escaping looks at ASCII bytes only, so it is `write_str`'s for any text; bytes that were
/// not UTF-8 would pass through as they are (never unsafe, but not JSON: check first).
pub fn write_utf8(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    write_contents(out, text);
    out.push(b'"');
}

/// `text` escaped as inside a JSON string, without the quotes: a string written in pieces
/// (see [`StringContents`]) is escaped exactly as if written whole.
pub fn write_str_contents(out: &mut Vec<u8>, text: &str) {
    write_contents(out, text.as_bytes());
}

fn write_contents(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most strings need no escape at all: one scan of whole words, then one copy.
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        if at + 8 <= bytes.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            if !needs_escape(u64::from_le_bytes(word)) {
                at += 8;
                continue;
            }
        }
        let byte = bytes[at];
        let escape = ESCAPE[usize::from(byte)];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..at]);
            write_escape(out, byte, escape);
            start = at + 1;
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A `fmt::Write` that escapes what is formatted into it as the inside of a JSON string: a
/// `Display` or `Debug` value goes into the JSON text without a `String` of its own.
pub struct StringContents<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for StringContents<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        write_str_contents(self.0, text);
        Ok(())
    }
}

/// A float as serde_json writes it: shortest round-trip form (`1.0`, `19.99`, `1e+21`), `null`
/// when it is NaN or infinite.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if write_thousandths(out, value) {
        return;
    }
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Below this magnitude (< 2^40) neighbouring floats are under 2^-12 (< 0.00025) apart.
const THOUSANDTHS_BELOW: f64 = 1e12;

/// Writes `value` if it is the float nearest to a number of thousandths — a price (`19.99` is
/// `19990 / 1000.0` as much as `1999 / 100.0`) or the request log's `duration_ms`
/// (microseconds) — with the digits zmij would choose, and says whether it did. zmij writes
/// the shortest decimal that reads back as `value`. For `|value| < 1e12` the floats around it
/// are under a quarter of 0.001 apart, so the decimals that read back as `value` all lie
/// within an eighth of 0.001 of it, as does the number of thousandths it came from: that
/// number, trailing zeros dropped, is the only candidate with at most three decimals, and any
/// shorter one would be another multiple of 0.001, at least seven eighths of 0.001 away. zmij
/// prints numbers of this size positionally (`-12.5`, `0.05`, `3.0`, `0.001`). Zero is left
/// to zmij (its sign). Pinned against serde_json by the tests below.
fn write_thousandths(out: &mut Vec<u8>, value: f64) -> bool {
    if value.is_nan() || value.abs() >= THOUSANDTHS_BELOW || value == 0.0 {
        return false;
    }
    let scaled = value * 1000.0;
    // Rounded half away from zero by the cast (`f64::round` is a call into libm); a `value`
    // that is not the float nearest to a whole number of thousandths fails the check below
    // however this rounds. |scaled| < 1e15: the cast cannot saturate.
    let thousandths = (scaled + 0.5f64.copysign(scaled)) as i64;
    if thousandths as f64 / 1000.0 != value {
        return false;
    }
    if thousandths < 0 {
        out.push(b'-');
    }
    let magnitude = thousandths.unsigned_abs();
    write_u64(out, magnitude / 1000);
    out.push(b'.');
    let fraction = magnitude % 1000;
    let digits = [fraction / 100, fraction / 10 % 10, fraction % 10].map(|d| b'0' + d as u8);
    // At least one digit (`3.0`), then none of the trailing zeros.
    let shown = match fraction {
        f if f % 100 == 0 => 1,
        f if f % 10 == 0 => 2,
        _ => 3,
    };
    out.extend_from_slice(&digits[..shown]);
    true
}

pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// True if any byte of `bytes` is a control character, `"` or `\`: eight bytes at a time, the
/// last few padded with a letter (a listing's names and brands are mostly under eight bytes,
/// and a byte at a time was a tenth of its rendering).
fn any_needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = words.remainder();
    let mut word = [b'a'; 8];
    word[..rest.len()].copy_from_slice(rest);
    needs_escape(u64::from_le_bytes(word))
}

/// True if any of the eight bytes of `word` is a control character, `"` or `\`. Exact as a
/// yes/no answer (the classic "has a byte less than n" / "has a zero byte" tricks); which byte
/// it is, the caller finds with the table.
fn needs_escape(word: u64) -> bool {
    let below_space = word.wrapping_sub(LOW_BITS * 0x20) & !word;
    let quote = word ^ (LOW_BITS * u64::from(b'"'));
    let backslash = word ^ (LOW_BITS * u64::from(b'\\'));
    let has_zero = |w: u64| w.wrapping_sub(LOW_BITS) & !w;
    (below_space | has_zero(quote) | has_zero(backslash)) & HIGH_BITS != 0
}

/// How each byte is escaped: 0 not at all, `u` as `\u00XX`, otherwise the letter after `\`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cold]
fn write_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0x0F)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` into `text[..19]`, from a year below 10,000 and a valid date and time
/// of day (the RFC 3339 writers of logs and stored dates share it).
pub fn write_date_time(
    text: &mut [u8],
    [year, month, day]: [u32; 3],
    [hour, minute, second]: [u32; 3],
) {
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    text[..4].copy_from_slice(&[
        b'0' + (year / 1000 % 10) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
    ]);
    text[4] = b'-';
    text[5..7].copy_from_slice(&two(month));
    text[7] = b'-';
    text[8..10].copy_from_slice(&two(day));
    text[10] = b'T';
    text[11..13].copy_from_slice(&two(hour));
    text[13] = b':';
    text[14..16].copy_from_slice(&two(minute));
    text[16] = b':';
    text[17..19].copy_from_slice(&two(second));
}

/// `at` as `chrono` writes it with `to_rfc3339_opts(SecondsFormat::Millis, true)`
/// (`2026-12-02T07:38:26.123Z`), without chrono's formatting machinery and its `String`. Years
/// outside 0–9999 and leap seconds are left to chrono.
pub fn write_utc_millis(out: &mut Vec<u8>, at: chrono::DateTime<chrono::Utc>) {
    use chrono::Timelike;
    match second_text(&at) {
        Some(text) if at.nanosecond() < 1_000_000_000 => {
            out.extend_from_slice(&text);
            write_millis_z(out, at.nanosecond() / 1_000_000);
        }
        _ => {
            let text = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The current time as [`write_utc_millis`] writes it: the log's `timestamp` and health's, on
/// every request. The text up to the seconds is worked out once a second per thread and then
/// copied; only the milliseconds are new per call. Reads the clock as `Utc::now` does
/// (`SystemTime`), without building a `DateTime` per call (the two were ~600 instructions
/// per timestamp, `docs/performance.md`).
pub fn write_utc_millis_now(out: &mut Vec<u8>) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => write_unix_millis(out, since.as_secs(), since.subsec_millis()),
        // A clock before 1970: left to chrono, as every unusual instant.
        Err(_) => write_utc_millis(out, chrono::Utc::now()),
    }
}

/// `secs` seconds and `millis` milliseconds after the Unix epoch, as [`write_utc_millis`].
fn write_unix_millis(out: &mut Vec<u8>, secs: u64, millis: u32) {
    thread_local! {
        /// The last second written on this thread, and its text up to the seconds.
        static SECOND: std::cell::Cell<(u64, [u8; 19])> =
            const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let cached = SECOND
        .try_with(|second| {
            let (at, text) = second.get();
            (at == secs).then_some(text)
        })
        .ok()
        .flatten();
    let text = match cached {
        Some(text) => text,
        None => {
            // Past chrono's range (year 262,143) only if the clock is: it saturates there.
            let at = i64::try_from(secs)
                .ok()
                .and_then(|secs| chrono::DateTime::from_timestamp(secs, millis * 1_000_000))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            let Some(text) = second_text(&at) else {
                return write_utc_millis(out, at);
            };
            // A thread being torn down has no cache: the text is used once.
            let _ = SECOND.try_with(|second| second.set((secs, text)));
            text
        }
    };
    out.extend_from_slice(&text);
    write_millis_z(out, millis);
}

/// `at` up to its seconds (`2026-12-02T07:38:26`); `None` for a year outside 0–9999.
fn second_text(at: &chrono::DateTime<chrono::Utc>) -> Option<[u8; 19]> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    let mut text = [0u8; 19];
    write_date_time(
        &mut text,
        [year, at.month(), at.day()],
        [at.hour(), at.minute(), at.second()],
    );
    Some(text)
}

/// `.123Z`: the milliseconds (below 1,000) and the UTC designator.
fn write_millis_z(out: &mut Vec<u8>, millis: u32) {
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100 % 10) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unix_millis_are_chronos_rfc3339_whether_the_second_is_cached_or_not() {
        use chrono::{DateTime, SecondsFormat};
        let expected = |secs: u64, millis: u32| {
            DateTime::from_timestamp(secs as i64, millis * 1_000_000)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        };
        // The same second again (cached), the next one, one far back, a year past 9999.
        let seconds = [
            1_764_665_906,
            1_764_665_906,
            1_764_665_907,
            0,
            86_399,
            253_402_300_799,
            253_402_300_800,
            1_764_665_907,
        ];
        for (i, secs) in seconds.into_iter().enumerate() {
            for millis in [0, 7, 999] {
                let mut out = Vec::new();
                write_unix_millis(&mut out, secs, millis);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    expected(secs, millis),
                    "#{i}"
                );
            }
        }
    }

    #[test]
    fn the_time_now_is_between_the_clock_readings_around_it() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let truncated = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
        for _ in 0..1000 {
            let before = truncated(Utc::now());
            let mut out = Vec::new();
            write_utc_millis_now(&mut out);
            let after = truncated(Utc::now());
            let now = String::from_utf8(out).unwrap();
            // Same-width RFC 3339 texts order as the instants they name.
            assert!(before <= now && now <= after, "{before} {now} {after}");
        }
    }

    #[test]
    fn utc_millis_are_chronos_rfc3339() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let check = |at: DateTime<Utc>| {
            let mut out = Vec::new();
            write_utc_millis(&mut out, at);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        };
        check(Utc::now());
        for millis in [
            0,
            1,
            999,
            1_000,
            -1,
            951_782_400_000,
            253_402_300_799_999,
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_300_800_000,
        ] {
            check(DateTime::from_timestamp_millis(millis).unwrap());
        }
        let mut millis: i64 = -62_167_219_200_000;
        while millis < 253_402_300_799_999 {
            check(DateTime::from_timestamp_millis(millis).unwrap());
            millis += 1_234_567_890_123;
        }
    }

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_escape_is_serde_jsons() {
        let every_byte: String = (0u8..=0x7F).map(char::from).collect();
        let cases = [
            "",
            "plain",
            "exactly8",
            "sixteen-plain-ab",
            "\"",
            "\\",
            "a\"b\\c",
            "tab\there, newline\nthere\r\x08\x0C",
            "\x00\x01\x1F\x7F",
            "é, ü, 日本語, 🦀 and \u{2028}",
            "long text with a quote \" at byte 24 and a backslash \\ later, then\x01",
            every_byte.as_str(),
        ];
        for text in cases {
            assert_eq!(
                written(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn text_formatted_in_pieces_is_escaped_as_if_whole() {
        use std::fmt::Write;
        let value = vec!["a\"b", "\u{1}é\\"];
        let mut out = vec![b'"'];
        let tabbed = String::from("tab\there");
        write!(StringContents(&mut out), "{value:?} and {tabbed}").unwrap();
        out.push(b'"');
        let whole = format!("{value:?} and {tabbed}");
        assert_eq!(out, serde_json::to_vec(&whole).unwrap());
    }

    #[test]
    fn control_characters_use_lowercase_hex() {
        assert_eq!(written("\x1b\x1f"), r#""\u001b\u001f""#);
    }

    #[test]
    fn the_word_check_finds_a_special_byte_in_every_position() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for position in 0..8 {
                let mut word = *b"abcdefgh";
                word[position] = special;
                assert!(
                    needs_escape(u64::from_le_bytes(word)),
                    "{special} at {position}"
                );
            }
        }
        for clean in [*b"abcdefgh", *b"\x20\x7F\x80\xFF!#[]", [0xC3; 8], [0x21; 8]] {
            assert!(!needs_escape(u64::from_le_bytes(clean)), "{clean:?}");
        }
    }

    #[test]
    fn a_special_byte_is_found_at_every_place_of_any_length() {
        for length in 0..=20 {
            let clean: Vec<u8> = (0..length).map(|i| b"a\x7F\xC3 ~"[i % 5]).collect();
            assert!(!any_needs_escape(&clean), "{clean:?}");
            for special in [0u8, 0x1F, b'"', b'\\'] {
                for position in 0..length {
                    let mut text = clean.clone();
                    text[position] = special;
                    assert!(any_needs_escape(&text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn numbers_are_serde_jsons() {
        for value in [
            0.0,
            -0.0,
            1.0,
            19.99,
            7.0,
            -1.5e-7,
            1e21,
            1e16,
            1e-7,
            123e-20,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, value);
            let value_path = serde_json::to_string(&serde_json::to_value(value).unwrap()).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), value_path, "{value}");
        }
        for value in [0, 7, 10_000, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
        for value in [0, -7, 10_000, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_i64(&mut out, value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }

    #[test]
    fn prices_and_durations_take_the_short_path_with_serde_jsons_digits() {
        for value in [
            0.01,
            0.05,
            0.1,
            0.5,
            1.01,
            1.1,
            2.0,
            19.99,
            -0.07,
            -3.5,
            499.99,
            0.001,
            0.005,
            0.25,
            1.0,
            1.001,
            12.345,
            0.123,
            -0.007,
            499.999,
            60_000.5,
            999_999_999_999.99,
        ] {
            let mut short = Vec::new();
            assert!(write_thousandths(&mut short, value), "{value}");
            let zmij = zmij::Buffer::new().format_finite(value).as_bytes().to_vec();
            assert_eq!(short, zmij, "{value}");
        }
        for value in [
            0.0,
            -0.0,
            0.0001,
            1.0 / 3.0,
            1e12,
            9.999_999_999_999_99e12,
            1e13,
            1.5e300,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(!write_thousandths(&mut Vec::new(), value), "{value}");
        }
    }

    /// `value` as `write_f64` writes it, and as serde_json does.
    fn written_f64(value: f64) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        write_f64(&mut out, value);
        (out, serde_json::to_vec(&value).unwrap())
    }

    proptest! {
        #[test]
        fn any_number_of_hundredths_is_written_as_serde_json_writes_it(hundredths in -999_999_999_999_999i64..=999_999_999_999_999) {
            let (ours, serde_jsons) = written_f64(hundredths as f64 / 100.0);
            prop_assert_eq!(ours, serde_jsons);
        }

        #[test]
        fn any_number_of_thousandths_is_written_as_serde_json_writes_it(thousandths in -999_999_999_999_999i64..=999_999_999_999_999) {
            let (ours, serde_jsons) = written_f64(thousandths as f64 / 1000.0);
            prop_assert_eq!(ours, serde_jsons);
        }

        #[test]
        fn any_duration_in_microseconds_is_written_as_serde_json_writes_it(micros in 0i64..=100_000_000_000) {
            let (ours, serde_jsons) = written_f64(micros as f64 / 1000.0);
            prop_assert_eq!(ours, serde_jsons);
        }

        #[test]
        fn any_small_price_is_written_as_serde_json_writes_it(hundredths in -10_000_000i64..=10_000_000) {
            let (ours, serde_jsons) = written_f64(hundredths as f64 / 100.0);
            prop_assert_eq!(ours, serde_jsons);
        }

        #[test]
        fn any_text_is_written_as_serde_json_writes_it(text in any::<String>()) {
            prop_assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn any_ascii_text_is_written_as_serde_json_writes_it(text in "[\\x00-\\x7F]{0,40}") {
            prop_assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn any_float_is_written_as_serde_json_writes_it(bits in any::<u64>()) {
            let (ours, serde_jsons) = written_f64(f64::from_bits(bits));
            prop_assert_eq!(ours, serde_jsons);
        }
    }
}
