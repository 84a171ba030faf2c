//! deploy/keel.service and deploy/keel.socket: the PM2 role (restart, memory ceiling, graceful
//! stop), the sandbox, and secrets through LoadCredential. Parsed here, and verified by systemd's
//! own `systemd-analyze verify` (a warning fails the test).

use std::collections::BTreeMap;
use std::process::Command;

use crate::helpers::{default_shutdown_timeout, parse_duration, parse_size, read_repo_file};

/// section → key → every value the key was given (systemd keys may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        let section = section.clone().expect("a key before any section");
        let entries = unit
            .entry(section)
            .or_default()
            .entry(key.trim().to_string())
            .or_default();
        entries.push(value.trim().to_string());
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a [String] {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The effective value: the last assignment wins, as in systemd.
fn value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    values(unit, section, key)
        .last()
        .unwrap_or_else(|| panic!("[{section}] {key}= is not set"))
}

fn service() -> Unit {
    parse_unit(&read_repo_file("deploy/keel.service"))
}

/// `Environment=A=1` lines → (A, 1).
fn environment(unit: &Unit) -> BTreeMap<String, String> {
    values(unit, "Service", "Environment")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("Environment=KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_service_restarts_on_failure_and_stops_gracefully() {
    let unit = service();
    assert_eq!(value(&unit, "Service", "Restart"), "on-failure");
    assert_eq!(value(&unit, "Service", "KillSignal"), "SIGTERM");
    let stop = parse_duration(value(&unit, "Service", "TimeoutStopSec"));
    assert!(
        stop > default_shutdown_timeout(),
        "TimeoutStopSec {stop:?} must exceed the drain"
    );
    let memory_max = parse_size(value(&unit, "Service", "MemoryMax"));
    assert!(
        memory_max >= 64 << 20,
        "MemoryMax {memory_max} is too small to run keel"
    );
    assert_eq!(
        value(&unit, "Service", "ExecStart"),
        "/usr/local/bin/keel serve"
    );
    assert!(value(&unit, "Service", "ExecReload").contains("-HUP $MAINPID"));
}

#[test]
fn the_service_runs_sandboxed_as_an_unprivileged_user() {
    let unit = service();
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "keel"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(&unit, "Service", key), expected, "{key}");
    }
    assert_ne!(value(&unit, "Service", "User"), "root");
    // The data directory is the one writable place, and the embedded store is put there.
    let writable = value(&unit, "Service", "ReadWritePaths");
    assert_eq!(writable, "/var/lib/keel");
    let url = environment(&unit)
        .remove("KEEL_DATABASE__URL")
        .expect("KEEL_DATABASE__URL");
    assert_eq!(url, format!("embedded://{writable}"));
}

#[test]
fn every_credential_is_read_through_a_file_variable() {
    let unit = service();
    let env = environment(&unit);
    let credentials = values(&unit, "Service", "LoadCredential");
    assert!(
        !credentials.is_empty(),
        "secrets come in through LoadCredential"
    );
    for credential in credentials {
        let (name, source) = credential
            .split_once(':')
            .expect("LoadCredential=name:path");
        assert!(source.starts_with("/etc/keel/credentials/"), "{source}");
        let expected = format!("%d/{name}");
        let var = env
            .iter()
            .find(|(_, v)| **v == expected)
            .unwrap_or_else(|| panic!("no KEEL_..._FILE=%d/{name}"));
        assert!(
            var.0.starts_with("KEEL_") && var.0.ends_with("_FILE"),
            "{}",
            var.0
        );
    }
    // Non-secret settings come from the environment file; its example sets no secret.
    assert_eq!(
        value(&unit, "Service", "EnvironmentFile"),
        "/etc/keel/keel.env"
    );
    let example = read_repo_file("deploy/keel.env.example");
    for line in example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.is_empty())
    {
        let (key, _) = line.split_once('=').expect("KEY=value");
        assert!(key.starts_with("KEEL_"), "{key}");
        assert!(
            !key.contains("SECRET") && !key.contains("DATABASE__URL"),
            "secret in env file"
        );
    }
}

#[test]
fn the_socket_listens_on_the_port_the_service_would_bind() {
    let socket = parse_unit(&read_repo_file("deploy/keel.socket"));
    let listen = value(&socket, "Socket", "ListenStream");
    assert!(listen.ends_with(":3030"), "{listen}");
    assert_eq!(value(&socket, "Socket", "Service"), "keel.service");
    let example = read_repo_file("deploy/keel.env.example");
    assert!(example.lines().any(|l| l == "KEEL_SERVER__PORT=3030"));
}

/// systemd's own checker, on copies whose ExecStart points at the built binary (verify rejects
/// a unit whose program does not exist). Any output - even a warning - is a failure.
#[test]
fn systemd_analyze_verifies_the_units_without_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keel = env!("CARGO_BIN_EXE_keel");
    let service = read_repo_file("deploy/keel.service").replace("/usr/local/bin/keel", keel);
    std::fs::write(dir.path().join("keel.service"), service).expect("write");
    std::fs::write(
        dir.path().join("keel.socket"),
        read_repo_file("deploy/keel.socket"),
    )
    .expect("write");
    // The same file installed as a template (two instances sharing the port, docs/deploy.md).
    std::fs::copy(
        dir.path().join("keel.service"),
        dir.path().join("keel@a.service"),
    )
    .expect("copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(["keel.service", "keel.socket", "keel@a.service"].map(|f| dir.path().join(f)))
        .output()
        .expect("systemd-analyze is installed (Debian package systemd); .ci/run installs it");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}

#[test]
fn the_unit_parser_keeps_repeated_keys_in_order() {
    let unit = parse_unit("[Service]\nEnvironment=A=1\n# c\nEnvironment=B=2 C=3\n");
    assert_eq!(values(&unit, "Service", "Environment"), ["A=1", "B=2 C=3"]);
    assert_eq!(environment(&unit).get("C").map(String::as_str), Some("3"));
}

/// `keel config check` with the environment keel.service gives keel (`Environment=` lines and
/// the example environment file; `%d/name` credentials replaced by temporary files).
#[test]
fn keel_accepts_the_service_environment() {
    let unit = service();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(["config", "check"])
        .env_clear()
        .env(
            "KEEL_CONFIG_DIR",
            crate::helpers::repo_root().join("config"),
        )
        .current_dir(dir.path());
    let example = read_repo_file("deploy/keel.env.example");
    let file_vars = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('=').expect("KEY=value"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    for (key, value) in file_vars.chain(environment(&unit)) {
        let value = match value.strip_prefix("%d/") {
            Some(name) => {
                let file = dir.path().join(name);
                std::fs::write(&file, "a-strong-session-key-for-the-unit-check-0123456789")
                    .expect("write credential");
                file.display().to_string()
            }
            None => value,
        };
        command.env(key, value);
    }
    let output = command.output().expect("run keel config check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "keel config check failed:\n{stderr}"
    );
}
