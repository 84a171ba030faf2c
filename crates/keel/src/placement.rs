//! Where the async runtime's worker threads run: `[runtime]` in the configuration.
//!
//! Left to the kernel, the two workers of a two-CPU host were often queued on the same CPU
//! (a worker that wakes the other has it placed beside itself) while the other CPU ran
//! something else or idled; the connections of the worker waiting for its turn waited with it,
//! up to a scheduler slice. Under a load that needs more than one CPU of keel (getData at
//! 35 k req/s) that was the whole of the p99: 5–6 ms, against 2.5–3 ms with each worker held
//! on its own CPU (`docs/performance.md`, round 29). So, by default:
//!
//! - `pin_workers`: worker *k* runs only on the *k*-th CPU this process may use
//!   (`sched_getaffinity`), when the workers and those CPUs are as many. Otherwise (a CPU quota
//!   smaller than the CPU set, `TOKIO_WORKER_THREADS` set to another count) nothing is pinned —
//!   several processes would stack on the same CPUs — and the start-up log says why.
//! - `batch_workers`: the workers run under `SCHED_BATCH`: like ordinary threads, except that
//!   waking up they do not preempt whatever runs on their CPU; they run when its slice ends.
//!   A worker serves many connections per wake-up, and preempting a sidecar, the store's
//!   threads or a co-located client on every one cost more than it gained (health: 46 k →
//!   56–67 k req/s with the client on the same host).
//!
//! Each worker places itself, once, the first time it parks: only the runtime's workers run
//! the park hook (`tokio::runtime::Builder::on_thread_park`), never its blocking threads. It
//! also renames itself `keel-async-K`, so `top -H`, `perf` and `/proc` tell the workers from
//! the blocking threads (both are `tokio-rt-worker` otherwise). Linux only; elsewhere the
//! settings are accepted and nothing is changed.

use std::cell::Cell;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// `[runtime]`: the async runtime's worker threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Each worker on its own CPU, when the workers and the CPUs keel may use are as many.
    pub pin_workers: bool,
    /// The workers under `SCHED_BATCH`: no preemption of the running thread when they wake.
    pub batch_workers: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pin_workers: true,
            batch_workers: true,
        }
    }
}

/// How many worker threads the runtime gets: `TOKIO_WORKER_THREADS` when set (tokio's own
/// variable, honoured as tokio would, but a bad value is a start-up error instead of tokio's
/// panic), else one per CPU available (`available_parallelism`, which counts a cgroup quota).
pub fn worker_count(from_env: Option<&OsStr>) -> Result<usize, String> {
    let Some(value) = from_env else {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    };
    match value.to_str().map(|text| text.trim().parse::<usize>()) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => Err(format!(
            "TOKIO_WORKER_THREADS must be a whole number of threads ≥ 1, not {value:?}"
        )),
    }
}

/// The plan the workers follow as they park: which CPU each takes, and the policy.
#[derive(Debug)]
pub struct Placement {
    /// CPU of worker k, or empty when nothing is pinned.
    cpus: Vec<usize>,
    batch: bool,
    /// The next worker index to hand out.
    next: AtomicUsize,
}

impl Placement {
    /// The plan for `workers` workers of a process that may run on `allowed` CPUs; with the
    /// reason nothing is pinned, when it is not (for the start-up log).
    pub fn plan(
        config: &RuntimeConfig,
        workers: usize,
        allowed: &[usize],
    ) -> (Placement, Option<String>) {
        let (cpus, unpinned) = if !config.pin_workers {
            (Vec::new(), Some("runtime.pin_workers is off".to_owned()))
        } else if allowed.len() != workers {
            (
                Vec::new(),
                Some(format!(
                    "{workers} workers for {} CPUs: workers are pinned only when they are as many",
                    allowed.len()
                )),
            )
        } else {
            (allowed.to_vec(), None)
        };
        let placement = Placement {
            cpus,
            batch: config.batch_workers && cfg!(target_os = "linux"),
            next: AtomicUsize::new(0),
        };
        (placement, unpinned)
    }

    /// The plan for this process, its CPUs read from the kernel (Linux; elsewhere nothing is
    /// changed).
    pub fn for_this_process(config: &RuntimeConfig, workers: usize) -> (Placement, Option<String>) {
        match allowed_cpus() {
            Ok(allowed) => Self::plan(config, workers, &allowed),
            Err(reason) => (Self::plan(config, workers, &[]).0, Some(reason)),
        }
    }

    /// The CPUs the workers are pinned to, in worker order (empty: not pinned).
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    pub fn batch(&self) -> bool {
        self.batch
    }

    /// Run by each worker as it parks: the first time, the worker takes the next index,
    /// renames itself and applies the plan. A failing system call is logged, never fatal.
    pub fn on_park(&self) {
        thread_local! {
            static PLACED: Cell<bool> = const { Cell::new(false) };
        }
        if PLACED.with(|placed| placed.replace(true)) {
            return;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        sys::set_name(&format!("keel-async-{index}"));
        if let Some(&cpu) = self.cpus.get(index)
            && let Err(e) = sys::pin_to(cpu)
        {
            tracing::warn!(worker = index, cpu, error = %e, "could not pin an async worker to its CPU");
        }
        if self.batch
            && let Err(e) = sys::batch_policy()
        {
            tracing::warn!(worker = index, error = %e, "could not give an async worker SCHED_BATCH");
        }
    }
}

/// The CPUs this process may run on, in increasing order (`sched_getaffinity`; Linux).
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    sys::allowed_cpus()
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;

    pub fn allowed_cpus() -> Result<Vec<usize>, String> {
        // SAFETY: cpu_set_t is plain bits; zeroed is the empty set, and the kernel writes at
        // most size_of::<cpu_set_t>() bytes into it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
        let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        if r != 0 {
            return Err(format!(
                "the CPUs this process may use are unknown ({})",
                io::Error::last_os_error()
            ));
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads one bit of `set`; every index below CPU_SETSIZE is in it.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect())
    }

    /// Binds the calling thread to `cpu`.
    pub fn pin_to(cpu: usize) -> io::Result<()> {
        // SAFETY: as in `allowed_cpus`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET writes one bit of `set`; `cpu` comes from the kernel's own set, so
        // it is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
        status(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })
    }

    /// Moves the calling thread to SCHED_BATCH (any thread may: it asks for no privilege).
    pub fn batch_policy() -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` lives across the call.
        status(unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) })
    }

    /// A system call's 0 / -1 (with errno) as a result.
    fn status(returned: libc::c_int) -> io::Result<()> {
        if returned == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The calling thread's name as the kernel shows it (it keeps the first 15 bytes).
    pub fn set_name(name: &str) {
        let Ok(name) = std::ffi::CString::new(name) else {
            return;
        };
        // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is; it outlives the
        // call.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;

    pub fn allowed_cpus() -> Result<Vec<usize>, String> {
        Err("worker placement is implemented on Linux only".to_owned())
    }

    pub fn pin_to(_cpu: usize) -> io::Result<()> {
        Ok(())
    }

    pub fn batch_policy() -> io::Result<()> {
        Ok(())
    }

    pub fn set_name(_name: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pin: bool, batch: bool) -> RuntimeConfig {
        RuntimeConfig {
            pin_workers: pin,
            batch_workers: batch,
        }
    }

    #[test]
    fn one_worker_per_cpu_when_they_are_as_many() {
        let (placement, why) = Placement::plan(&config(true, true), 2, &[2, 5]);
        assert_eq!(placement.cpus(), &[2, 5]);
        assert_eq!(placement.batch(), cfg!(target_os = "linux"));
        assert_eq!(why, None);
    }

    #[test]
    fn nothing_pinned_when_the_counts_differ_or_it_is_off() {
        let (placement, why) = Placement::plan(&config(true, false), 2, &[0, 1, 2, 3]);
        assert!(placement.cpus().is_empty());
        assert!(!placement.batch());
        assert!(why.unwrap().contains("2 workers for 4 CPUs"));

        let (placement, why) = Placement::plan(&config(false, true), 2, &[0, 1]);
        assert!(placement.cpus().is_empty());
        assert_eq!(placement.batch(), cfg!(target_os = "linux"));
        assert!(why.unwrap().contains("pin_workers is off"));
    }

    #[test]
    fn the_worker_count_comes_from_tokios_variable_or_the_cpus() {
        assert_eq!(worker_count(Some(OsStr::new("3"))), Ok(3));
        assert_eq!(worker_count(Some(OsStr::new(" 1 "))), Ok(1));
        assert!(worker_count(None).unwrap() >= 1);
        for bad in ["0", "-1", "two", ""] {
            let error = worker_count(Some(OsStr::new(bad))).unwrap_err();
            assert!(error.contains("TOKIO_WORKER_THREADS"), "{error}");
        }
        #[cfg(unix)]
        {
            // Not UTF-8: refused like any other bad value, not taken for "unset".
            use std::os::unix::ffi::OsStrExt;
            let error = worker_count(Some(OsStr::from_bytes(b"2\xff"))).unwrap_err();
            assert!(error.contains("TOKIO_WORKER_THREADS"), "{error}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_may_use_at_least_one_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|w| w[0] < w[1]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_parking_thread_places_itself_once() {
        let allowed = allowed_cpus().unwrap();
        let (placement, _) = Placement::plan(&config(true, false), allowed.len(), &allowed);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    placement.on_park();
                    placement.on_park(); // the second park changes nothing
                    let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
                    assert_eq!(name.trim(), "keel-async-0");
                    assert_eq!(allowed_cpus().unwrap(), vec![allowed[0]]);
                })
                .join()
                .unwrap();
        });
        assert_eq!(placement.next.load(Ordering::Relaxed), 1);
    }
}
