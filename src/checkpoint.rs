//! Watermarks: per tenant and entity, the `ModifiedDate` up to which every row has been
//! delivered to the sink. Stored as small JSON files under `<state_dir>/checkpoints/<customer_id>/`
//! and written atomically (temp file, fsync, rename, fsync of the directory), so a crash leaves
//! either the old or the new watermark, never a torn one. Deciding *when* a watermark may move
//! is the collectors' business (only after the sink acknowledged); this file only stores it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is corrupt ({source}); delete it to re-read from the lookback window"
    )]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// Every row with a watermark field strictly below this was delivered.
    pub watermark: DateTime<Utc>,
    /// When it was written (for operators reading the file).
    pub saved_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn open(state_dir: &Path) -> Result<Self, CheckpointError> {
        let dir = state_dir.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Checkpoints { dir })
    }

    fn path(&self, customer_id: &str, entity: &str) -> PathBuf {
        // customer_id is validated to [A-Za-z0-9_-] by config, entity names are ours.
        self.dir.join(customer_id).join(format!("{entity}.json"))
    }

    pub fn load(
        &self,
        customer_id: &str,
        entity: &str,
    ) -> Result<Option<Watermark>, CheckpointError> {
        let path = self.path(customer_id, entity);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| CheckpointError::Corrupt {
                path: path.display().to_string(),
                source,
            })
    }

    pub fn save(
        &self,
        customer_id: &str,
        entity: &str,
        watermark: DateTime<Utc>,
    ) -> Result<(), CheckpointError> {
        let path = self.path(customer_id, entity);
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = path.parent().expect("checkpoint path has a parent");
        fs::create_dir_all(dir).map_err(io)?;
        let body = serde_json::to_vec_pretty(&Watermark {
            watermark,
            saved_at: Utc::now(),
        })
        .expect("watermark serializes");
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        // The rename is durable only once the directory entry is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn save_load_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(c.load("cust1", "connections").unwrap(), None);
        let t1 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        c.save("cust1", "connections", t1).unwrap();
        assert_eq!(
            c.load("cust1", "connections").unwrap().unwrap().watermark,
            t1
        );
        let t2 = t1 + chrono::Duration::milliseconds(1);
        c.save("cust1", "connections", t2).unwrap();
        assert_eq!(
            c.load("cust1", "connections").unwrap().unwrap().watermark,
            t2
        );
        assert_eq!(c.load("cust2", "connections").unwrap(), None);
        assert!(
            !dir.path()
                .join("checkpoints/cust1/connections.json.tmp")
                .exists()
        );
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints/c")).unwrap();
        std::fs::write(dir.path().join("checkpoints/c/machines.json"), "{not json").unwrap();
        let err = c.load("c", "machines").unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("machines.json"),
            "{err}"
        );
    }
}
