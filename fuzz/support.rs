//! Fuzzing support shared by the fuzz targets of `keel` (`crates/keel/src/fuzz_tests.rs`) and
//! `keel-app` (`crates/keel-app/src/fuzz_tests.rs`), included into each by `#[path]`.
//!
//! Fuzzing on stable Rust (docs/fuzzing.md): proptest drives each target with inputs that are
//! either random bytes or a committed seed (`fuzz/corpus/<target>/`) put through a few random
//! mutations — byte flips, insertions of JSON/BSON-shaped tokens, deletions, duplications.
//! A target passes when no input panics it (errors are fine: they are the point).
//!
//! `cargo test` runs each target for `KEEL_FUZZ_CASES` inputs (default 2,000: the bounded run
//! `.ci/run` makes); the long runs are
//! `KEEL_FUZZ_CASES=1000000 cargo test --release -p keel --lib fuzz -- --test-threads 1`
//! (and `-p keel-app`). Each run prints its execution count and time.

use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Inputs per target: `KEEL_FUZZ_CASES`, else 2,000.
pub fn cases() -> u32 {
    std::env::var("KEEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// The committed seeds of `target`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let bytes = std::fs::read(entry.path()).expect("readable corpus file");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    assert!(!seeds.is_empty(), "empty fuzz corpus {}", dir.display());
    seeds.sort();
    seeds.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Fragments that make parsers take their rarer paths.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\"$",
    b"$",
    b".",
    b"\\u0000",
    b"\\ud800",
    b"1e308",
    b"-0",
    b"18446744073709551616",
    b"null",
    b"true",
    b"\"$oid\"",
    b"\"$date\"",
    b"\"$numberLong\"",
    b"\xff",
    b"\x00",
    b"\x7f\xff\xff\xff",
    b"=",
    b";",
    b"\n",
    b"[[[[",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert(at, token)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(at, byte) if len > 0 => bytes[at % len] = byte,
            Mutation::Insert(at, token) => {
                let at = if len == 0 { 0 } else { at % (len + 1) };
                bytes.splice(at..at, TOKENS[token].iter().copied());
            }
            Mutation::Delete(at, n) if len > 0 => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(at, n) if len > 0 => {
                let at = at % len;
                let piece: Vec<u8> = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    bytes
}

/// Random bytes, or a seed of `target` mutated 1 to 8 times.
pub fn input(target: &str) -> BoxedStrategy<Vec<u8>> {
    let seeds = corpus(target);
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        4 => (proptest::sample::select(seeds), proptest::collection::vec(mutation(), 1..8))
            .prop_map(|(seed, mutations)| mutate(seed, &mutations)),
    ]
    .boxed()
}

/// Runs `target` on `cases()` inputs of `strategy`; panics (with proptest's minimal input)
/// if any input panics the target. Prints the count and time.
pub fn run<S: Strategy>(name: &str, strategy: S, target: impl Fn(S::Value)) {
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&strategy, |value| {
        target(value);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("fuzz target {name} failed: {failure}");
    }
    eprintln!(
        "fuzz target {name}: {cases} executions without a panic in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `bytes` with a valid outer BSON frame (length prefix, trailing NUL), so mutations reach the
/// elements instead of all failing the length check.
pub fn framed_bson(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() < 5 {
        return bytes;
    }
    let len = bytes.len();
    bytes[..4].copy_from_slice(&(len as i32).to_le_bytes());
    bytes[len - 1] = 0;
    bytes
}
