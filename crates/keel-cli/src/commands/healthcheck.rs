//! `keel healthcheck`: Docker's HEALTHCHECK. One raw HTTP/1.1 GET of `/api/health` on the
//! configured address; exit 0 only for a 200 within 2 s. No HTTP client crate needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Global;

const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Port to probe instead of server.port.
    #[arg(long)]
    pub port: Option<u16>,
}

pub fn run(global: &Global, args: HealthcheckArgs) -> ExitCode {
    let overrides: Vec<(&str, String)> = args
        .port
        .map(|port| ("server.port", port.to_string()))
        .into_iter()
        .collect();
    let config = match super::load_config(global, &overrides) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel healthcheck: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = local_address(config.server.host);
    let port = config.server.port;
    match runtime.block_on(async { tokio::time::timeout(DEADLINE, probe(host, port)).await }) {
        Ok(Ok(200)) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("keel healthcheck: {host}:{port}/api/health answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("keel healthcheck: {host}:{port}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("keel healthcheck: no answer from {host}:{port} within 2 s");
            ExitCode::FAILURE
        }
    }
}

/// A server listening on every interface is probed on loopback.
fn local_address(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Sends the request and returns the status code of the answer.
async fn probe(host: IpAddr, port: u16) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((host, port)).await?;
    let request = format!(
        "GET /api/health HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: keel-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    parse_status(&head)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// `HTTP/1.1 200 OK\r\n…` → 200.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts
        .next()
        .filter(|version| version.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed_and_garbage_is_not() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\nx: y"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn unspecified_hosts_are_probed_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0".parse().unwrap()).to_string(),
            "127.0.0.1"
        );
        assert_eq!(local_address("::".parse().unwrap()).to_string(), "::1");
        assert_eq!(
            local_address("10.1.2.3".parse().unwrap()).to_string(),
            "10.1.2.3"
        );
    }
}
