//! The accept loop: HTTP/1.1 connections under three bounds a slow or greedy client cannot
//! lift (docs/deploy.md, "Connections").
//!
//! - **Header-read timeout** (`server.header_read_timeout`): a request head must arrive in
//!   full within this time of keel starting to wait for it — on a new connection and after
//!   each response on a keep-alive one. A client trickling a header a byte at a time is
//!   disconnected (hyper's timer, which `axum::serve` leaves unset).
//! - **Idle timeout** (`server.idle_timeout`): a connection that has moved no bytes either way
//!   for this long is closed; a request still running on it finishes first.
//! - **Maximum connections** (`server.max_connections`): past it keel stops accepting, so
//!   further clients wait in the kernel's listen queue instead of costing memory here.
//!
//! Each connection is served by hyper directly with the application (the chassis, or any
//! router) as its service; the peer address reaches handlers as axum's
//! `ConnectInfo<SocketAddr>`, as with `axum::serve`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::config::ServerConfig;
use crate::shutdown::Shutdown;

/// The bounds every connection is served under; `From<&ServerConfig>`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&ServerConfig> for ConnectionLimits {
    fn from(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// Serves `app` on `listener` until shutdown is triggered, then stops accepting (the listener
/// closes, new connections are refused), closes idle keep-alive connections and lets in-flight
/// requests finish for at most `drain_timeout`. Returns when all connections are done or the
/// deadline passed.
pub async fn serve<App>(
    listener: TcpListener,
    app: App,
    shutdown: Shutdown,
    drain_timeout: Duration,
    limits: ConnectionLimits,
) -> io::Result<()>
where
    App: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    App::Future: Send + 'static,
{
    let token = shutdown.token();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = token.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = token.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (http, app, token) = (http.clone(), app.clone(), token.clone());
        connections.spawn(async move {
            serve_connection(&http, stream, peer, app, token, limits.idle_timeout).await;
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => Ok(()),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                connections = connections.len(),
                "in-flight requests still running at the shutdown deadline; abandoning them"
            );
            Ok(())
        }
    }
}

/// An accept error: the peer's own failures (reset before accept) are skipped; anything else
/// (out of file descriptors, most often) is logged and retried after a pause, so the loop
/// neither spins nor dies.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection<App>(
    http: &hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    shutdown: CancellationToken,
    idle_timeout: Duration,
) where
    App: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    App::Future: Send + 'static,
{
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        started,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let mut extensions = extensions_with_room();
        extensions.extend(std::mem::take(request.extensions_mut()));
        extensions.insert(ConnectInfo(peer));
        *request.extensions_mut() = extensions;
        app.clone().oneshot(request.map(Body::new))
    });
    let mut connection = pin!(http.serve_connection(io, service).with_upgrades());
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle(started, &activity, idle_timeout), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// An empty extension map with room for seven: the five every request gets (`ConnectInfo`
/// here, the request id and the client's address in the chassis, axum's matched path and URL
/// parameters) and axum's body-limit switch a request with a body gets (`bodies.rs`). A
/// request's map cloned from it is allocated once, at that size; filled from nothing, the map
/// was allocated for three and grown (rehashed) at the fourth (`docs/performance.md`, round
/// 26).
fn extensions_with_room() -> http::Extensions {
    static ROOMY: LazyLock<http::Extensions> = LazyLock::new(|| {
        #[derive(Clone, Copy)]
        struct Room<const N: usize>;
        let mut extensions = http::Extensions::new();
        extensions.insert(Room::<0>);
        extensions.insert(Room::<1>);
        extensions.insert(Room::<2>);
        extensions.insert(Room::<3>);
        // Cleared, the map keeps its size; a clone of it is allocated at that size.
        extensions.clear();
        extensions
    });
    ROOMY.clone()
}

/// Resolves once no byte has moved on the connection for `timeout`.
async fn idle(started: Instant, activity: &AtomicU64, timeout: Duration) {
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The socket, noting when bytes last moved (milliseconds since the connection opened).
struct Watched {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(elapsed, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_extensions_start_empty_and_apart() {
        let mut extensions = extensions_with_room();
        assert!(extensions.is_empty());
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert_eq!(extensions.len(), 1);
        // Each request's map is its own: the template takes nothing from a clone's inserts.
        assert!(extensions_with_room().is_empty());
    }
}
