//! The built `keel` binary as a child process: configured only through its environment,
//! logs (JSON lines) collected from stdout and stderr, signals sent with kill(2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long to wait for anything a child process should do promptly.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn repo_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// A copy of the repository's config/ where process-data runs every second (for
/// `KEEL_CONFIG_DIR`).
pub fn every_second_config() -> TempDir {
    let dir = tempfile::tempdir().expect("temporary config directory");
    for file in ["default.toml", "test.toml"] {
        std::fs::copy(repo_config_dir().join(file), dir.path().join(file)).expect("copying config");
    }
    let test = dir.path().join("test.toml");
    let mut text = std::fs::read_to_string(&test).expect("reading test.toml");
    text.push_str("\n[tasks.process-data]\nschedule = \"* * * * * *\"\n");
    std::fs::write(&test, text).expect("writing test.toml");
    dir
}

/// `keel ARGS` with a clean `KEEL_*` environment, the repository's `config/`, test env and
/// `work_dir` as its working directory (so `./data` lands there).
pub fn keel_command(args: &[&str], work_dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command.args(args).current_dir(work_dir.path());
    for (name, _) in std::env::vars() {
        if name.starts_with("KEEL_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("KEEL_CONFIG_DIR", repo_config_dir())
        .env("KEEL_ENV", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A running `keel serve`.
pub struct KeelProcess {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    new_output: Arc<Notify>,
    pub work_dir: TempDir,
}

impl KeelProcess {
    /// Starts `keel serve` on an ephemeral port with JSON logs at `info` (plus `env`).
    pub fn serve(env: &[(&str, &str)]) -> KeelProcess {
        KeelProcess::serve_with(&[], env)
    }

    /// `keel serve ARGS…` (e.g. `--role jobs`), otherwise as `serve`.
    pub fn serve_with(args: &[&str], env: &[(&str, &str)]) -> KeelProcess {
        let work_dir = tempfile::tempdir().expect("temporary work directory");
        let mut serve_args = vec!["serve"];
        serve_args.extend_from_slice(args);
        let mut command = keel_command(&serve_args, &work_dir);
        command
            .env("KEEL_SERVER__PORT", "0")
            .env("KEEL_LOG__FORMAT", "json")
            .env("KEEL_LOG__LEVEL", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawning keel serve");
        let output = Arc::new(Mutex::new(Vec::new()));
        let new_output = Arc::new(Notify::new());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        collect_lines(stdout, output.clone(), new_output.clone());
        collect_lines(stderr, output.clone(), new_output.clone());
        KeelProcess {
            child,
            output,
            new_output,
            work_dir,
        }
    }

    /// Waits (up to `DEADLINE`) for an output line satisfying `matches` and returns it.
    pub async fn wait_for_line(&self, matches: impl Fn(&str) -> bool) -> String {
        let waiting = async {
            loop {
                let notified = self.new_output.notified();
                if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                    return line;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(DEADLINE, waiting).await {
            Ok(line) => line,
            Err(_) => panic!(
                "expected line never came; output so far:\n{}",
                self.lines().join("\n")
            ),
        }
    }

    /// Waits for a JSON log line whose `message` is `message`.
    pub async fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let line = self
            .wait_for_line(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|v| v["message"] == message)
            })
            .await;
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Waits until the server listens and returns its address.
    pub async fn address(&self) -> SocketAddr {
        let listening = self.wait_for_log("listening").await;
        listening["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {listening}"))
    }

    pub fn lines(&self) -> Vec<String> {
        self.output.lock().expect("output lock").clone()
    }

    /// The process id (the `pid` field of its job lease owner, `host:pid:…`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the process is running") as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and still own; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits (up to `DEADLINE`) for the process to exit.
    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => status.expect("waiting for keel"),
            Err(_) => panic!("keel did not exit; output:\n{}", self.lines().join("\n")),
        }
    }
}

fn collect_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    new_output: Arc<Notify>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            output.lock().expect("output lock").push(line);
            new_output.notify_waiters();
        }
    });
}
