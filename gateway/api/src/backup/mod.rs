//! Data export and import (EMQX 5.4+ `/data`): the node's operator-made state, written to a
//! backup file (see [`archive`]) kept under `{node.data_dir}/backup/`, and read back into
//! this node or another one. What is in a backup, table by table, is in [`tables`].
//!
//! The directory holds at most [`MAX_FILES`] backups (exports and uploads are refused past
//! it), each readable by the node's user only: a backup carries password hashes, hashed API
//! key secrets and PSK keys.

pub(crate) mod archive;
pub(crate) mod tables;

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use portico_core::sys::format_rfc3339_utc;

/// Longest backup file name.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Most backup files kept in the directory.
pub(crate) const MAX_FILES: usize = 100;

/// The suffix every backup file name has.
const SUFFIX: &str = ".tar.gz";

/// Checks a backup file name from a request: `portico-export-...tar.gz` or any plain
/// `*.tar.gz` name of letters, digits, `-`, `_` and `.`, at most [`MAX_NAME_LEN`] bytes; no
/// path separator, no `..`, no leading dot.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!("filename: longer than {MAX_NAME_LEN} bytes"));
    }
    if !name.ends_with(SUFFIX) || name.len() == SUFFIX.len() {
        return Err(format!("filename {name:?}: must be a name ending in {SUFFIX}"));
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(format!("filename {name:?}: must not start with '.' or contain '..'"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!(
            "filename {name:?}: only letters, digits, '-', '_' and '.' (no path separators)"
        ));
    }
    Ok(())
}

/// The name of an export made at `now_ms`: `portico-export-2026-11-23-09-00-57.123.tar.gz`.
pub(crate) fn export_name(now_ms: u64) -> String {
    // `2026-11-23T09:00:57Z` → `2026-11-23-09-00-57`.
    let stamp: String = format_rfc3339_utc(now_ms)
        .trim_end_matches('Z')
        .chars()
        .map(|c| if c == 'T' || c == ':' { '-' } else { c })
        .collect();
    format!("portico-export-{stamp}.{:03}{SUFFIX}", now_ms % 1000)
}

/// One backup file in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// Its name.
    pub(crate) filename: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// When it was written (its modification time), ms since the epoch.
    pub(crate) created_at_ms: u64,
}

/// The backup directory.
#[derive(Debug, Clone)]
pub(crate) struct BackupDir {
    dir: PathBuf,
}

impl BackupDir {
    pub(crate) fn new(dir: PathBuf) -> BackupDir {
        BackupDir { dir }
    }

    /// Where the file `name` (already checked with [`check_name`]) is.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every backup file (a name [`check_name`] accepts), newest first.
    pub(crate) fn list(&self) -> io::Result<Vec<FileInfo>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut files = Vec::new();
        // Bounded: names the API did not write are skipped without a stat, and at most a few
        // times MAX_FILES entries are looked at.
        for entry in entries.take(MAX_FILES * 10) {
            let entry = entry?;
            let Ok(filename) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&filename).is_err() {
                continue;
            }
            let metadata = entry.metadata()?;
            if !metadata.is_file() {
                continue;
            }
            let created_at_ms = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            files.push(FileInfo {
                filename,
                size: metadata.len(),
                created_at_ms,
            });
        }
        files.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| b.filename.cmp(&a.filename))
        });
        Ok(files)
    }

    /// Writes a new backup file `name` (owner-only, via a temporary file and a rename, so a
    /// half-written file is never listed). Fails with `AlreadyExists` if the name is taken and
    /// with `QuotaExceeded` when [`MAX_FILES`] backups exist.
    pub(crate) fn save(&self, name: &str, bytes: &[u8]) -> io::Result<FileInfo> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        if self.list()?.len() >= MAX_FILES {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                format!("{MAX_FILES} backup files exist; delete some first"),
            ));
        }
        let target = self.path(name);
        if target.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a backup named {name} exists"),
            ));
        }
        let temporary = self.dir.join(format!(".{name}.part"));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, &target)
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        let metadata = fs::metadata(&target)?;
        let created_at_ms = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(FileInfo {
            filename: name.to_owned(),
            size: metadata.len(),
            created_at_ms,
        })
    }

    /// Reads the backup `name`, at most [`archive::MAX_ARCHIVE_BYTES`].
    pub(crate) fn load(&self, name: &str) -> io::Result<Vec<u8>> {
        read_bounded(&self.path(name))
    }

    /// Deletes the backup `name`.
    pub(crate) fn delete(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }
}

/// Reads `path`, refusing a file larger than [`archive::MAX_ARCHIVE_BYTES`].
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path)?;
    let limit = archive::MAX_ARCHIVE_BYTES as u64;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let name = export_name(1_795_424_457_123);
        assert!(name.starts_with("portico-export-20"), "{name}");
        assert!(name.ends_with(".123.tar.gz"), "{name}");
        assert!(check_name(&name).is_ok());
        assert!(check_name("site-a.backup.tar.gz").is_ok());
        for bad in [
            "",
            ".tar.gz",
            "x.tar",
            "../x.tar.gz",
            "a/b.tar.gz",
            "a\\b.tar.gz",
            "a..b.tar.gz",
            ".hidden.tar.gz",
            "sp ace.tar.gz",
            "nul\0.tar.gz",
            "é.tar.gz",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.tar.gz", "a".repeat(MAX_NAME_LEN));
        assert!(check_name(&long).is_err());
    }

    #[test]
    fn save_list_load_delete() {
        let dir = std::env::temp_dir().join(format!("portico-backup-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let backups = BackupDir::new(dir.clone());
        assert!(backups.list().expect("list").is_empty(), "a missing directory is empty");
        let info = backups.save("one.tar.gz", b"data").expect("save");
        assert_eq!(info.size, 4);
        let again = backups.save("one.tar.gz", b"other").expect_err("taken");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        fs::write(dir.join("notes.txt"), b"not a backup").expect("write");
        let listed = backups.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].filename, "one.tar.gz");
        assert_eq!(backups.load("one.tar.gz").expect("load"), b"data");
        backups.delete("one.tar.gz").expect("delete");
        assert!(backups.list().expect("list").is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
