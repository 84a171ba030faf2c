//! `keel worker-run KIND` (hidden): the child side of an isolated computation. The parent (the
//! worker pool of `keel serve`) starts it under an address-space limit, writes the input JSON on
//! stdin and reads one JSON answer from stdout. No configuration, telemetry or async runtime is
//! started: the job gets the limited address space to itself, and stdout stays clean.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct WorkerRunArgs {
    /// The computation to run.
    pub kind: String,
}

pub fn run(args: WorkerRunArgs) -> ExitCode {
    let jobs = keel_app::background::computations(keel_app::COMPONENTS);
    let code = keel::workers::run_child(
        &jobs,
        &args.kind,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
