//! Zero-downtime restart on one host: two `keel serve` processes on one port (SO_REUSEPORT,
//! `server.reuse_port`). The old one gets SIGTERM and drains its in-flight request while the new
//! one answers every new connection. Without reuse_port the second process cannot start.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::process::{DEADLINE, KeelProcess, Scratch, free_port, listeners_on};
use crate::support::eventually_blocking;

/// One HTTP/1.1 GET on a fresh connection (so the kernel picks a listener for each request).
/// Returns the status and the body.
pub fn http_get(port: u16, path: &str, request_id: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, &[("x-request-id", request_id)])
}

pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn serve(name: &str, scratch: &Scratch, port: u16, reuse_port: bool) -> KeelProcess {
    KeelProcess::start(
        name,
        scratch.path(),
        &["serve", "--role", "api"],
        &[
            ("KEEL_ENV", "test".to_owned()),
            ("KEEL_LOG__LEVEL", "info".to_owned()),
            ("KEEL_SERVER__PORT", port.to_string()),
            ("KEEL_SERVER__REUSE_PORT", reuse_port.to_string()),
            ("KEEL_SERVER__SHUTDOWN_TIMEOUT", "20s".to_owned()),
            ("KEEL_DATABASE__URL", scratch.database_url()),
        ],
    )
}

/// Sends health probes with fresh ids until one of them is logged by `process`.
fn wait_until_it_answers_on_the_shared_port(process: &KeelProcess, port: u16, prefix: &str) {
    let mut attempt = 0;
    eventually_blocking(
        &format!("{} to answer on port {port}", process.name),
        || {
            attempt += 1;
            let id = format!("{prefix}-{attempt}");
            match http_get(port, "/api/health", &id) {
                Ok((200, _)) => process.has_line(&id).then_some(()),
                _ => None,
            }
        },
    );
}

#[test]
fn a_new_process_takes_over_the_port_while_the_old_one_drains() {
    let port = free_port();
    let (old_dir, new_dir) = (Scratch::new(), Scratch::new());
    let mut old = serve("old", &old_dir, port, true);
    old.wait_for_line(&["listening", "reuse_port: true"]);
    wait_until_it_answers_on_the_shared_port(&old, port, "to-old");

    // A request in flight on the old process: it starts its 1.5 s only once shutdown began.
    let slow = std::thread::spawn(move || {
        http_get(
            port,
            "/__test/slow?ms=1500&after_shutdown=true",
            "slow-on-old",
        )
    });
    old.wait_for_line(&["test slow request started", "slow-on-old"]);

    // The new process binds the same port while the old one still listens.
    let mut new = serve("new", &new_dir, port, true);
    new.wait_for_line(&["listening", "reuse_port: true"]);
    assert_eq!(listeners_on(port), 2, "both processes listen on {port}");
    wait_until_it_answers_on_the_shared_port(&new, port, "to-new");

    old.signal(libc::SIGTERM);
    old.wait_for_line(&["shutdown started", "SIGTERM"]);
    // The old listener closes at once; from then on the kernel sends everything to the new one.
    eventually_blocking("the old listener to close", || {
        (listeners_on(port) == 1).then_some(())
    });
    for probe in 0..20 {
        let id = format!("during-drain-{probe}");
        let answer = http_get(port, "/api/health", &id);
        assert!(
            matches!(answer, Ok((200, _))),
            "probe {probe} failed: {answer:?}\n{}",
            new.dump()
        );
        new.wait_for_line(&[&id]);
    }
    assert!(
        old.is_running(),
        "the old process must still be draining\n{}",
        old.dump()
    );

    let (status, body) = slow
        .join()
        .expect("slow thread")
        .expect("slow request answered");
    assert_eq!(
        status, 200,
        "the in-flight request finished on the old process: {body}"
    );
    assert!(body.contains("\"sleptMs\":1500"), "{body}");
    let exit = old.wait_exit();
    assert!(exit.success(), "old exited with {exit:?}\n{}", old.dump());
    old.wait_for_line(&["shutdown complete"]);

    assert!(matches!(
        http_get(port, "/api/health", "after-old"),
        Ok((200, _))
    ));
    new.signal(libc::SIGTERM);
    assert!(new.wait_exit().success(), "{}", new.dump());
}

#[test]
fn without_reuse_port_a_second_process_cannot_bind_the_port() {
    let port = free_port();
    let (first_dir, second_dir) = (Scratch::new(), Scratch::new());
    let mut first = serve("first", &first_dir, port, false);
    first.wait_for_line(&["listening", "reuse_port: false"]);
    let mut second = serve("second", &second_dir, port, false);
    let exit = second.wait_exit();
    assert!(
        !exit.success(),
        "the second process must fail to bind\n{}",
        second.dump()
    );
    second.wait_for_line(&["Address already in use"]);
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success());
}
