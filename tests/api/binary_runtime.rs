//! `keel serve`'s async workers as the kernel sees them (`[runtime]`, `keel::placement`): each
//! pinned to its own CPU and under SCHED_BATCH by default, left alone when switched off, and a
//! bad `TOKIO_WORKER_THREADS` refused at start-up. Read from `/proc/PID/task` (Linux).
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;

use keel::placement::allowed_cpus;

use crate::helpers::{DEADLINE, KeelProcess, keel_command};
use crate::support::eventually_within;

/// `SCHED_BATCH` and `SCHED_OTHER` as `/proc/PID/task/TID/stat` prints a thread's policy.
const SCHED_BATCH: &str = "3";
const SCHED_OTHER: &str = "0";

/// One thread of a process, as `/proc` shows it.
#[derive(Debug)]
struct Thread {
    name: String,
    cpus: String,
    policy: String,
}

/// `Cpus_allowed_list` of a `/proc/…/status` text (`0-3,5`).
fn cpus_allowed_list(status: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// This test process's CPUs, as `/proc` lists them (a child keel inherits them).
fn own_cpus() -> String {
    cpus_allowed_list(&std::fs::read_to_string("/proc/self/status").unwrap())
}

fn threads(pid: u32) -> Vec<Thread> {
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(status), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("status")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let cpus = cpus_allowed_list(&status);
        // The fields after the command's closing parenthesis, the 3rd of the line being the
        // first: the policy is the 41st.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let policy = after_name
            .split_whitespace()
            .nth(41 - 3)
            .unwrap_or("")
            .to_owned();
        threads.push(Thread {
            name: name.trim().to_owned(),
            cpus,
            policy,
        });
    }
    threads
}

/// Waits until `workers` threads have renamed themselves `keel-async-K` and returns them.
async fn async_workers(keel: &KeelProcess, workers: usize) -> Vec<Thread> {
    let pid = keel.pid();
    eventually_within(
        "every async worker to place itself",
        DEADLINE,
        || async move {
            let found: Vec<Thread> = threads(pid)
                .into_iter()
                .filter(|t| t.name.starts_with("keel-async-"))
                .collect();
            (found.len() == workers).then_some(found)
        },
    )
    .await
}

#[tokio::test]
async fn each_async_worker_runs_on_its_own_cpu_under_sched_batch() {
    let allowed = allowed_cpus().unwrap();
    let count = allowed.len().to_string();
    // As many workers as CPUs, whatever a CPU quota would make the default.
    let keel = KeelProcess::serve(&[("TOKIO_WORKER_THREADS", &count)]);
    keel.address().await;
    let workers = async_workers(&keel, allowed.len()).await;

    let pinned: BTreeSet<String> = workers.iter().map(|t| t.cpus.clone()).collect();
    let expected: BTreeSet<String> = allowed.iter().map(usize::to_string).collect();
    assert_eq!(
        pinned, expected,
        "one CPU each, every CPU once: {workers:?}"
    );
    assert!(
        workers.iter().all(|t| t.policy == SCHED_BATCH),
        "{workers:?}"
    );
    // Only the workers: the store's and the worker pool's threads keep the process's CPUs.
    let others = threads(keel.pid());
    let writer = others
        .iter()
        .find(|t| t.name == "keel-store-writ")
        .expect("the store's writer");
    assert_eq!(writer.policy, SCHED_OTHER, "{others:?}");
    if allowed.len() > 1 {
        assert!(writer.cpus.contains(['-', ',']), "{others:?}");
    }
    let log = keel.wait_for_log("async runtime workers").await;
    assert_eq!(log["workers"], allowed.len());
    assert_eq!(log["batch"], true);
    assert!(log.get("unpinned").is_none(), "{log}");
}

#[tokio::test]
async fn workers_are_left_to_the_kernel_when_switched_off_or_outnumbering_the_cpus() {
    let allowed = allowed_cpus().unwrap();
    let everywhere = own_cpus();

    let keel = KeelProcess::serve(&[
        ("TOKIO_WORKER_THREADS", "2"),
        ("KEEL_RUNTIME__PIN_WORKERS", "false"),
        ("KEEL_RUNTIME__BATCH_WORKERS", "false"),
    ]);
    keel.address().await;
    for worker in async_workers(&keel, 2).await {
        assert_eq!(worker.cpus, everywhere, "{worker:?}");
        assert_eq!(worker.policy, SCHED_OTHER, "{worker:?}");
    }
    let log = keel.wait_for_log("async runtime workers").await;
    assert!(
        log["unpinned"]
            .as_str()
            .unwrap()
            .contains("pin_workers is off"),
        "{log}"
    );

    // More workers than CPUs: pinning would put two on one CPU; none is pinned.
    let more = (allowed.len() + 1).to_string();
    let keel = KeelProcess::serve(&[("TOKIO_WORKER_THREADS", &more)]);
    keel.address().await;
    for worker in async_workers(&keel, allowed.len() + 1).await {
        assert_eq!(worker.cpus, everywhere, "{worker:?}");
        assert_eq!(worker.policy, SCHED_BATCH, "{worker:?}");
    }
    let log = keel.wait_for_log("async runtime workers").await;
    let why = log["unpinned"].as_str().unwrap();
    assert!(
        why.contains(&format!("{more} workers for {} CPUs", allowed.len())),
        "{log}"
    );
}

#[tokio::test]
async fn a_bad_worker_thread_count_is_a_startup_error() {
    for bad in ["0", "many"] {
        let work_dir = tempfile::tempdir().unwrap();
        let output = keel_command(&["serve"], &work_dir)
            .env("KEEL_SERVER__PORT", "0")
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .await
            .expect("running keel");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS must be a whole number"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
