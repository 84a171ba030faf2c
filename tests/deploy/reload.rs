//! SIGHUP reload of a running `keel serve`: the log level and the CORS allow-list change without
//! a restart and without closing an open keep-alive connection; a broken configuration is
//! rejected with a log line naming the bad key, and the running settings stay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::handover::http_get;
use crate::helpers::repo_root;
use crate::process::{DEADLINE, KeelProcess, Scratch, free_port};
use crate::support::eventually_blocking;

/// A scratch config directory: the repository's files plus a `local.toml` the test rewrites.
fn config_dir(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.file("config");
    std::fs::create_dir_all(&dir).expect("mkdir config");
    for entry in std::fs::read_dir(repo_root().join("config")).expect("read config/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") && !path.ends_with("local.toml") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

fn write_local(dir: &Path, level: &str, origin: &str, extra: &str) {
    let text =
        format!("[log]\nlevel = \"{level}\"\n[server]\ncors_origins = [\"{origin}\"]\n{extra}");
    std::fs::write(dir.join("local.toml"), text).expect("write local.toml");
}

/// The `access-control-allow-origin` a CORS preflight from `origin` gets, if any.
fn allowed_origin(port: u16, origin: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let request = format!(
        "OPTIONS /api/health HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        (200..300).contains(&status),
        "preflight answered {status}: {response}"
    );
    response.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("access-control-allow-origin")
            .then(|| value.trim().to_owned())
    })
}

/// One HTTP/1.1 connection kept open across requests.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// GET /api/health on this connection; the status.
    fn health(&mut self, request_id: &str) -> u16 {
        let request =
            format!("GET /api/health HTTP/1.1\r\nHost: x\r\nx-request-id: {request_id}\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("write on the open connection");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok());
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        status.unwrap_or_else(|| panic!("not a status line: {status_line:?}"))
    }
}

#[test]
fn sighup_applies_a_new_log_level_and_cors_list_and_rejects_a_bad_file() {
    let scratch = Scratch::new();
    let config = config_dir(&scratch);
    let (one, two) = ("https://one.example.com", "https://two.example.com");
    write_local(&config, "warn", one, "");
    let port = free_port();
    let mut keel = KeelProcess::start(
        "keel",
        scratch.path(),
        &["serve", "--role", "api"],
        &[
            ("KEEL_ENV", "test".to_owned()),
            ("KEEL_CONFIG_DIR", config.display().to_string()),
            ("KEEL_SERVER__PORT", port.to_string()),
            ("KEEL_DATABASE__URL", scratch.database_url()),
        ],
    );
    eventually_blocking("keel to answer", || {
        matches!(http_get(port, "/api/health", "startup"), Ok((200, _))).then_some(())
    });
    let mut open_connection = KeepAlive::open(port);
    assert_eq!(open_connection.health("kept-1"), 200);
    assert_eq!(
        http_get(port, "/api/health", "quiet-at-warn")
            .expect("answer")
            .0,
        200
    );
    assert_eq!(allowed_origin(port, one).as_deref(), Some(one));
    assert_eq!(allowed_origin(port, two), None);

    // A valid change: info level, another origin; and a restart-only key, kept as it runs.
    write_local(&config, "info", two, "request_timeout = \"5s\"\n");
    keel.signal(libc::SIGHUP);
    let reloaded = keel.wait_for_line(&["configuration reloaded"]);
    assert!(
        reloaded.contains("log.level") && reloaded.contains("server.cors_origins"),
        "{reloaded}"
    );
    assert!(!reloaded.contains("request_timeout"), "{reloaded}");
    keel.wait_for_line(&["change only on restart", "server.request_timeout"]);
    assert_eq!(
        http_get(port, "/api/health", "logged-at-info")
            .expect("answer")
            .0,
        200
    );
    keel.wait_for_line(&["request completed", "logged-at-info"]);
    assert!(
        !keel.has_line("quiet-at-warn"),
        "the warn level was in effect before the reload"
    );
    assert_eq!(allowed_origin(port, two).as_deref(), Some(two));
    assert_eq!(allowed_origin(port, one), None);
    assert_eq!(
        open_connection.health("kept-2"),
        200,
        "the open connection survived the reload"
    );

    // A broken file: rejected with the bad key named; level and CORS stay as they were.
    // (server.port itself would not do: KEEL_SERVER__PORT, a stronger layer, sets it.)
    write_local(&config, "error", one, "body_limit = \"lots\"\n");
    keel.signal(libc::SIGHUP);
    let rejected = keel.wait_for_line(&["configuration reload rejected"]);
    assert!(rejected.contains("server.body_limit"), "{rejected}");
    assert_eq!(
        http_get(port, "/api/health", "still-info")
            .expect("answer")
            .0,
        200
    );
    keel.wait_for_line(&["request completed", "still-info"]);
    assert_eq!(allowed_origin(port, two).as_deref(), Some(two));
    assert_eq!(open_connection.health("kept-3"), 200);

    keel.signal(libc::SIGTERM);
    let exit = keel.wait_exit();
    assert!(exit.success(), "{exit:?}\n{}", keel.dump());
}
