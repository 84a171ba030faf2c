//! Isolated computations: a computation run in a child process with a memory limit (the guides'
//! `resourceLimits: { maxOldGenerationSizeMb }`).
//!
//! A thread shares the server's address space: a runaway allocation in it takes the whole server
//! down, and a stuck thread cannot be killed. A child process can be both limited and killed. The
//! child is the `keel` binary itself (`keel worker-run KIND`), so no second artefact ships:
//!
//! - protocol: the parent writes the input JSON on the child's stdin and closes it; the child
//!   answers one JSON object on stdout, `{"ok": <output>}` or `{"error": "<message>"}`, and exits
//!   0. Logs go to stderr. Any other exit is a crash; the tail of stderr is kept in the error.
//! - limit: `RLIMIT_AS` (address space) is set in the child between fork and exec. An allocation
//!   beyond it fails, and Rust aborts the child with "memory allocation of N bytes failed", which
//!   the parent reports as `MemoryLimitExceeded`; the server is untouched.
//! - timeout: unlike a thread, the child is killed when the job's time is up (and whenever the
//!   caller stops waiting: the child is `kill_on_drop`).
//! - bounds: at most `concurrency` children run at once (the pool's thread count); callers wait
//!   in a queue bounded like the pool's and beyond it get `Busy`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::{Computations, WorkerError};

/// The largest input a child accepts on stdin.
const MAX_CHILD_INPUT_BYTES: u64 = 256 * 1024 * 1024;
/// How much of a crashed child's stderr is kept in the error.
const STDERR_TAIL_CHARS: usize = 600;

/// Starts isolated jobs as child processes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IsolatedRunner {
    program: PathBuf,
    /// Arguments before the kind; `["worker-run"]` for the keel binary.
    leading_args: Vec<String>,
    memory_limit_mb: u64,
    timeout: Duration,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl IsolatedRunner {
    pub fn new(
        program: PathBuf,
        memory_limit_mb: u64,
        timeout: Duration,
        concurrency: usize,
        max_waiting: usize,
    ) -> Self {
        Self {
            program,
            leading_args: vec!["worker-run".to_owned()],
            memory_limit_mb,
            timeout,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: max_waiting.max(1),
        }
    }

    /// Replaces the arguments placed before the kind (for a program other than `keel`).
    pub fn with_leading_args(mut self, args: Vec<String>) -> Self {
        self.leading_args = args;
        self
    }

    /// Runs `kind` on `input` in a fresh child process; see the module comment for the protocol.
    pub async fn run(
        &self,
        kind: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, WorkerError> {
        let input = serde_json::to_vec(input).map_err(|e| WorkerError::ChildFailed {
            kind: kind.to_owned(),
            reason: format!("cannot encode the input: {e}"),
        })?;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(WorkerError::Busy {
                capacity: self.max_waiting,
            });
        }
        let outcome = tokio::time::timeout(self.timeout, async {
            let permit = self.slots.acquire().await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let _permit = permit.map_err(|_| WorkerError::ShutDown)?;
            self.run_child_process(kind, &input).await
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                metrics::counter!("keel_worker_jobs_total", "outcome" => "timeout").increment(1);
                Err(WorkerError::Timeout(self.timeout))
            }
        }
    }

    async fn run_child_process(
        &self,
        kind: &str,
        input: &[u8],
    ) -> Result<serde_json::Value, WorkerError> {
        let failed = |reason: String| WorkerError::ChildFailed {
            kind: kind.to_owned(),
            reason,
        };
        let mut command = Command::new(&self.program);
        command
            .args(&self.leading_args)
            .arg(kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let limit_bytes = self.memory_limit_mb.saturating_mul(1024 * 1024);
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and the
        // closure allocates nothing and touches no lock.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: limit_bytes as libc::rlim_t,
                    rlim_max: limit_bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", self.program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A child that died early closes its stdin: the write fails, the exit status says why.
            let _ = stdin.write_all(input).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failed(format!("lost the child process: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(self.classify_crash(kind, output.status, &stderr));
        }
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| failed(format!("unreadable answer on stdout: {e}")))?;
        match (answer.get("ok"), answer.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(message)) => Err(WorkerError::ComputationFailed {
                kind: kind.to_owned(),
                message: message.as_str().unwrap_or("unknown error").to_owned(),
            }),
            (None, None) => Err(failed("answer has neither \"ok\" nor \"error\"".to_owned())),
        }
    }

    fn classify_crash(&self, kind: &str, status: ExitStatus, stderr: &str) -> WorkerError {
        use std::os::unix::process::ExitStatusExt;
        if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
            tracing::warn!(
                kind,
                limit_mb = self.memory_limit_mb,
                "isolated job hit its memory limit"
            );
            return WorkerError::MemoryLimitExceeded {
                kind: kind.to_owned(),
                limit_mb: self.memory_limit_mb,
            };
        }
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended abnormally".to_owned(),
        };
        let tail: String = {
            let chars: Vec<char> = stderr.trim_end().chars().collect();
            chars[chars.len().saturating_sub(STDERR_TAIL_CHARS)..]
                .iter()
                .collect()
        };
        WorkerError::ChildFailed {
            kind: kind.to_owned(),
            reason: format!("{how}; stderr: {tail}"),
        }
    }
}

/// The child side of `keel worker-run KIND`: reads the input JSON from `input`, runs the kind,
/// writes `{"ok": …}` or `{"error": …}` to `output`. Returns the process exit code: 0 when an
/// answer was written (a job failure is an answer too), 1 when even that was impossible.
///
/// Call it before starting any async runtime or thread pool: the child runs under RLIMIT_AS, and
/// every extra thread reserves address space (stack, allocator arena) the job may need.
pub fn run_child(jobs: &Computations, kind: &str, input: impl Read, mut output: impl Write) -> i32 {
    let answer = match read_input(input).and_then(|value| {
        let function = jobs
            .get(kind)
            .ok_or_else(|| format!("unknown computation {kind:?}"))?;
        function(value)
    }) {
        Ok(value) => serde_json::json!({ "ok": value }),
        Err(message) => serde_json::json!({ "error": message }),
    };
    let written = serde_json::to_writer(&mut output, &answer)
        .map_err(std::io::Error::from)
        .and_then(|()| output.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker-run {kind}: cannot write the answer: {e}");
            1
        }
    }
}

fn read_input(input: impl Read) -> Result<serde_json::Value, String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_CHILD_INPUT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the input: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the input is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runner whose "child" is a shell script: the protocol and the process handling are
    /// tested here; the memory limit against the real `keel worker-run` in the CLI's tests.
    fn shell(script: &str, timeout: Duration) -> IsolatedRunner {
        IsolatedRunner::new(PathBuf::from("/bin/sh"), 512, timeout, 2, 4).with_leading_args(vec![
            "-c".to_owned(),
            script.to_owned(),
            "sh".to_owned(),
        ])
    }

    #[tokio::test]
    async fn the_child_answer_is_returned() {
        let runner = shell(
            r#"cat >/dev/null; printf '{"ok": {"kind": "%s"}}' "$1""#,
            Duration::from_secs(30),
        );
        let answer = runner.run("echo", &serde_json::json!({"n": 1})).await;
        assert_eq!(answer.ok(), Some(serde_json::json!({"kind": "echo"})));
    }

    #[tokio::test]
    async fn a_job_error_answer_is_a_job_failure() {
        let runner = shell(
            r#"cat >/dev/null; echo '{"error": "bad batch"}'"#,
            Duration::from_secs(30),
        );
        match runner.run("x", &serde_json::json!({})).await {
            Err(WorkerError::ComputationFailed { message, .. }) => assert_eq!(message, "bad batch"),
            other => panic!("expected ComputationFailed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_crashing_child_is_reported_with_its_stderr() {
        let runner = shell("echo 'it broke' >&2; exit 3", Duration::from_secs(30));
        match runner.run("x", &serde_json::json!({})).await {
            Err(WorkerError::ChildFailed { reason, .. }) => {
                assert!(
                    reason.contains("code 3") && reason.contains("it broke"),
                    "{reason}"
                );
            }
            other => panic!("expected ChildFailed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_allocation_failure_is_reported_as_the_memory_limit() {
        let runner = shell(
            "echo 'memory allocation of 1073741824 bytes failed' >&2; kill -ABRT $$",
            Duration::from_secs(30),
        );
        assert!(matches!(
            runner.run("x", &serde_json::json!({})).await,
            Err(WorkerError::MemoryLimitExceeded { limit_mb: 512, .. })
        ));
    }

    #[tokio::test]
    async fn a_child_over_its_time_is_killed() {
        let runner = shell("exec sleep 60", Duration::from_millis(100));
        assert!(matches!(
            runner.run("x", &serde_json::json!({})).await,
            Err(WorkerError::Timeout(_))
        ));
    }

    #[test]
    fn the_child_side_answers_ok_or_error_as_json() {
        let mut jobs = Computations::new();
        jobs.register("sum", |v| {
            let numbers = v.as_array().ok_or("expected an array")?;
            Ok(serde_json::json!(
                numbers.iter().filter_map(|n| n.as_i64()).sum::<i64>()
            ))
        });
        let mut out = Vec::new();
        assert_eq!(run_child(&jobs, "sum", &b"[1, 2, 3]"[..], &mut out), 0);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).ok(),
            Some(serde_json::json!({"ok": 6}))
        );

        for (kind, input) in [
            ("sum", &b"{}"[..]),
            ("sum", &b"not json"[..]),
            ("nope", &b"1"[..]),
        ] {
            let mut out = Vec::new();
            assert_eq!(run_child(&jobs, kind, input, &mut out), 0);
            let answer: serde_json::Value = serde_json::from_slice(&out).expect("always JSON");
            assert!(answer["error"].is_string(), "{kind}: {answer}");
        }
    }
}
