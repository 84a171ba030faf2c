//! Supply chain: deny.toml says what may enter the dependency graph (licences, advisories,
//! duplicate versions, registries), the toolchain and lockfile are pinned and committed, and
//! every `unsafe` in keel's own code carries the comment that says why it is sound.

use std::path::Path;
use std::process::Command;

use crate::helpers::{read_repo_file, repo_root};

fn deny() -> toml::Table {
    read_repo_file("deny.toml")
        .parse()
        .expect("deny.toml is valid TOML")
}

#[test]
fn deny_allows_crates_io_only_and_no_git_sources() {
    let deny = deny();
    let sources = deny["sources"].as_table().expect("[sources]");
    assert_eq!(sources["unknown-registry"].as_str(), Some("deny"));
    assert_eq!(sources["unknown-git"].as_str(), Some("deny"));
    let registries = sources["allow-registry"]
        .as_array()
        .expect("allow-registry");
    assert_eq!(registries.len(), 1);
    assert_eq!(
        registries[0].as_str(),
        Some("https://github.com/rust-lang/crates.io-index")
    );
    assert!(
        sources
            .get("allow-git")
            .is_none_or(|g| g.as_array().is_some_and(Vec::is_empty))
    );
}

#[test]
fn deny_has_a_licence_allow_list_advisories_and_duplicate_warnings() {
    let deny = deny();
    let allow = deny["licenses"]["allow"]
        .as_array()
        .expect("[licenses] allow");
    let allow: Vec<&str> = allow.iter().filter_map(toml::Value::as_str).collect();
    for expected in ["MIT", "Apache-2.0"] {
        assert!(
            allow.contains(&expected),
            "{expected} missing from the allow-list"
        );
    }
    for copyleft in ["GPL-2.0", "GPL-3.0", "AGPL-3.0", "LGPL-2.1", "LGPL-3.0"] {
        assert!(
            !allow.iter().any(|l| l.starts_with(copyleft)),
            "{copyleft} allowed"
        );
    }
    assert!(deny["advisories"].as_table().is_some(), "[advisories]");
    assert_eq!(deny["bans"]["multiple-versions"].as_str(), Some("warn"));
    assert_eq!(deny["bans"]["wildcards"].as_str(), Some("deny"));
}

#[test]
fn the_toolchain_is_pinned_to_an_exact_release_and_the_lockfile_is_committed() {
    let toolchain: toml::Table = read_repo_file("rust-toolchain.toml").parse().expect("toml");
    let channel = toolchain["toolchain"]["channel"].as_str().expect("channel");
    let parts: Vec<&str> = channel.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "channel {channel} is not an exact x.y.z release"
    );
    let tracked = Command::new("git")
        .args(["ls-files", "--error-unmatch", "Cargo.lock"])
        .current_dir(repo_root())
        .output()
        .expect("git runs");
    assert!(tracked.status.success(), "Cargo.lock is not committed");
}

#[test]
fn ci_runs_cargo_deny_and_installs_it_when_missing() {
    let ci = read_repo_file(".ci/run");
    assert!(
        ci.contains("cargo deny") && ci.contains("check"),
        ".ci/run runs cargo deny check"
    );
    assert!(
        ci.contains("cargo install --locked cargo-deny"),
        ".ci/run installs cargo-deny"
    );
}

/// Line numbers of `unsafe` keywords (blocks, fns, impls) with no `SAFETY:` comment on the same
/// line or within the three lines above (clippy's `undocumented_unsafe_blocks` convention).
fn undocumented_unsafe(source: &str) -> Vec<usize> {
    let lines: Vec<&str> = source.lines().collect();
    unsafe_keyword_lines(source)
        .into_iter()
        .filter(|line| {
            let index = line - 1;
            !lines[index.saturating_sub(3)..=index]
                .iter()
                .any(|l| l.contains("SAFETY:"))
        })
        .collect()
}

/// Lines (1-based) where the keyword `unsafe` appears in code: a small lexer that skips
/// comments, string literals (also multi-line and raw ones) and char literals.
fn unsafe_keyword_lines(source: &str) -> Vec<usize> {
    let chars: Vec<char> = source.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let (mut found, mut line, mut i) = (Vec::new(), 1, 0);
    let count_lines =
        |from: usize, to: usize| chars[from..to].iter().filter(|c| **c == '\n').count();
    while i < chars.len() {
        let rest = &chars[i..];
        let next = match rest {
            ['/', '/', ..] => i + rest.iter().position(|c| *c == '\n').unwrap_or(rest.len()),
            ['/', '*', ..] => {
                let mut depth = 0;
                let mut j = i;
                loop {
                    match &chars[j..] {
                        ['/', '*', ..] => (depth, j) = (depth + 1, j + 2),
                        ['*', '/', ..] => (depth, j) = (depth - 1, j + 2),
                        [_, ..] => j += 1,
                        [] => break j,
                    }
                    if depth == 0 {
                        break j;
                    }
                }
            }
            ['r', '#' | '"', ..] if i == 0 || !is_word(chars[i - 1]) => {
                let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
                if rest.get(1 + hashes) == Some(&'"') {
                    let closing: Vec<char> = std::iter::once('"')
                        .chain(std::iter::repeat_n('#', hashes))
                        .collect();
                    let body = i + 2 + hashes;
                    (body..chars.len())
                        .find(|j| chars[*j..].starts_with(&closing))
                        .map_or(chars.len(), |j| j + closing.len())
                } else {
                    i + 1
                }
            }
            ['"', ..] => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                j + 1
            }
            ['\'', '\\', ..] => {
                i + rest
                    .get(3..)
                    .and_then(|r| r.iter().position(|c| *c == '\''))
                    .map_or(rest.len(), |p| p + 4)
            }
            ['\'', _, '\'', ..] => i + 3,
            _ if rest.starts_with(&['u', 'n', 's', 'a', 'f', 'e'])
                && (i == 0 || !is_word(chars[i - 1]))
                && !rest.get(6).copied().is_some_and(is_word) =>
            {
                found.push(line);
                i + 6
            }
            _ => i + 1,
        };
        let next = next.min(chars.len());
        line += count_lines(i, next);
        i = next;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_unsafe_in_keel_says_why_it_is_sound() {
    let mut files = Vec::new();
    for dir in ["crates", "tests", "benches"] {
        rust_files(&repo_root().join(dir), &mut files);
    }
    assert!(files.len() > 3, "found the sources");
    let mut offenders = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("read");
        for line in undocumented_unsafe(&source) {
            offenders.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe without a SAFETY: comment at {offenders:?}"
    );
}

#[test]
fn the_unsafe_scan_finds_an_undocumented_block_and_accepts_a_documented_one() {
    let source =
        "fn a() {\n    unsafe { f() }\n}\n// SAFETY: f has no preconditions.\nunsafe { f() };\n";
    assert_eq!(undocumented_unsafe(source), [2]);
    assert!(undocumented_unsafe("#![deny(unsafe_code)]\n// no unsafe here\n").is_empty());
    let strings = "let s = \"an unsafe \\\" word\";\nlet t = \"a\\\n  'unsafe-inline'\";\n";
    assert!(
        undocumented_unsafe(strings).is_empty(),
        "strings, also multi-line, are skipped"
    );
    let raw = "let r = r#\"unsafe\"#; /* unsafe /* nested */ unsafe */ let c = '\"';\nunsafe {}\n";
    assert_eq!(undocumented_unsafe(raw), [2]);
    assert_eq!(
        unsafe_keyword_lines("fn f<'a>(x: &'a u8) {}\nunsafe fn g() {}\n"),
        [2]
    );
}
