//! Exclusive advisory locks on output directories, held for the life of the process that writes
//! them.
//!
//! Two processes writing one run directory interleave their metrics, rotate away each other's
//! checkpoints and leave a record that claims completion over files that disagree with it. A
//! [`DirLock`] makes the second process fail at once with a one-line error naming the holder's
//! pid. The lock is an advisory `flock` on `DIR/.lock` (through `std::fs::File::try_lock`): the
//! kernel releases it when the process exits, however it exits (kill -9 included), so a stale
//! lock file never blocks anyone; the pid written into it is only for the message.

use crate::error::TrainError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive lock on a directory, released when dropped (or when the process ends).
///
/// Locks are per open file: a second `DirLock::acquire` of the same directory fails even within
/// one process, so lock a directory once (the trainer locks its run directory itself; a study
/// runner locks the study directory, not the run directories inside it).
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or fails with [`TrainError::Busy`] naming the pid of
    /// the process that holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim().parse::<u32>().ok();
                return Err(TrainError::Busy { dir: dir.display().to_string(), pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(&path, format!("cannot lock: {e}"))),
        }
        // Ours now: record who holds it (for the message another process prints).
        let write = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        })();
        write.map_err(|e| TrainError::io(&path, e))?;
        Ok(DirLock { dir: dir.to_path_buf(), _file: file })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_holder_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = DirLock::acquire(&dir).unwrap();
        assert_eq!(first.dir(), dir.as_path());
        let e = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains("run"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        drop(first);
        let again = DirLock::acquire(&dir).unwrap();
        drop(again);
        // The lock file stays behind and does not block anyone.
        assert!(dir.join(LOCK_FILE).exists());
        DirLock::acquire(&dir).unwrap();
    }
}
