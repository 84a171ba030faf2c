//! The `keel` binary: argument parsing and wiring only.
//!
//! Each command group lives in `commands/<name>.rs` with its clap arguments and a `run`
//! returning the process exit code. Adding a command: a module there, a variant in `Command`,
//! one line in `main`.

mod alloc;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::Global;

/// mimalloc for small blocks, the kernel for large ones (`alloc.rs`). mimalloc is built without
/// transparent huge pages (its `no_thp` feature), and the process turns them off for every
/// other mapping first thing in `main` (`lean_memory`).
#[global_allocator]
static ALLOCATOR: alloc::KeelAllocator = alloc::KeelAllocator;

/// keel: a production backend in one binary — HTTP API, scheduled tasks, change watchers and
/// jobs, on an embedded store or MongoDB.
#[derive(Debug, Parser)]
#[command(name = "keel", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server: HTTP API and background roles, until SIGTERM/SIGINT.
    Serve(commands::serve::ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Exit 0 when the local server answers GET /api/health with 200 within 2 s (for Docker's
    /// HEALTHCHECK), 1 otherwise.
    Healthcheck(commands::healthcheck::HealthcheckArgs),
    /// Scheduled tasks: list them, or run one now.
    #[command(subcommand)]
    Task(commands::task::TaskCommand),
    /// The durable job queue: list, retry dead jobs, purge.
    #[command(subcommand)]
    Jobs(commands::jobs::JobsCommand),
    /// Users' roles: grant or revoke admin (the ops console, /ops).
    #[command(subcommand)]
    Users(commands::users::UsersCommand),
    /// Create every index the application declares (idempotent; `serve` also does it at start
    /// unless database.migrate_on_start = false).
    Migrate,
    /// Internal: run one isolated computation (JSON on stdin → JSON on stdout).
    #[command(hide = true)]
    WorkerRun(commands::worker_run::WorkerRunArgs),
    /// Print the version.
    Version,
}

/// Transparent huge pages grow resident memory in 2 MiB steps: with them mimalloc held 12 MiB
/// before the first request and ~15 MiB more under load (measured in `docs/performance.md`).
/// keel's heaps are small; 4 KiB pages keep its footprint near what it uses. The flag applies
/// to every page the process faults in from here on (on a kernel whose THP setting is
/// `always`, glibc's heaps and thread stacks too); mimalloc's first arena, mapped before
/// `main`, is kept off huge pages by its `no_thp` build feature.
fn lean_memory() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this
    // process; it touches no memory of ours. A kernel without it returns an error, ignored.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    one_glibc_arena();
    keel::memory::set_thread_collector(alloc::collect_retained);
}

/// glibc's malloc serves SQLite only (Rust's blocks go to mimalloc), yet it gives each thread
/// that allocates its own arena, up to eight per core: the threads a scheduled task's reads
/// started in the middle of a load each left a new arena behind, 1.3 MiB of a getData load's
/// resident memory (docs/performance.md, round 10). SQLite allocates little per read (its page
/// cache and lookaside are per connection), so one arena shared by all threads costs nothing
/// seen.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_glibc_arena() {
    // SAFETY: mallopt changes a setting of glibc's allocator; called before any thread starts.
    // A value it refuses returns 0, ignored: the default arenas stay.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_glibc_arena() {}

fn main() -> ExitCode {
    lean_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(&cli.global, args),
        Command::Config(command) => commands::config::run(&cli.global, command),
        Command::Healthcheck(args) => commands::healthcheck::run(&cli.global, args),
        Command::Task(command) => commands::task::run(&cli.global, command),
        Command::Jobs(command) => commands::jobs::run(&cli.global, command),
        Command::Users(command) => commands::users::run(&cli.global, command),
        Command::Migrate => commands::migrate::run(&cli.global),
        Command::WorkerRun(args) => commands::worker_run::run(args),
        Command::Version => commands::version::run(),
    }
}
