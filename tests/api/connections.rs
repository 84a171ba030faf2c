//! The accept loop's bounds (`http/server.rs`): raw sockets that trickle a header, sit idle,
//! or hold the last connection slot.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::helpers::spawn_chassis_with;

const HEALTH: &[u8] = b"GET /api/health HTTP/1.1\r\nHost: keel\r\n\r\n";
const DEADLINE: Duration = Duration::from_secs(15);

/// Reads until the server closes the connection (EOF or reset); panics at `DEADLINE`.
async fn until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let result = timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "{what}: the server kept the connection open"
    );
    received
}

/// Reads one complete health response (it is small and has a Content-Length).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(DEADLINE, async {
        loop {
            let n = stream.read(&mut buf).await.expect("reading the response");
            assert!(n > 0, "connection closed before a response");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length: usize = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                if received.len() >= head_end + 4 + length {
                    return;
                }
            }
        }
    })
    .await
    .expect("a response within the deadline");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_header_sent_a_byte_at_a_time_is_cut_off_at_the_header_read_timeout() {
    let app = spawn_chassis_with(|c| {
        c.server.header_read_timeout = Duration::from_secs(1);
        c.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    // A slowloris client: bytes keep coming (so the connection is never idle), the head never
    // ends. Stop when the server hangs up or the deadline passes.
    let trickle =
        b"GET /api/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in trickle.iter().cycle() {
        if started.elapsed() > DEADLINE {
            break;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a trickled header kept its connection for {DEADLINE:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "cut off before the timeout: {took:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_chassis_with(|c| c.server.idle_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let idle_since = Instant::now();
    let rest = until_closed(&mut stream, "an idle keep-alive connection").await;
    assert!(rest.is_empty(), "nothing more is sent: {rest:?}");
    assert!(idle_since.elapsed() >= Duration::from_millis(900));

    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    until_closed(&mut silent, "a connection that never sent a byte").await;
}

#[tokio::test]
async fn past_max_connections_clients_wait_until_a_slot_frees() {
    let app = spawn_chassis_with(|c| c.server.max_connections = 1).await;
    let mut first = TcpStream::connect(app.address).await.unwrap();
    first.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));

    // The kernel completes the handshake (listen queue), keel does not take the connection
    // while the first one holds the only slot.
    let mut second = TcpStream::connect(app.address).await.unwrap();
    second.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the second connection was served while the first held the slot"
    );

    drop(first);
    let response = read_response(&mut second).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
