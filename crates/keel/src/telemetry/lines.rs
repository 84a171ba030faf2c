//! Log lines to standard output: each line whole, with one `write`, and without a lock that
//! threads queue on.
//!
//! `std::io::stdout()` serialises its writers on one mutex held across the `write` system
//! call. With a request log line per request, the runtime's worker threads queued on it: in a
//! health-check load almost every futex call of the process was that mutex (`strace -f`,
//! `docs/performance.md`). A line of at most `PIPE_BUF` (4,096) bytes is written whole by one
//! `write` to a pipe (POSIX) and to a terminal or a file (Linux holds the file's position lock
//! across the call), so those lines share a read lock only. A longer line could be split in a
//! pipe that fills mid-write and interleave with another thread's line: it holds the lock
//! alone until all of it is written. Nothing is buffered here, so a crash loses no line that
//! was logged.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{LazyLock, PoisonError, RwLock};

use tracing_subscriber::fmt::MakeWriter;

/// The size up to which a pipe takes a `write` whole (POSIX `PIPE_BUF`, 4,096 on Linux).
const PIPE_BUF: usize = 4096;

/// A file descriptor that whole lines are written to from many threads.
pub struct Lines {
    file: File,
    /// Shared by lines of up to `PIPE_BUF` bytes, held alone by longer ones.
    longer: RwLock<()>,
}

impl Lines {
    pub fn new(file: File) -> Self {
        Self {
            file,
            longer: RwLock::new(()),
        }
    }

    /// Writes `line` (a whole line, newline included) so that it reaches the file unbroken.
    pub fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut file = &self.file;
        if line.len() <= PIPE_BUF {
            let _shared = self.longer.read().unwrap_or_else(PoisonError::into_inner);
            file.write_all(line)
        } else {
            let _alone = self.longer.write().unwrap_or_else(PoisonError::into_inner);
            file.write_all(line)
        }
    }
}

/// The process's standard output, duplicated once (the same open file: same position, same
/// `O_APPEND`); `None` if it cannot be (closed), and lines then go through `std::io::stdout`.
static STDOUT: LazyLock<Option<Lines>> = LazyLock::new(|| {
    io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(|fd| Lines::new(File::from(fd)))
});

/// The log's writer: each `write_all` of the formatting layer (one per line) is one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = Stdout;

    fn make_writer(&'a self) -> Stdout {
        Stdout
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        match &*STDOUT {
            Some(lines) => lines.write_line(line),
            None => io::stdout().write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Threads writing short and long lines at once into a pipe small enough to fill in the
    /// middle of a long line: every line comes out whole.
    #[test]
    fn concurrent_lines_reach_a_pipe_unbroken() {
        let (mut reader, writer) = io::pipe().unwrap();
        let lines = std::sync::Arc::new(Lines::new(File::from(std::os::fd::OwnedFd::from(writer))));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let lines = std::sync::Arc::clone(&lines);
                std::thread::spawn(move || {
                    for i in 0..300usize {
                        // Lengths from a few bytes to ~3 pipe buffers' worth of pages.
                        let length = if i.is_multiple_of(4) {
                            9_000 + i * 37
                        } else {
                            10 + i % 90
                        };
                        let fill = char::from(b'a' + t);
                        let line = format!("{t}:{i}:{}\n", fill.to_string().repeat(length));
                        lines.write_line(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        let reading = std::thread::spawn(move || {
            let mut all = String::new();
            reader.read_to_string(&mut all).unwrap();
            all
        });
        for thread in threads {
            thread.join().unwrap();
        }
        drop(lines);
        let all = reading.join().unwrap();
        let mut seen = 0;
        for line in all.lines() {
            let mut parts = line.splitn(3, ':');
            let t: u8 = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            let body = parts.next().unwrap();
            let fill = char::from(b'a' + t);
            let length = if i.is_multiple_of(4) {
                9_000 + i * 37
            } else {
                10 + i % 90
            };
            assert_eq!(body.len(), length, "line {t}:{i} was broken");
            assert!(body.chars().all(|c| c == fill), "line {t}:{i} was mixed");
            seen += 1;
        }
        assert_eq!(seen, 4 * 300);
    }
}
