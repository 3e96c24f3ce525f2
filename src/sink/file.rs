//! File and stdout writers: append already-encoded lines. The file writer creates parent
//! directories, appends under a lock (so concurrent tenants never interleave lines) and fsyncs
//! once at the end of each `Sink::write` call, so a returned write is on disk. They must not encode, batch or
//! retry: a local write either works or is an error for the caller.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::SinkError;

pub(crate) struct FileWriter {
    pub(crate) path: PathBuf,
    /// Serialises appends: a large buffer may take several write(2) calls.
    pub(crate) file: Mutex<Option<tokio::fs::File>>,
}

fn io_err(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::File {
        path: path.to_path_buf(),
        source,
    }
}

impl FileWriter {
    pub(crate) fn new(path: PathBuf) -> Self {
        FileWriter {
            path,
            file: Mutex::new(None),
        }
    }

    /// Whether the file can be appended to (for `check`) without writing a byte to it: an
    /// existing file is opened for appending; otherwise a scratch file is created and removed
    /// in the nearest existing directory (the writer creates the missing ones).
    pub(crate) fn probe(&self) -> super::Probe {
        let fail = |reason: String| super::Probe::Fail {
            hint: "check `output.path` (and that the directory exists or can be created)".into(),
            reason,
        };
        if self.path.exists() {
            return match std::fs::OpenOptions::new().append(true).open(&self.path) {
                Ok(_) => super::Probe::Ok(format!("{} is writable", self.path.display())),
                Err(e) => fail(format!(
                    "{} cannot be opened for appending: {e}",
                    self.path.display()
                )),
            };
        }
        let mut dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        while !dir.as_os_str().is_empty() && !dir.exists() {
            dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let scratch = dir.join(format!(".citrix-harvester-check-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&scratch)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&scratch);
                super::Probe::Ok(format!(
                    "{} does not exist yet; {} is writable",
                    self.path.display(),
                    dir.display()
                ))
            }
            Err(e) => fail(format!(
                "{} cannot be created: {} is not writable: {e}",
                self.path.display(),
                dir.display()
            )),
        }
    }

    /// Appends one batch; whole lines only, under the lock.
    pub(crate) async fn append(&self, batch: &[u8]) -> Result<(), SinkError> {
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| io_err(&self.path, e))?;
            }
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| io_err(&self.path, e))?;
            *guard = Some(f);
        }
        let f = guard.as_mut().expect("opened above");
        if let Err(e) = f.write_all(batch).await {
            // Reopen next time: the file may have been rotated or the disk remounted.
            *guard = None;
            return Err(io_err(&self.path, e));
        }
        Ok(())
    }

    /// Makes everything appended so far durable; called once at the end of each write call.
    pub(crate) async fn sync(&self) -> Result<(), SinkError> {
        let mut guard = self.file.lock().await;
        if let Some(f) = guard.as_mut() {
            let r = async {
                f.flush().await?;
                f.sync_all().await
            }
            .await;
            if let Err(e) = r {
                *guard = None;
                return Err(io_err(&self.path, e));
            }
        }
        Ok(())
    }
}

pub(crate) struct StdoutWriter {
    pub(crate) lock: Mutex<()>,
}

impl StdoutWriter {
    pub(crate) async fn append(&self, batch: &[u8]) -> Result<(), SinkError> {
        // Blocking write: stdout is for trying things out, and std's lock keeps lines whole.
        let _g = self.lock.lock().await;
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, batch).map_err(SinkError::Stdout)?;
        std::io::Write::flush(&mut out).map_err(SinkError::Stdout)
    }
}
