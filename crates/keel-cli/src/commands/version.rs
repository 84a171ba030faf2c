//! `keel version`.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    println!("keel {}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}
