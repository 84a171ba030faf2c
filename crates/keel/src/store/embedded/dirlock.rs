//! One process per embedded store: an advisory lock on `DIR/keel.lock`.
//!
//! The writer thread owns the store's schema and caches its catalog; a second process writing
//! the same files (a `keel migrate` or `keel task run` beside a running `serve`) would add
//! indexes the first never enforces and run queries on a stale catalog. So the first opener
//! takes an exclusive `flock` on the lock file and writes its pid into it; a second opener gets
//! a clear error naming that pid. The kernel drops the lock when the process dies, however it
//! dies, so a crash never leaves a stale lock behind; `close` releases it at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::super::{StoreError, StoreResult};

pub const LOCK_FILE: &str = "keel.lock";

/// The held lock; dropping it releases the lock.
pub struct DirectoryLock {
    _file: File,
}

/// Takes the lock of `directory` (which exists), or says who holds it.
pub fn lock(directory: &Path) -> StoreResult<DirectoryLock> {
    let path = directory.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock(2) takes the descriptor of a file this function owns and two flags; it
    // touches no memory of ours.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(StoreError::Backend(format!(
                "cannot lock {}: {error}",
                path.display()
            )));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
            format!("process {holder}")
        } else {
            "another process".to_owned()
        };
        return Err(StoreError::Unavailable {
            reason: format!(
                "the embedded store in {} is in use by {holder} (one keel process per data \
                 directory: stop it first, or run the command against that server)",
                directory.display()
            ),
        });
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "cannot record this process in the lock file");
    }
    Ok(DirectoryLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let refused = lock(dir.path()).err().expect("the second lock is refused");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        assert!(matches!(refused, StoreError::Unavailable { .. }));
        drop(first);
        assert!(
            lock(dir.path()).is_ok(),
            "a released lock can be taken again"
        );
    }
}
