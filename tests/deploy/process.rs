//! Running the built `keel` binary as a process manager would: with its own environment and
//! data directory, its output captured line by line, signals sent, exits awaited. Every wait
//! polls with a deadline (`support::eventually_blocking`); nothing sleeps a fixed time to "let
//! things happen".

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use crate::helpers::repo_root;

/// How long any single wait in these tests may take before it fails.
pub use crate::support::DEADLINE;
use crate::support::eventually_blocking;

/// A port that was free a moment ago (bound to 0, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A running `keel serve` (or other command), killed on drop if still alive.
pub struct KeelProcess {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl KeelProcess {
    /// Starts `keel <args>` in `work_dir` with the repository's config/ and only the given
    /// KEEL_* variables (plus PATH), logging JSON lines.
    pub fn start(name: &str, work_dir: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .args(args)
            .current_dir(work_dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEEL_CONFIG_DIR", repo_root().join("config"))
            .env("KEEL_LOG__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn keel");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Self {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far (stdout and stderr interleaved as read).
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn has_line(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits until a line containing every one of `needles` is printed; returns it.
    pub fn wait_for_line(&self, needles: &[&str]) -> String {
        eventually_blocking(&format!("{}: a line with {needles:?}", self.name), || {
            self.lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned()
        })
    }

    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes two integers and touches no memory of ours; the pid is our own
        // child, not yet reaped (we hold its `Child`), so it cannot name a recycled process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let name = self.name.clone();
        eventually_blocking(&format!("{name} to exit"), || {
            self.child.try_wait().ok().flatten()
        })
    }

    pub fn dump(&self) -> String {
        format!("--- {} output ---\n{}", self.name, self.output().join("\n"))
    }
}

impl Drop for KeelProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory with its own embedded store, for one keel process.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn database_url(&self) -> String {
        format!("embedded://{}", self.dir.path().join("data").display())
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Listening TCP sockets on `port` right now, from /proc/net/tcp{,6} (state 0A = LISTEN).
/// Linux only, like SO_REUSEPORT's load balancing itself.
pub fn listeners_on(port: u16) -> usize {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|line| {
                    line.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .filter(|fields| fields.get(1).is_some_and(|local| local.ends_with(&wanted)))
        .filter(|fields| fields.get(3).is_some_and(|state| state == "0A"))
        .count()
}
