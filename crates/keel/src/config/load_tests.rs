use std::time::Duration;

use super::*;

fn options(dir: &Path, vars: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        config_dir: dir.to_path_buf(),
        config_dir_required: true,
        env_vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: Vec::new(),
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn problem_keys(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(_) => panic!("configuration unexpectedly valid"),
        Err(e) => e.problems().iter().map(|p| p.key.clone()).collect(),
    }
}

#[test]
fn later_layers_win() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[server]\nport = 4000\nrequest_timeout = \"5s\"\n",
    );
    write(dir.path(), "test.toml", "[server]\nport = 4001\n");
    write(dir.path(), "local.toml", "[log]\nlevel = \"debug\"\n");
    let vars = [("KEEL_ENV", "test"), ("KEEL_LOG__LEVEL", "warn")];
    let config = load(&options(dir.path(), &vars).with_override("server.host", "0.0.0.0")).unwrap();
    assert_eq!(config.env, Environment::Test);
    assert_eq!(config.server.port, 4001);
    assert_eq!(config.server.request_timeout, Duration::from_secs(5));
    assert_eq!(config.log.level, "warn");
    assert_eq!(config.server.host.to_string(), "0.0.0.0");
    assert_eq!(config.server.body_limit, 64 * 1024, "built-in default kept");
}

#[test]
fn environment_variables_are_typed_and_lists_split_on_commas() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("KEEL_SERVER__PORT", "8080"),
        ("KEEL_SERVER__SHUTDOWN_TIMEOUT", "250ms"),
        ("KEEL_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        (
            "KEEL_SERVER__CORS_ORIGINS",
            "https://a.example,https://b.example",
        ),
    ];
    let config = load(&options(dir.path(), &vars)).unwrap();
    assert_eq!(config.server.port, 8080);
    assert_eq!(config.server.shutdown_timeout, Duration::from_millis(250));
    assert_eq!(config.server.trusted_proxies.len(), 2);
    assert_eq!(
        config.server.cors_origins,
        ["https://a.example", "https://b.example"]
    );
}

#[test]
fn other_keel_variables_are_not_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("KEEL_TEST_MONGODB_URL", "mongodb://localhost"),
        ("KEEL_CONFIG_DIR", "/etc/keel"),
        ("PATH", "/usr/bin"),
    ];
    assert!(load(&options(dir.path(), &vars)).is_ok());
}

#[test]
fn every_bad_value_and_unknown_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[server]\nport = \"eighty\"\nbody_limit = \"10 parsecs\"\nspeed = 3\n[nonsense]\nx = 1\n",
    );
    let vars = [("KEEL_LOG__FORMAT", "xml"), ("KEEL_LOG__COLOUR", "red")];
    let keys = problem_keys(load(&options(dir.path(), &vars)));
    for expected in [
        "server.port",
        "server.body_limit",
        "server.speed",
        "nonsense",
        "log.format",
        "log.colour",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "{expected} not in {keys:?}"
        );
    }
}

#[test]
fn problems_say_which_file_a_bad_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "local.toml", "[server]\nport = 70000\n");
    let error = load(&options(dir.path(), &[])).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("server.port"), "{text}");
    assert!(text.contains("local.toml"), "{text}");
}

#[test]
fn env_is_not_a_file_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "default.toml", "env = \"production\"\n");
    assert_eq!(problem_keys(load(&options(dir.path(), &[]))), ["env"]);
}

#[test]
fn secrets_come_from_files_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("session_secret");
    std::fs::write(
        &secret_path,
        "a-very-long-production-secret-of-48-bytes-xxxxxx\n",
    )
    .unwrap();
    let path = secret_path.to_str().unwrap();
    let vars = [
        ("KEEL_ENV", "production"),
        ("KEEL_SESSION__SECRET_FILE", path),
    ];
    let config = load(&options(dir.path(), &vars)).unwrap();
    let secret = config.session.secret.unwrap();
    assert_eq!(
        secret.expose(),
        "a-very-long-production-secret-of-48-bytes-xxxxxx"
    );
}

#[test]
fn a_missing_secret_file_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KEEL_DATABASE__URL_FILE", "/nonexistent/keel/db-url")];
    let error = load(&options(dir.path(), &vars)).unwrap_err();
    assert_eq!(error.problems()[0].key, "database.url");
    assert!(error.to_string().contains("KEEL_DATABASE__URL_FILE"));
}

#[test]
fn a_secret_set_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s");
    std::fs::write(&file, "x".repeat(40)).unwrap();
    let vars = [
        ("KEEL_SESSION__SECRET", "y"),
        ("KEEL_SESSION__SECRET_FILE", file.to_str().unwrap()),
    ];
    assert_eq!(
        problem_keys(load(&options(dir.path(), &vars))),
        ["session.secret"]
    );
}

#[test]
fn production_without_a_session_secret_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KEEL_ENV", "production")];
    assert_eq!(
        problem_keys(load(&options(dir.path(), &vars))),
        ["session.secret"]
    );
}

#[test]
fn an_unknown_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KEEL_ENV", "staging")];
    assert_eq!(
        problem_keys(load(&options(dir.path(), &vars))),
        ["env (KEEL_ENV)"]
    );
}

#[test]
fn a_named_config_dir_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert_eq!(problem_keys(load(&options(&missing, &[]))), ["config_dir"]);
}

#[test]
fn the_shipped_files_load_in_every_environment() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for env in ["development", "test"] {
        let config = load(&options(&shipped, &[("KEEL_ENV", env)])).unwrap();
        assert_eq!(config.env.as_str(), env);
    }
    let secret = "p".repeat(40);
    let vars = [
        ("KEEL_ENV", "production"),
        ("KEEL_SESSION__SECRET", secret.as_str()),
    ];
    let production = load(&options(&shipped, &vars)).unwrap();
    assert_eq!(production.log_format(), super::super::LogFormat::Json);
}

#[test]
fn task_tables_are_named_by_the_operator_and_checked_each() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[tasks.nightly]\nschedule = \"0 0 3 * * *\"\nbatch_size = 50\n";
    write(dir.path(), "default.toml", good);
    let config = load(&options(dir.path(), &[])).unwrap();
    assert_eq!(
        config.tasks["nightly"].schedule.as_deref(),
        Some("0 0 3 * * *")
    );
    assert_eq!(
        config.tasks["nightly"].settings["batch_size"],
        serde_json::json!(50)
    );

    write(
        dir.path(),
        "default.toml",
        "[tasks.nightly]\nenabled = \"sometimes\"\n",
    );
    assert_eq!(
        problem_keys(load(&options(dir.path(), &[]))),
        ["tasks.nightly"]
    );
    write(
        dir.path(),
        "default.toml",
        "[tasks.hourly]\nschedule = \"every hour\"\n",
    );
    assert_eq!(
        problem_keys(load(&options(dir.path(), &[]))),
        ["tasks.hourly.schedule"]
    );
}

/// A task's environment variable (no `-` possible in its name) overrides the key of the
/// files' table for that task, and makes no second table.
#[test]
fn a_task_variable_overrides_its_hyphenated_table() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[tasks.process-data]\nschedule = \"0 */5 * * * *\"\nbatch_size = 100\n",
    );
    let vars = [
        ("KEEL_TASKS__PROCESS_DATA__SCHEDULE", "*/2 * * * * *"),
        ("KEEL_TASKS__PROCESS_DATA__ENABLED", "false"),
        ("KEEL_TASKS__NIGHTLY__SCHEDULE", "0 0 3 * * *"),
    ];
    let config = load(&options(dir.path(), &vars)).unwrap();
    let task = &config.tasks["process-data"];
    assert_eq!(task.schedule.as_deref(), Some("*/2 * * * * *"));
    assert!(!task.enabled);
    assert_eq!(task.settings["batch_size"], serde_json::json!(100));
    assert!(!config.tasks.contains_key("process_data"));
    // A task no file names keeps the variable's own name (`config_for` reads `a_b` for `a-b`).
    assert_eq!(
        config.tasks["nightly"].schedule.as_deref(),
        Some("0 0 3 * * *")
    );
}
