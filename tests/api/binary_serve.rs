//! `keel serve` as a process: graceful shutdown, second signal, healthcheck, and secrets kept
//! out of the logs. These open the embedded store (`./data` in a temporary directory).

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{KeelProcess, keel_command};
use crate::support::eventually_within;

const SECRET: &str = "log-secret-6f1d2c-that-must-never-appear-anywhere";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Connecting is refused once the listener has closed; polls until then (bounded).
async fn wait_until_refused(address: std::net::SocketAddr) {
    eventually_within(
        "the listener to refuse connections after SIGTERM",
        Duration::from_secs(10),
        || async {
            match tokio::net::TcpStream::connect(address).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_drains_the_in_flight_request_refuses_new_ones_and_exits_0() {
    let mut keel = KeelProcess::serve(&[]);
    let address = keel.address().await;
    // Finishes 300 ms after the shutdown began: certainly in flight across SIGTERM.
    let in_flight = tokio::spawn(
        client()
            .get(format!(
                "http://{address}/__test/slow?ms=300&after_shutdown=true"
            ))
            .send(),
    );
    keel.wait_for_log("test slow request started").await;

    keel.signal(libc::SIGTERM);
    keel.wait_for_log("shutdown started").await;
    wait_until_refused(address).await;

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(response.status(), StatusCode::OK);
    let status = keel.wait_for_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "output:\n{}",
        keel.lines().join("\n")
    );
    keel.wait_for_log("shutdown complete").await;
}

#[tokio::test]
async fn a_second_signal_exits_at_once_with_130() {
    let mut keel = KeelProcess::serve(&[]);
    let address = keel.address().await;
    // Would keep the drain busy for a minute.
    let _in_flight = tokio::spawn(
        client()
            .get(format!(
                "http://{address}/__test/slow?ms=60000&after_shutdown=true"
            ))
            .send(),
    );
    keel.wait_for_log("test slow request started").await;
    keel.signal(libc::SIGTERM);
    keel.wait_for_log("shutdown started").await;
    keel.signal(libc::SIGINT);
    let status = keel.wait_for_exit().await;
    assert_eq!(status.code(), Some(130));
}

#[tokio::test]
async fn healthcheck_exits_0_against_a_running_server() {
    let mut keel = KeelProcess::serve(&[]);
    let address = keel.address().await;
    let port = address.port().to_string();
    let output = keel_command(&["healthcheck", "--port", &port], &keel.work_dir)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    keel.signal(libc::SIGTERM);
    assert_eq!(keel.wait_for_exit().await.code(), Some(0));
}

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_debug() {
    let mut keel = KeelProcess::serve(&[
        ("KEEL_SESSION__SECRET", SECRET),
        ("KEEL_LOG__LEVEL", "debug"),
    ]);
    let address = keel.address().await;
    let response = client()
        .get(format!("http://{address}/api/health"))
        .header("cookie", "sessionId=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    keel.wait_for_log("request completed").await;
    keel.signal(libc::SIGTERM);
    assert_eq!(keel.wait_for_exit().await.code(), Some(0));

    let output = keel.lines().join("\n");
    assert!(!output.contains(SECRET), "secret leaked:\n{output}");
    // The effective configuration was logged at debug, with the secret redacted.
    let config_line = keel.wait_for_log("effective configuration").await;
    assert!(
        config_line.to_string().contains("[REDACTED]"),
        "{config_line}"
    );
}

#[tokio::test]
async fn production_logs_are_json_lines_with_the_process_fields() {
    // Production refuses port 0: borrow a free port from the OS.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
        .to_string();
    let mut keel = KeelProcess::serve(&[
        ("KEEL_ENV", "production"),
        ("KEEL_SESSION__SECRET", SECRET),
        ("KEEL_SERVER__HOST", "127.0.0.1"),
        ("KEEL_SERVER__PORT", port.as_str()),
    ]);
    let address = keel.address().await;
    client()
        .get(format!("http://{address}/api/health"))
        .header("x-request-id", "req-json-1")
        .header("user-agent", "keel-tests")
        .send()
        .await
        .unwrap();
    let line = keel.wait_for_log("request completed").await;
    for field in [
        "timestamp",
        "level",
        "service",
        "env",
        "version",
        "hostname",
    ] {
        assert!(line[field].is_string(), "{field} missing: {line}");
    }
    assert_eq!(line["env"], "production");
    assert_eq!(line["request_id"], "req-json-1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["path"], "/api/health");
    assert_eq!(line["user_agent"], "keel-tests");
    assert!(line["duration_ms"].is_number(), "{line}");
    keel.signal(libc::SIGTERM);
    assert_eq!(keel.wait_for_exit().await.code(), Some(0));
}

#[tokio::test]
async fn development_logs_into_a_pipe_carry_no_colour_codes() {
    let keel = KeelProcess::serve(&[("KEEL_LOG__FORMAT", "pretty")]);
    // The readable format names the bound address on its "listening" line.
    let listening = keel.wait_for_line(|line| line.contains("listening")).await;
    let output = keel.lines().join("\n");
    assert!(
        !output.contains('\u{1b}'),
        "escape codes in piped output:\n{output:?}"
    );
    assert!(listening.contains("INFO"), "{listening}");
}
