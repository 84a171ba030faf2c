//! The bare baseline of `bench/load.sh`: what this machine does for keel's two hottest requests
//! with no keel code at all — hyper, a tokio runtime, and SQLite (WAL, one connection per
//! worker thread) holding the items as ready JSON text.
//!
//! - `GET /api/health` answers keel's body shape: `{"status":"healthy","timestamp":"…"}`.
//! - `POST /api/getData` with a `sessionId` cookie (a logged-in-looking request; nothing is
//!   checked) reads `limit` from the JSON body and answers the first `limit` items in keel's
//!   shape: `{"data":[…],"success":true}`. Without the cookie: 401.
//!
//! Usage: `keel-baseline PORT DATABASE_FILE [ITEMS]` — seeds ITEMS (default 1,000) items in
//! the exact JSON keel serves for them, then serves on 127.0.0.1:PORT until killed.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderValue};
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

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn health() -> Response<Full<Bytes>> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = format!("{{\"status\":\"healthy\",\"timestamp\":\"{now}\"}}");
    json(StatusCode::OK, body.into_bytes())
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

async fn get_data(path: &Path, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let logged_in = request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("sessionId="));
    if !logged_in {
        return json(StatusCode::UNAUTHORIZED, b"{\"success\":false}".to_vec());
    }
    let Ok(body) = Limited::new(request.into_body(), MAX_BODY).collect().await else {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            b"{\"success\":false}".to_vec(),
        );
    };
    let Ok(query) = serde_json::from_slice::<GetData>(&body.to_bytes()) else {
        return json(StatusCode::BAD_REQUEST, b"{\"success\":false}".to_vec());
    };
    match first_items(path, query.limit.unwrap_or(100).min(1000)) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"success\":false,\"error\":\"{e}\"}}").into_bytes(),
        ),
    }
}

async fn route(
    path: Arc<PathBuf>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/api/health") => health(),
        (&Method::POST, "/api/getData") => get_data(&path, request).await,
        _ => json(StatusCode::NOT_FOUND, b"{\"success\":false}".to_vec()),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(db)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: keel-baseline PORT DATABASE_FILE [ITEMS]");
        std::process::exit(2);
    };
    let port: u16 = port.parse()?;
    let items: u32 = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let path = Arc::new(PathBuf::from(db));
    seed(&path, items)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let path = Arc::clone(&path);
            tokio::spawn(async move {
                let service = service_fn(move |request| route(Arc::clone(&path), request));
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
