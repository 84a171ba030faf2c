//! deploy/Dockerfile and .dockerignore, parsed into instructions and checked for what the
//! production image relies on: the pinned toolchain, a dependency layer built before the sources
//! are copied, a small non-root runtime, the health check, the stop signal, the port.

use std::collections::BTreeSet;

use crate::helpers::{read_repo_file, repo_root};

/// One Dockerfile instruction with its continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` image, its `AS` name, and the instructions after it.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

fn parse_instructions(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments and blank lines may sit between continuation lines too.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        pending.clear();
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continuation line"
    );
    instructions
}

fn parse_stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in parse_instructions(text) {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                [_] => None,
                other => panic!("unexpected FROM {other:?}"),
            };
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            let stage = stages
                .last_mut()
                .expect("no instruction may precede the first FROM");
            stage.instructions.push(instruction);
        }
    }
    stages
}

/// The words of an exec-form (`["a", "b"]`) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form (JSON array): {args}: {e}"))
}

fn dockerfile() -> Vec<Stage> {
    parse_stages(&read_repo_file("deploy/Dockerfile"))
}

fn runtime_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("at least one stage")
}

/// The stage that builds keel (`cargo build --release`).
fn builder_stage(stages: &[Stage]) -> &Stage {
    stages
        .iter()
        .find(|s| {
            s.instructions
                .iter()
                .any(|i| i.args.contains("cargo build --release"))
        })
        .expect("a stage runs cargo build --release")
}

/// Where the first instruction of `stage` that `pred` holds for is.
fn position(stage: &Stage, pred: impl Fn(&Instruction) -> bool) -> Option<usize> {
    stage.instructions.iter().position(pred)
}

fn find<'a>(stage: &'a Stage, keyword: &str) -> Vec<&'a Instruction> {
    stage
        .instructions
        .iter()
        .filter(|i| i.keyword == keyword)
        .collect()
}

#[test]
fn the_builder_uses_the_toolchain_pinned_in_rust_toolchain_toml() {
    let toolchain: toml::Table = read_repo_file("rust-toolchain.toml").parse().expect("toml");
    let channel = toolchain["toolchain"]["channel"]
        .as_str()
        .expect("channel is a string");
    let stages = dockerfile();
    assert!(stages.len() >= 2, "multi-stage build expected");
    let expected = format!("rust:{channel}-slim-bookworm");
    assert_eq!(
        stages[0].image, expected,
        "first stage must build with the pinned toolchain"
    );
}

#[test]
fn dependencies_are_compiled_in_a_layer_before_the_sources_are_copied() {
    let stages = dockerfile();
    let builder = builder_stage(&stages);
    let cook = position(builder, |i| {
        i.keyword == "RUN" && i.args.contains("cargo chef cook --release")
    })
    .expect("the builder cooks the dependencies from the recipe");
    let copy_sources = position(builder, |i| i.keyword == "COPY" && i.args == ". .")
        .expect("the builder copies the sources");
    let build = position(builder, |i| {
        i.keyword == "RUN" && i.args.contains("cargo build --release")
    })
    .expect("the builder builds keel");
    assert!(
        cook < copy_sources && copy_sources < build,
        "order must be cook, COPY . ., build"
    );
    let recipe_copy = position(builder, |i| {
        i.keyword == "COPY" && i.args.contains("recipe.json")
    })
    .expect("the recipe comes from the planner");
    assert!(recipe_copy < cook);
    // Reproducible: the lockfile decides every version, in both cargo invocations.
    for i in &builder.instructions {
        if i.keyword == "RUN" && i.args.contains("cargo") && !i.args.contains("cargo chef prepare")
        {
            assert!(
                i.args.contains("--locked"),
                "cargo without --locked: {}",
                i.args
            );
        }
    }
}

/// The image is built as scripts/build-release builds: every crate, the dependencies in the
/// cooked layer included, optimised with the committed execution profile.
#[test]
fn the_builder_optimises_every_crate_with_the_committed_execution_profile() {
    let stages = dockerfile();
    let builder = builder_stage(&stages);
    let copy = position(builder, |i| {
        i.keyword == "COPY" && i.args == "crates/keel-cli/keel.profdata /pgo/keel.profdata"
    })
    .expect("the builder copies the profile scripts/build-release uses");
    let flags = position(builder, |i| {
        i.keyword == "ENV" && i.args == "RUSTFLAGS=\"-Cprofile-use=/pgo/keel.profdata\""
    })
    .expect("RUSTFLAGS passes the profile to every crate");
    let cook = position(builder, |i| {
        i.keyword == "RUN" && i.args.contains("cargo chef cook")
    })
    .expect("the builder cooks");
    assert!(
        copy < flags && flags < cook,
        "the profile must be in place before the dependencies are compiled"
    );
    let script = read_repo_file("scripts/build-release");
    assert!(
        script.contains("readonly profile=crates/keel-cli/keel.profdata")
            && script.contains("-Cprofile-use="),
        "scripts/build-release uses the same profile"
    );
}

#[test]
fn every_copy_from_names_an_earlier_stage_and_every_context_source_exists() {
    let stages = dockerfile();
    let ignored = dockerignore_patterns();
    for (index, stage) in stages.iter().enumerate() {
        let earlier: BTreeSet<&str> = stages[..index]
            .iter()
            .filter_map(|s| s.name.as_deref())
            .collect();
        for copy in find(stage, "COPY") {
            let words: Vec<&str> = copy.args.split_whitespace().collect();
            if let Some(from) = words.iter().find_map(|w| w.strip_prefix("--from=")) {
                assert!(
                    earlier.contains(from),
                    "COPY --from={from} names no earlier stage"
                );
                continue;
            }
            let sources = &words[..words.len() - 1];
            for source in sources.iter().filter(|w| !w.starts_with("--")) {
                if *source == "." {
                    continue;
                }
                let path = source.trim_end_matches('/');
                assert!(
                    repo_root().join(path).exists(),
                    "COPY source {source} is not in the repo"
                );
                assert!(
                    !ignored.iter().any(|p| p.trim_start_matches('/') == path),
                    "COPY source {source} is excluded by .dockerignore"
                );
            }
        }
    }
}

#[test]
fn the_runtime_image_is_small_and_runs_as_a_non_root_user() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    assert!(
        runtime.image.starts_with("gcr.io/distroless/cc-debian12")
            || runtime.image.starts_with("debian:bookworm-slim"),
        "runtime base {} is not distroless/cc or debian slim",
        runtime.image
    );
    let users = find(runtime, "USER");
    let user = users.last().expect("the runtime stage sets USER");
    let name = user.args.split(':').next().unwrap_or_default();
    assert!(
        !matches!(name, "root" | "0" | ""),
        "runtime runs as {}",
        user.args
    );
    // No compiler, no sources in the final image: only the binary and config are copied in.
    for copy in find(runtime, "COPY") {
        assert!(
            copy.args != ". .",
            "the runtime stage must not copy the whole context"
        );
    }
}

#[test]
fn the_runtime_image_is_configured_for_production() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    let env: String = find(runtime, "ENV")
        .iter()
        .map(|i| format!("{} ", i.args))
        .collect();
    for setting in [
        "KEEL_ENV=production",
        "KEEL_SERVER__HOST=0.0.0.0",
        "KEEL_SERVER__PORT=3030",
    ] {
        assert!(
            env.split_whitespace().any(|w| w == setting),
            "ENV lacks {setting}"
        );
    }
    let exposed: Vec<&str> = find(runtime, "EXPOSE")
        .iter()
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        exposed
            .iter()
            .any(|p| p.split_whitespace().any(|p| p == "3030" || p == "3030/tcp"))
    );
    let stop = find(runtime, "STOPSIGNAL");
    assert_eq!(stop.last().map(|i| i.args.as_str()), Some("SIGTERM"));
    let volumes = find(runtime, "VOLUME");
    assert!(
        volumes.iter().any(|v| v.args.contains("/app/data")),
        "data volume expected"
    );
    let entrypoint = find(runtime, "ENTRYPOINT");
    let entrypoint = exec_form(&entrypoint.last().expect("ENTRYPOINT").args);
    let cmd = exec_form(&find(runtime, "CMD").last().expect("CMD").args);
    assert_eq!(entrypoint, ["/usr/local/bin/keel"]);
    assert_eq!(cmd, ["serve"]);
}

#[test]
fn the_health_check_runs_keel_healthcheck_in_exec_form() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    let check = find(runtime, "HEALTHCHECK");
    let check = check.last().expect("HEALTHCHECK in the runtime stage");
    // Distroless has no shell: the shell form would fail on every probe.
    let (options, command) = check
        .args
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    assert_eq!(exec_form(command), ["/usr/local/bin/keel", "healthcheck"]);
    for option in ["--interval=", "--timeout=", "--retries="] {
        assert!(options.contains(option), "HEALTHCHECK without {option}");
    }
}

fn dockerignore_patterns() -> Vec<String> {
    read_repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn dockerignore_keeps_build_output_history_and_secrets_out_of_the_context() {
    let patterns = dockerignore_patterns();
    for needed in [
        "/target",
        "/.git",
        "/data",
        "/config/local.toml",
        "/deploy/secrets",
    ] {
        assert!(
            patterns.iter().any(|p| p == needed),
            ".dockerignore lacks {needed}"
        );
    }
    for needed_in_build in [
        "Cargo.lock",
        "Cargo.toml",
        "crates",
        "rust-toolchain.toml",
        "config",
    ] {
        assert!(
            !patterns
                .iter()
                .any(|p| p.trim_start_matches('/') == needed_in_build),
            ".dockerignore must not exclude {needed_in_build}"
        );
    }
}

#[test]
fn the_parser_joins_continuations_and_names_stages() {
    let stages = parse_stages(
        "# c\nFROM a:1 AS one\nRUN x \\\n  # inner comment\n  && y\nFROM --platform=$P b AS two\nUSER 1\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("one"));
    assert_eq!(stages[0].instructions[0].args, "x && y");
    assert_eq!(stages[1].image, "b");
}
