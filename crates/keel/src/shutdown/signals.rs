//! SIGINT/SIGTERM handling. Install the handlers first thing in `serve` (before the listener
//! opens) so a signal never hits the default "die at once" action while keel is running.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Exit status after a second signal: 128 + SIGINT, the shell's convention for "interrupted".
pub const FORCED_EXIT_CODE: i32 = 130;

pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// After the first signal: a second one means "stop now". Logs and exits the process with
    /// `FORCED_EXIT_CODE` without waiting for anything.
    pub fn exit_on_next(mut self) {
        tokio::spawn(async move {
            let name = self.recv().await;
            tracing::warn!(signal = name, "second signal: exiting immediately");
            eprintln!("keel: second {name}, exiting immediately");
            std::process::exit(FORCED_EXIT_CODE);
        });
    }
}
