//! deploy/compose.yaml (development, keel + MongoDB replica set) and deploy/compose.prod.yaml
//! (Swarm), parsed as YAML and checked for the keys that decide whether the stack works:
//! dependency order, the replica set, secrets wiring, rolling updates, resources.

use std::collections::BTreeSet;

use yaml_serde::{Mapping, Value};

use crate::helpers::{
    default_shutdown_timeout, parse_duration, parse_size, read_repo_file, repo_root,
};

fn load(relative: &str) -> Value {
    let mut value: Value = yaml_serde::from_str(&read_repo_file(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    value.apply_merge().expect("merge keys resolve");
    value
}

/// `value[a][b]...`, with the path in the panic message when a key is missing.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        v.get(*key)
            .unwrap_or_else(|| panic!("missing key {}", path.join(".")))
    })
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

/// A service's `environment`, in either the map or the `KEY=value` list form.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => panic!("environment value {other:?}"),
                };
                (k.as_str().expect("string key").to_string(), value)
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let (k, v) = item
                    .as_str()
                    .and_then(|s| s.split_once('='))
                    .expect("KEY=value");
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("environment is {other:?}"),
    }
}

fn env_var<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The secret names a service mounts (short `- name` or long `- source: name` form).
fn service_secrets(service: &Value) -> BTreeSet<String> {
    let Some(Value::Sequence(items)) = service.get("secrets") else {
        return BTreeSet::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(name) => name.clone(),
            Value::Mapping(_) => text(item, &["source"]).to_string(),
            other => panic!("secret entry {other:?}"),
        })
        .collect()
}

fn keys(map: &Value) -> BTreeSet<String> {
    map.as_mapping()
        .map(Mapping::keys)
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(String::from))
        .collect()
}

/// Every `KEEL_*_FILE=/run/secrets/NAME` points at a secret the service mounts and the file
/// declares; every mounted secret is declared at the top level.
fn assert_secrets_are_wired(compose: &Value, service: &Value) {
    let declared = keys(at(compose, &["secrets"]));
    let mounted = service_secrets(service);
    assert!(
        mounted.is_subset(&declared),
        "mounted {mounted:?} but declared {declared:?}"
    );
    for (key, value) in environment(service) {
        if key.starts_with("KEEL_") && key.ends_with("_FILE") {
            let name = value
                .strip_prefix("/run/secrets/")
                .expect("_FILE under /run/secrets");
            assert!(
                mounted.contains(name),
                "{key} points at unmounted secret {name}"
            );
        }
    }
}

fn assert_health_check_runs_keel(service: &Value) {
    let test: Vec<&str> = at(service, &["healthcheck", "test"])
        .as_sequence()
        .expect("healthcheck.test is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(test, ["CMD", "/usr/local/bin/keel", "healthcheck"]);
}

fn assert_stop_grace_outlasts_the_drain(service: &Value) {
    let grace = parse_duration(text(service, &["stop_grace_period"]));
    assert!(
        grace > default_shutdown_timeout(),
        "stop_grace_period {grace:?} <= drain timeout"
    );
}

#[test]
fn development_mongo_runs_as_a_single_node_replica_set() {
    let compose = load("deploy/compose.yaml");
    let mongo = at(&compose, &["services", "mongo"]);
    assert!(text(mongo, &["image"]).starts_with("mongo:7"));
    let command: Vec<&str> = at(mongo, &["command"])
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let repl = command
        .iter()
        .position(|w| *w == "--replSet")
        .expect("--replSet");
    assert_eq!(command.get(repl + 1), Some(&"rs0"));
    at(mongo, &["healthcheck", "test"]);
    let volume = at(mongo, &["volumes"]).as_sequence().expect("list")[0]
        .as_str()
        .expect("str");
    let (name, target) = volume.split_once(':').expect("name:/path");
    assert_eq!(target, "/data/db");
    assert!(
        keys(at(&compose, &["volumes"])).contains(name),
        "named volume {name} is declared"
    );
}

#[test]
fn development_replica_set_init_is_idempotent_and_waits_for_a_healthy_mongo() {
    let compose = load("deploy/compose.yaml");
    let init = at(&compose, &["services", "mongo-init"]);
    assert_eq!(
        text(init, &["depends_on", "mongo", "condition"]),
        "service_healthy"
    );
    assert_eq!(text(init, &["restart"]), "no");
    let script: String = at(init, &["command"])
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(script.contains("rs.initiate"));
    // Idempotent: initiate only when the set does not exist yet.
    assert!(script.contains("rs.status()") && script.contains("NotYetInitialized"));
    // The member's host is the service name the keel container resolves.
    assert!(script.contains("host: \"mongo:27017\""));
    assert!(
        script.contains("isWritablePrimary"),
        "init waits until the node is primary"
    );
}

#[test]
fn development_keel_starts_after_the_replica_set_and_is_configured_through_env() {
    let compose = load("deploy/compose.yaml");
    let keel = at(&compose, &["services", "keel"]);
    assert_eq!(
        text(keel, &["depends_on", "mongo-init", "condition"]),
        "service_completed_successfully"
    );
    let env = environment(keel);
    let url = env_var(&env, "KEEL_DATABASE__URL").expect("KEEL_DATABASE__URL");
    assert!(
        url.starts_with("mongodb://mongo:27017/") && url.contains("replicaSet=rs0"),
        "{url}"
    );
    assert_eq!(
        env_var(&env, "KEEL_SESSION__SECRET_FILE"),
        Some("/run/secrets/session_secret")
    );
    assert_eq!(env_var(&env, "KEEL_SERVER__HOST"), Some("0.0.0.0"));
    assert_secrets_are_wired(&compose, keel);
    let secret_file = text(&compose, &["secrets", "session_secret", "file"]);
    assert_eq!(secret_file, "./secrets/session_secret");
    assert!(
        repo_root().join("deploy/secrets/generate.sh").exists(),
        "the key has a generator"
    );
    assert_health_check_runs_keel(keel);
    assert_stop_grace_outlasts_the_drain(keel);
    // The build context is the repository root, the Dockerfile is ours.
    let context = repo_root()
        .join("deploy")
        .join(text(keel, &["build", "context"]));
    assert!(context.join(text(keel, &["build", "dockerfile"])).is_file());
    assert!(context.join("Cargo.lock").is_file());
}

#[test]
fn production_stack_rolls_out_start_first_and_rolls_back_on_failure() {
    let compose = load("deploy/compose.prod.yaml");
    let keel = at(&compose, &["services", "keel"]);
    assert!(
        keel.get("build").is_none(),
        "Swarm ignores build: deploy an image"
    );
    let image = text(keel, &["image"]);
    assert!(
        !image.ends_with(":latest"),
        "deploy a pinned tag, not latest"
    );
    let deploy = at(keel, &["deploy"]);
    assert_eq!(text(deploy, &["mode"]), "replicated");
    assert!(at(deploy, &["replicas"]).as_u64().expect("number") >= 2);
    assert!(
        at(deploy, &["placement", "max_replicas_per_node"])
            .as_u64()
            .is_some()
    );
    assert_eq!(text(deploy, &["update_config", "order"]), "start-first");
    assert_eq!(
        text(deploy, &["update_config", "failure_action"]),
        "rollback"
    );
    assert!(
        at(deploy, &["update_config", "parallelism"])
            .as_u64()
            .expect("n")
            >= 1
    );
    parse_duration(text(deploy, &["update_config", "monitor"]));
    assert_eq!(text(deploy, &["rollback_config", "order"]), "start-first");
    assert_eq!(text(deploy, &["restart_policy", "condition"]), "on-failure");
    assert!(
        at(deploy, &["restart_policy", "max_attempts"])
            .as_u64()
            .is_some()
    );
    assert_health_check_runs_keel(keel);
    assert_stop_grace_outlasts_the_drain(keel);
}

#[test]
fn production_resources_have_limits_above_reservations() {
    let compose = load("deploy/compose.prod.yaml");
    let resources = at(&compose, &["services", "keel", "deploy", "resources"]);
    let cpus = |path: &[&str]| -> f64 { text(resources, path).parse().expect("cpus as text") };
    let memory = |path: &[&str]| parse_size(text(resources, path));
    let (cpu_limit, cpu_reserved) = (cpus(&["limits", "cpus"]), cpus(&["reservations", "cpus"]));
    assert!(cpu_reserved > 0.0 && cpu_reserved <= cpu_limit);
    let (mem_limit, mem_reserved) = (
        memory(&["limits", "memory"]),
        memory(&["reservations", "memory"]),
    );
    assert!(mem_reserved > 0 && mem_reserved <= mem_limit);
}

#[test]
fn production_secrets_are_external_and_read_through_file_variables() {
    let compose = load("deploy/compose.prod.yaml");
    let keel = at(&compose, &["services", "keel"]);
    assert_secrets_are_wired(&compose, keel);
    for name in keys(at(&compose, &["secrets"])) {
        assert_eq!(
            at(&compose, &["secrets", &name, "external"]).as_bool(),
            Some(true),
            "{name}"
        );
    }
    let env = environment(keel);
    assert!(env_var(&env, "KEEL_SESSION__SECRET_FILE").is_some());
    assert!(env_var(&env, "KEEL_DATABASE__URL_FILE").is_some());
    // Secrets never travel as plain variables in production.
    assert!(env_var(&env, "KEEL_SESSION__SECRET").is_none());
    assert!(env_var(&env, "KEEL_DATABASE__URL").is_none());
    assert_eq!(env_var(&env, "KEEL_ENV"), Some("production"));
}

#[test]
fn production_service_is_on_an_overlay_network() {
    let compose = load("deploy/compose.prod.yaml");
    let networks: Vec<&str> = at(&compose, &["services", "keel", "networks"])
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!networks.is_empty());
    for network in networks {
        assert_eq!(text(&compose, &["networks", network, "driver"]), "overlay");
    }
}

/// `keel config check` with exactly the environment a stack gives keel (secret files replaced
/// by temporary ones): every variable must name a real key with a valid value.
fn assert_config_check_accepts(relative: &str) {
    let compose = load(relative);
    let keel_service = at(&compose, &["services", "keel"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(["config", "check"])
        .env_clear()
        .env("KEEL_CONFIG_DIR", repo_root().join("config"))
        .current_dir(dir.path());
    for (key, value) in environment(keel_service) {
        let value = match value.strip_prefix("/run/secrets/") {
            Some(name) => {
                let file = dir.path().join(name);
                let content = if name.contains("database_url") {
                    "mongodb://keel:pw@mongo-0,mongo-1/keel?replicaSet=rs0"
                } else {
                    "a-strong-session-key-for-the-config-check-0123456789"
                };
                std::fs::write(&file, content).expect("write secret");
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
        "{relative}: keel config check failed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("a-strong-session-key"),
        "the secret is redacted"
    );
}

#[test]
fn keel_accepts_the_development_stack_environment() {
    assert_config_check_accepts("deploy/compose.yaml");
}

#[test]
fn keel_accepts_the_production_stack_environment() {
    assert_config_check_accepts("deploy/compose.prod.yaml");
}

/// Behind Swarm's ingress mesh every client would share one address (and one rate-limit
/// bucket): keel publishes nothing, the edge proxy publishes in host mode on every node, and
/// keel believes X-Forwarded-For only from the overlay subnet the proxy is on.
#[test]
fn production_keeps_client_addresses_through_a_host_mode_edge_proxy() {
    let compose = load("deploy/compose.prod.yaml");
    let keel = at(&compose, &["services", "keel"]);
    assert!(
        keel.get("ports").is_none(),
        "keel must not be published through the ingress mesh"
    );
    let edge = at(&compose, &["services", "edge"]);
    assert!(!text(edge, &["image"]).ends_with(":latest"));
    assert_eq!(text(edge, &["deploy", "mode"]), "global");
    assert_eq!(
        text(edge, &["deploy", "update_config", "order"]),
        "stop-first"
    );
    let ports = at(edge, &["ports"]).as_sequence().expect("ports");
    assert!(!ports.is_empty());
    for port in ports {
        assert_eq!(text(port, &["mode"]), "host", "{port:?}");
    }
    let subnet = at(&compose, &["networks", "keelnet", "ipam", "config"])
        .as_sequence()
        .expect("ipam config")[0]
        .get("subnet")
        .and_then(Value::as_str)
        .expect("a fixed subnet");
    assert_eq!(
        env_var(&environment(keel), "KEEL_SERVER__TRUSTED_PROXIES"),
        Some(subnet),
        "keel trusts exactly the proxies' network"
    );
    let edge_networks = at(edge, &["networks"]).as_sequence().expect("list");
    assert!(edge_networks.iter().any(|n| n.as_str() == Some("keelnet")));

    // The proxy's configuration exists, replaces (never appends to) X-Forwarded-For and
    // forwards to the keel service.
    let source = text(&compose, &["configs", "keel_edge_nginx", "file"]);
    let conf = read_repo_file(&format!("deploy/{}", source.trim_start_matches("./")));
    let directives: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(directives.contains(&"proxy_set_header X-Forwarded-For $remote_addr;"));
    assert!(
        !conf.contains("$proxy_add_x_forwarded_for"),
        "appending trusts the client's header"
    );
    assert!(directives.contains(&"set $keel http://keel:3030;"));
}
