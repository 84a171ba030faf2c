//! The binary's configuration handling: `keel config check`, and `serve` refusing to start
//! (exit 2, before listening) with every problem named by its key.

use std::process::Output;

use crate::helpers::keel_command;

const SECRET: &str = "s3cr3t-value-that-must-never-print-0123456789";

async fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let work_dir = tempfile::tempdir().unwrap();
    run_in(&work_dir, args, env).await
}

async fn run_in(
    work_dir: &tempfile::TempDir,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, String, String) {
    let mut command = keel_command(args, work_dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.expect("running keel");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[tokio::test]
async fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let database_url = format!("mongodb://admin:{SECRET}@db.internal/keel?replicaSet=rs0");
    let env = [
        ("KEEL_ENV", "production"),
        ("KEEL_SESSION__SECRET", SECRET),
        ("KEEL_DATABASE__URL", database_url.as_str()),
        ("KEEL_SERVER__PORT", "8080"),
    ];
    let (output, stdout, stderr) = run(&["config", "check"], &env).await;
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("port = 8080"), "{stdout}");
    assert!(stdout.contains("[REDACTED]"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    // Neither the URL's user nor its host: the whole URL is the secret. (`admin` alone now
    // appears in the output as the key `ops.admin_emails`.)
    assert!(
        !stdout.contains("admin:") && !stdout.contains("db.internal"),
        "the whole URL is a secret: {stdout}"
    );

    let (output, stdout, _) = run(&["config", "check", "--format", "json"], &env).await;
    assert!(output.status.success());
    let effective: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(effective["env"], "production");
    assert_eq!(effective["session"]["secret"], "[REDACTED]");
    assert_eq!(effective["server"]["shutdown_timeout"], "10s");
}

#[tokio::test]
async fn config_check_lists_every_problem_and_exits_2() {
    let env = [
        ("KEEL_SERVER__PORT", "eighty"),
        ("KEEL_SERVER__SPEED", "fast"),
        ("KEEL_LOG__FORMAT", "xml"),
    ];
    let (output, stdout, stderr) = run(&["config", "check"], &env).await;
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    for key in ["server.port", "server.speed: unknown key", "log.format"] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
}

#[tokio::test]
async fn an_unknown_key_in_a_file_is_an_error_naming_the_file() {
    let work_dir = tempfile::tempdir().unwrap();
    let config_dir = work_dir.path().join("conf");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(config_dir.join("default.toml"), "[server]\nprot = 8080\n").unwrap();
    let dir = config_dir.to_str().unwrap();
    let (output, _, stderr) =
        run_in(&work_dir, &["--config-dir", dir, "config", "check"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("server.prot: unknown key"), "{stderr}");
    assert!(stderr.contains("default.toml"), "{stderr}");
}

#[tokio::test]
async fn serve_refuses_a_bad_value_before_listening() {
    let (output, _, stderr) = run(&["serve"], &[("KEEL_SERVER__PORT", "99999")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("server.port"), "{stderr}");
}

#[tokio::test]
async fn production_without_a_session_secret_refuses_to_start() {
    let (output, _, stderr) = run(&["serve"], &[("KEEL_ENV", "production")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("session.secret"), "{stderr}");
}

#[tokio::test]
async fn production_with_a_weak_or_published_secret_refuses_to_start() {
    for secret in [
        "short-secret",
        "development-only-session-secret-not-for-production",
    ] {
        let env = [("KEEL_ENV", "production"), ("KEEL_SESSION__SECRET", secret)];
        let (output, stdout, stderr) = run(&["serve"], &env).await;
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr.contains("session.secret"), "{stderr}");
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "secret echoed"
        );
    }
}

#[tokio::test]
async fn a_missing_secret_file_is_reported_by_its_variable() {
    let env = [(
        "KEEL_SESSION__SECRET_FILE",
        "/nonexistent/run/secrets/session",
    )];
    let (output, _, stderr) = run(&["serve"], &env).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("KEEL_SESSION__SECRET_FILE"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_fails_when_nothing_listens() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let port = port.to_string();
    let (output, _, stderr) = run(&["healthcheck", "--port", &port], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
}

#[tokio::test]
async fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["config", "check", "--help"],
        &["healthcheck", "--help"],
        &["version", "--help"],
    ] {
        let (output, stdout, _) = run(args, &[]).await;
        assert!(output.status.success(), "{args:?}");
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
    }
    let (_, stdout, _) = run(&["serve", "--help"], &[]).await;
    assert!(stdout.contains("--role"), "{stdout}");
    let (output, stdout, _) = run(&["version"], &[]).await;
    assert!(output.status.success());
    assert!(stdout.starts_with("keel "), "{stdout}");
}
