//! Secrets providers at start-up, through the binary: production keel reads its session key
//! from a directory of secret files (`secrets.provider = "directory"`, the Docker/Swarm
//! `/run/secrets` layout) and refuses to start when the provider has none.

use crate::handover::http_get;
use crate::process::{KeelProcess, Scratch, free_port};
use crate::support::eventually_blocking;

fn production(scratch: &Scratch, port: u16, secrets_dir: &std::path::Path) -> KeelProcess {
    KeelProcess::start(
        "keel",
        scratch.path(),
        &["serve", "--role", "api"],
        &[
            ("KEEL_ENV", "production".to_owned()),
            ("KEEL_SERVER__HOST", "127.0.0.1".to_owned()),
            ("KEEL_SERVER__PORT", port.to_string()),
            ("KEEL_DATABASE__URL", scratch.database_url()),
            ("KEEL_SECRETS__PROVIDER", "directory".to_owned()),
            ("KEEL_SECRETS__DIRECTORY", secrets_dir.display().to_string()),
        ],
    )
}

#[test]
fn production_reads_the_session_key_from_the_secrets_directory() {
    let scratch = Scratch::new();
    let secrets = scratch.file("run-secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    let key = "a-production-session-key-of-forty-eight-bytes-0001";
    std::fs::write(secrets.join("session_secret"), format!("{key}\n")).expect("write");
    let port = free_port();
    let mut keel = production(&scratch, port, &secrets);
    let filled = keel.wait_for_line(&["secrets filled from the provider"]);
    assert!(
        filled.contains("session.secret") && !filled.contains(key),
        "{filled}"
    );
    eventually_blocking("keel to answer", || {
        matches!(http_get(port, "/api/health", "up"), Ok((200, _))).then_some(())
    });
    assert!(
        !keel.output().iter().any(|line| line.contains(key)),
        "the key is never logged"
    );
    keel.signal(libc::SIGTERM);
    assert!(keel.wait_exit().success(), "{}", keel.dump());
}

#[test]
fn production_refuses_to_start_when_the_provider_has_no_session_key() {
    let scratch = Scratch::new();
    let secrets = scratch.file("empty-secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    let mut keel = production(&scratch, free_port(), &secrets);
    let exit = keel.wait_exit();
    assert_eq!(exit.code(), Some(2), "{}", keel.dump());
    keel.wait_for_line(&["session.secret", "required in production"]);
}
