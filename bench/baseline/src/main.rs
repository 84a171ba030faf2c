//! The bare baseline of `bench/load.sh`: what this machine does for keel's two hottest requests
//! with no keel code at all — hyper, a tokio runtime, and SQLite (WAL, one connection per
//! worker thread) holding the items as ready JSON text.
//!
//! - `GET /api/health` answers keel's body shape: `{"status":"healthy","timestamp":"…"}`.
//! - `POST /api/getData` with a `sessionId` cookie (a logged-in-looking request; nothing is
//!   checked) reads `limit` from the JSON body and answers the first `limit` items in keel's
//!   shape: `{"data":[…],"success":true}`. Without the cookie: 401.
//!
//! Usage: `keel-baseline PORT DATABASE_FILE [ITEMS [HEADERS_FILE]]` — seeds ITEMS (default
//! 1,000) items in the exact JSON keel serves for them, then serves on 127.0.0.1:PORT until
//! killed. With HEADERS_FILE (`name: value` lines, as `curl -D` prints a keel response's head)
//! every response also carries those headers, each a static value but `x-request-id`, which
//! is fresh per response in the same UUID shape: what a bare server pays to send the bytes
//! keel sends, without doing keel's work (`bench/load.sh` loads health that way too).

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rusqlite::Connection;
use tokio::net::TcpListener;

const MAX_BODY: usize = 64 * 1024;

thread_local! {
    /// One connection per worker thread, opened on first use.
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

#[derive(serde::Deserialize)]
struct GetData {
    limit: Option<u32>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The items keel's load script creates (`item-N`, brand Acme, tag `load`), as keel's JSON.
fn seed(path: &Path, items: u32) -> rusqlite::Result<()> {
    let mut conn = open(path)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    )?;
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM items", [])?;
    {
        let mut insert = tx.prepare("INSERT INTO items (id, json) VALUES (?1, ?2)")?;
        for i in 1..=items {
            // Parsed from the text the load script sends, as keel parses it.
            let price: f64 = format!("{}.{:02}", i % 500, i % 100)
                .parse()
                .expect("a decimal literal parses");
            let json = serde_json::json!({
                "_id": format!("{:024x}", 0x6650_0000_0000_0000_0000_0000u128 + u128::from(i)),
                "name": format!("item-{i}"),
                "brand": "Acme",
                "price": price,
                "tags": ["load"],
                "createdAt": "2026-12-01T12:00:00Z",
            });
            insert.execute(rusqlite::params![i, json.to_string()])?;
        }
    }
    tx.commit()
}

/// What the server is started with: the database, and the headers every response carries.
struct Served {
    database: PathBuf,
    headers: Vec<(HeaderName, Fixed)>,
}

/// A header's value on every response: the same one, or a fresh request id (`x-request-id`,
/// told apart once when the file is read rather than by comparing names on every response).
#[derive(Debug)]
enum Fixed {
    Value(HeaderValue),
    RequestId,
}

/// `HEADERS_FILE`'s lines (`name: value`; the status line, blank lines, and the headers hyper or
/// `json` set themselves — `date`, `content-length`, `content-type` — are skipped), made
/// `'static` once so that cloning one per response copies two pointers, as a `from_static`
/// header in a hand-written server would.
fn read_headers(file: &Path) -> Result<Vec<(HeaderName, Fixed)>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut headers = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("HTTP/") {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "{}: not a `name: value` line: {line:?}",
                file.display()
            ));
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        // Visible ASCII (and tabs) only: what `HeaderValue::from_static` takes without panicking.
        let is_visible = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
        if HeaderName::from_bytes(name.as_bytes()).is_err() || !value.bytes().all(is_visible) {
            return Err(format!("{}: not a valid header: {line:?}", file.display()));
        }
        if matches!(name.as_str(), "date" | "content-length" | "content-type") {
            continue;
        }
        let value = if name == "x-request-id" {
            Fixed::RequestId
        } else {
            Fixed::Value(HeaderValue::from_static(Box::leak(value.into())))
        };
        headers.push((HeaderName::from_static(Box::leak(name.into())), value));
    }
    Ok(headers)
}

/// A request id in the UUID shape keel's has (36 characters), from a counter.
fn request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff);
    HeaderValue::from_str(&id).expect("hex digits and dashes are a valid header value")
}

fn json(served: &Served, status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if !served.headers.is_empty() {
        headers.reserve(served.headers.len() + 1);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &served.headers {
        let value = match value {
            Fixed::Value(value) => value.clone(),
            Fixed::RequestId => request_id(),
        };
        headers.append(name.clone(), value);
    }
    response
}

fn health(served: &Served) -> Response<Full<Bytes>> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = format!("{{\"status\":\"healthy\",\"timestamp\":\"{now}\"}}");
    json(served, StatusCode::OK, body.into_bytes())
}

fn first_items(path: &Path, limit: u32) -> rusqlite::Result<Vec<u8>> {
    CONNECTION.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(open(path)?);
        }
        let conn = slot.as_ref().expect("opened just above");
        let mut select = conn.prepare_cached("SELECT json FROM items ORDER BY id LIMIT ?1")?;
        let mut rows = select.query([limit])?;
        let mut body = Vec::with_capacity(256 * limit as usize);
        body.extend_from_slice(b"{\"data\":[");
        let mut first = true;
        while let Some(row) = rows.next()? {
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(row.get_ref(0)?.as_bytes()?);
        }
        body.extend_from_slice(b"],\"success\":true}");
        Ok(body)
    })
}

async fn get_data(served: &Served, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let logged_in = request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("sessionId="));
    if !logged_in {
        return json(
            served,
            StatusCode::UNAUTHORIZED,
            b"{\"success\":false}".to_vec(),
        );
    }
    let Ok(body) = Limited::new(request.into_body(), MAX_BODY).collect().await else {
        return json(
            served,
            StatusCode::PAYLOAD_TOO_LARGE,
            b"{\"success\":false}".to_vec(),
        );
    };
    let Ok(query) = serde_json::from_slice::<GetData>(&body.to_bytes()) else {
        return json(
            served,
            StatusCode::BAD_REQUEST,
            b"{\"success\":false}".to_vec(),
        );
    };
    match first_items(&served.database, query.limit.unwrap_or(100).min(1000)) {
        Ok(body) => json(served, StatusCode::OK, body),
        Err(e) => json(
            served,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"success\":false,\"error\":\"{e}\"}}").into_bytes(),
        ),
    }
}

async fn route(
    served: Arc<Served>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/api/health") => health(&served),
        (&Method::POST, "/api/getData") => get_data(&served, request).await,
        _ => json(
            &served,
            StatusCode::NOT_FOUND,
            b"{\"success\":false}".to_vec(),
        ),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(db)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: keel-baseline PORT DATABASE_FILE [ITEMS [HEADERS_FILE]]");
        std::process::exit(2);
    };
    let port: u16 = port.parse()?;
    let items: u32 = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let headers = match args.get(4) {
        Some(file) => read_headers(Path::new(file))?,
        None => Vec::new(),
    };
    let served = Arc::new(Served {
        database: PathBuf::from(db),
        headers,
    });
    seed(&served.database, items)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |request| route(Arc::clone(&served), request));
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_file_is_read_as_curl_prints_a_response_head() {
        let dir = std::env::temp_dir().join(format!("keel-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("head");
        std::fs::write(
            &file,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 59\r\n\
             Vary: origin\r\nx-frame-options: SAMEORIGIN\r\nx-request-id: 6b54\r\n\
             date: Thu, 03 Dec 2026 16:11:31 GMT\r\n\r\n",
        )
        .unwrap();
        let headers = read_headers(&file).unwrap();
        let names: Vec<_> = headers
            .iter()
            .map(|(n, v)| {
                let value = match v {
                    Fixed::Value(value) => value.to_str().unwrap(),
                    Fixed::RequestId => "(fresh)",
                };
                (n.as_str(), value)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("vary", "origin"),
                ("x-frame-options", "SAMEORIGIN"),
                ("x-request-id", "(fresh)")
            ]
        );

        std::fs::write(&file, "HTTP/1.1 200 OK\r\nno colon here\r\n").unwrap();
        assert!(
            read_headers(&file)
                .unwrap_err()
                .contains("not a `name: value` line")
        );
        for bad in [
            "bad name: x\r\n",
            "x-obs-text: caf\u{e9}\r\n",
            "x-nul: a\0b\r\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            let error = read_headers(&file).unwrap_err();
            assert!(error.contains("not a valid header"), "{bad:?}: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_ids_are_fresh_and_keel_shaped() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }
}
