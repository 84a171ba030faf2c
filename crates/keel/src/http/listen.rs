//! Opening the HTTP listener so that a restart need not refuse a single connection.
//!
//! The port has to outlive one keel process. Two ways, both supported (docs/deploy.md):
//!
//! - **Socket activation.** systemd (`deploy/keel.socket`) owns the listening socket and hands
//!   it to each keel it starts as fd 3, announced by `LISTEN_PID`/`LISTEN_FDS`. Between the old
//!   process closing and the new one accepting, connections wait in the kernel's queue.
//! - **`SO_REUSEPORT`** (`server.reuse_port`, on by default on Linux). A new keel binds the port
//!   while the old one still serves; the kernel spreads new connections over every open
//!   listener, so when the old process gets SIGTERM and closes its listener, the new one is
//!   already taking them. Both processes must run as the same user.
//!
//! Either way the listener is returned non-blocking, ready for `tokio::net::TcpListener`.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// First file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SYSTEMD_FIRST_FD: i32 = 3;
/// Pending connections the kernel queues per listener before refusing.
const BACKLOG: i32 = 1024;

/// Where the listener came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerOrigin {
    /// Passed by systemd (socket activation); `server.host`/`server.port` were not used.
    Systemd,
    /// Bound by keel to `server.host:server.port`.
    Bound { reuse_port: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("systemd passed LISTEN_FDS={count}; keel takes exactly one socket")]
    SystemdCount { count: String },
    #[error("the socket passed by systemd is unusable: {0}")]
    SystemdSocket(#[source] io::Error),
    #[error("the systemd socket was already taken by this process")]
    SystemdTaken,
}

/// The listener for `host:port`: the socket systemd passed to this process if there is one,
/// else a new one bound with `SO_REUSEPORT` when `reuse_port` is set.
pub fn open(
    host: IpAddr,
    port: u16,
    reuse_port: bool,
) -> Result<(TcpListener, ListenerOrigin), ListenError> {
    let env = |name: &str| std::env::var(name).ok();
    if let Some(count) =
        systemd_socket_count(env("LISTEN_PID"), env("LISTEN_FDS"), std::process::id())?
    {
        if count != 1 {
            return Err(ListenError::SystemdCount {
                count: count.to_string(),
            });
        }
        return take_systemd_socket().map(|listener| (listener, ListenerOrigin::Systemd));
    }
    let address = SocketAddr::new(host, port);
    bind(address, reuse_port)
        .map(|listener| (listener, ListenerOrigin::Bound { reuse_port }))
        .map_err(|source| ListenError::Bind { address, source })
}

/// How many sockets systemd passed to *this* process: `None` when the variables are absent or
/// were meant for another process (they are inherited by children; `LISTEN_PID` tells).
fn systemd_socket_count(
    listen_pid: Option<String>,
    listen_fds: Option<String>,
    own_pid: u32,
) -> Result<Option<u32>, ListenError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    fds.trim()
        .parse::<u32>()
        .map(Some)
        .map_err(|_| ListenError::SystemdCount { count: fds })
}

/// Takes ownership of fd 3. At most once per process: a second owner would close it twice.
fn take_systemd_socket() -> Result<TcpListener, ListenError> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(ListenError::SystemdTaken);
    }
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: systemd's socket-passing protocol, checked by the caller (LISTEN_PID is this
    // process, LISTEN_FDS is 1), guarantees fd 3 is open and was handed to this process; the
    // `TAKEN` flag above makes this the only place that ever owns it, so it is closed once.
    let fd = unsafe { OwnedFd::from_raw_fd(SYSTEMD_FIRST_FD) };
    let socket = Socket::from(fd);
    let is_stream = socket.r#type().map_err(ListenError::SystemdSocket)? == Type::STREAM;
    if !is_stream {
        return Err(ListenError::SystemdSocket(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a stream socket (keel.socket needs ListenStream=)",
        )));
    }
    socket.local_addr().map_err(ListenError::SystemdSocket)?;
    socket
        .set_nonblocking(true)
        .map_err(ListenError::SystemdSocket)?;
    Ok(socket.into())
}

fn bind(address: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // SO_REUSEADDR: rebinding right after a restart is not blocked by TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(unix)]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(unix))]
fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "server.reuse_port needs SO_REUSEPORT (Linux, BSD, macOS)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn systemd_sockets_count_only_when_meant_for_this_process() {
        assert_eq!(systemd_socket_count(None, None, 42).unwrap(), None);
        assert_eq!(
            systemd_socket_count(some("41"), some("1"), 42).unwrap(),
            None
        );
        assert_eq!(
            systemd_socket_count(some("42"), some("1"), 42).unwrap(),
            Some(1)
        );
        assert_eq!(
            systemd_socket_count(some("42"), some("2"), 42).unwrap(),
            Some(2)
        );
        assert!(systemd_socket_count(some("42"), some("many"), 42).is_err());
    }

    #[test]
    fn two_listeners_share_a_port_only_with_reuse_port() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let first = bind(SocketAddr::new(loopback, 0), true).unwrap();
        let address = first.local_addr().unwrap();
        let second = bind(address, true).expect("SO_REUSEPORT lets a second listener bind");
        assert_eq!(second.local_addr().unwrap(), address);
        drop(second);
        let refused = bind(address, false).expect_err("without SO_REUSEPORT the port is taken");
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn open_binds_the_configured_address_when_systemd_passed_nothing() {
        // LISTEN_PID is not this test process's pid (or unset), so keel binds by itself.
        let (listener, origin) = open(IpAddr::from([127, 0, 0, 1]), 0, true).unwrap();
        assert_eq!(origin, ListenerOrigin::Bound { reuse_port: true });
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }
}
