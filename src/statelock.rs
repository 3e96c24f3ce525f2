//! One process per `state_dir`: an exclusive lock on `<state_dir>/lock`, held for as long as a
//! harvester runs. Two processes on one directory would share spool segment numbers and
//! checkpoint temp files and report losses that did not happen; the second one is refused with
//! a clear error instead. The lock is the kernel's (`flock`), so it is released when the process
//! dies, however it dies. It owns nothing else in the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state_dir {dir} is in use by another citrix-harvester process (it holds {lock}); \
         give each instance its own harvester.state_dir (a backfill too), or stop the other one"
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while the harvester runs; dropping it releases the directory.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Creates `state_dir` if needed and takes its lock without waiting.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse {
                dir: state_dir.to_path_buf(),
                lock: path,
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let e = StateLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(e, LockError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("harvester.state_dir"), "{e}");
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
