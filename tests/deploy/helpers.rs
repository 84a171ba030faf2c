//! Shared by the deploy tests: the repository's paths and small parsers of duration and size
//! notations used by Docker, Compose and systemd.

use std::path::PathBuf;
use std::time::Duration;

/// The repository root (this crate lives in `crates/keel-cli`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `40s`, `1m30s`, `500ms`, `2min`, `1h` (Docker/Compose and systemd spellings). A bare number
/// is seconds, as in systemd.
pub fn parse_duration(text: &str) -> Duration {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        assert!(digits > 0, "bad duration {text:?}");
        let value: u64 = rest[..digits].parse().expect("digits only");
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(value),
            "s" | "sec" => Duration::from_secs(value),
            "m" | "min" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            other => panic!("unknown duration unit {other:?} in {text:?}"),
        };
    }
    total
}

/// `256M`, `1G`, `512m`, `64MiB` → bytes (Compose and systemd spellings, binary multiples).
pub fn parse_size(text: &str) -> u64 {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let value: u64 = text[..digits]
        .parse()
        .unwrap_or_else(|_| panic!("bad size {text:?}"));
    let factor = match text[digits..]
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("unknown size unit {other:?} in {text:?}"),
    };
    value * factor
}

/// keel's default `server.shutdown_timeout`: every stop deadline in deploy/ must exceed it.
pub fn default_shutdown_timeout() -> Duration {
    keel::config::ServerConfig::default().shutdown_timeout
}

#[test]
fn duration_and_size_notations_parse() {
    assert_eq!(parse_duration("40s"), Duration::from_secs(40));
    assert_eq!(parse_duration("1m30s"), Duration::from_secs(90));
    assert_eq!(parse_duration("2min"), Duration::from_secs(120));
    assert_eq!(parse_duration("45"), Duration::from_secs(45));
    assert_eq!(parse_size("256M"), 256 << 20);
    assert_eq!(parse_size("1G"), 1 << 30);
    assert_eq!(parse_size("64MiB"), 64 << 20);
}
