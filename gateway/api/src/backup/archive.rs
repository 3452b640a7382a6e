//! The backup file: a gzip-compressed tar holding `META.json` and one `<table>.json` per
//! table (a JSON array of entries). Written whole in memory (backups are bounded by
//! [`MAX_ARCHIVE_BYTES`]); read with every size bounded, since an uploaded file is hostile
//! until read: the compressed size ([`MAX_ARCHIVE_BYTES`], checked by the caller), the
//! unpacked size ([`MAX_UNPACKED_BYTES`], counted while decompressing: a gzip bomb stops there)
//! and the number of entries ([`MAX_ENTRIES`]). Entries are never written to disk, so a path
//! in the tar cannot escape anywhere; entries other than `META.json` and the known tables are
//! reported as ignored.

use std::collections::BTreeMap;
use std::io::{self, Read};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

/// The format this version writes and reads. A file of another version is refused.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Largest backup file accepted (uploaded or read from the backup directory), compressed.
pub(crate) const MAX_ARCHIVE_BYTES: usize = 100 * 1024 * 1024;

/// Most bytes a backup may unpack to (tar headers included).
pub(crate) const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;

/// Most entries in a backup's tar (the known ones are a handful).
pub(crate) const MAX_ENTRIES: usize = 64;

/// The metadata entry's name.
pub(crate) const META: &str = "META.json";

/// `META.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// [`FORMAT_VERSION`] when written.
    pub(crate) format_version: u32,
    /// The Portico version that wrote it.
    pub(crate) portico_version: String,
    /// The node that wrote it.
    pub(crate) node: String,
    /// When, RFC 3339 UTC.
    pub(crate) created_at: String,
    /// The tables inside, by name.
    pub(crate) tables: Vec<String>,
}

/// A backup read back.
#[derive(Debug)]
pub(crate) struct Archive {
    /// Its metadata.
    pub(crate) meta: Meta,
    /// The known tables' JSON, by table name.
    pub(crate) tables: BTreeMap<String, Vec<u8>>,
    /// Entries that were skipped, with why.
    pub(crate) ignored: Vec<String>,
}

/// Why a backup file cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// Not gzip, not tar, or cut short.
    #[error("not a readable .tar.gz: {0}")]
    Corrupt(String),
    /// Unpacks to more than [`MAX_UNPACKED_BYTES`].
    #[error("unpacks to more than {MAX_UNPACKED_BYTES} bytes")]
    TooLarge,
    /// More than [`MAX_ENTRIES`] entries.
    #[error("more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// No `META.json`.
    #[error("no {META}: not a Portico backup")]
    NoMeta,
    /// `META.json` does not parse.
    #[error("{META}: {0}")]
    BadMeta(String),
    /// Written by a format this version does not read.
    #[error("{META}: format_version {found} is not supported (this version reads {FORMAT_VERSION})")]
    Version {
        /// The file's version.
        found: u32,
    },
}

/// Packs `meta` and the tables (`name`, JSON bytes) as a `.tar.gz`.
pub(crate) fn write(meta: &Meta, tables: &[(String, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let meta_json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    append(&mut tar, META, &meta_json)?;
    for (name, json) in tables {
        append(&mut tar, &format!("{name}.json"), json)?;
    }
    tar.into_inner()?.finish()
}

fn append<W: io::Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// A reader that fails once more than `left` bytes came through: the gzip bomb guard.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit tells "exactly at the limit" from "over it".
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "unpacked size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn corrupt(error: io::Error) -> ArchiveError {
    if error.kind() == io::ErrorKind::FileTooLarge {
        ArchiveError::TooLarge
    } else {
        ArchiveError::Corrupt(error.to_string())
    }
}

/// Reads a backup; `known` are the table names to keep (others are ignored).
pub(crate) fn read(bytes: &[u8], known: &[&str]) -> Result<Archive, ArchiveError> {
    read_limited(bytes, known, MAX_UNPACKED_BYTES)
}

/// [`read`] with `max_unpacked` bytes instead of [`MAX_UNPACKED_BYTES`] (tests use a small one).
fn read_limited(bytes: &[u8], known: &[&str], max_unpacked: u64) -> Result<Archive, ArchiveError> {
    let limited = Limited {
        inner: GzDecoder::new(bytes),
        left: max_unpacked,
    };
    let mut tar = tar::Archive::new(limited);
    let mut meta = None;
    let mut tables = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut count = 0usize;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = path.strip_prefix("./").unwrap_or(&path).to_owned();
        let table = name.strip_suffix(".json").filter(|t| known.contains(t));
        let kind = entry.header().entry_type();
        if !kind.is_file() || (name != META && table.is_none()) {
            ignored.push(format!("{path}: not a known entry"));
            continue;
        }
        if entry.size() > max_unpacked {
            return Err(ArchiveError::TooLarge);
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(corrupt)?;
        match table {
            Some(table) => {
                if tables.insert(table.to_owned(), data).is_some() {
                    ignored.push(format!("{path}: a repeat; the last one is used"));
                }
            }
            None => meta = Some(data),
        }
    }
    let meta = meta.ok_or(ArchiveError::NoMeta)?;
    // The version first, so that a newer file's other changes are not reported as errors.
    let version: serde_json::Value = serde_json::from_slice(&meta).map_err(|e| ArchiveError::BadMeta(e.to_string()))?;
    match version.get("format_version").and_then(serde_json::Value::as_u64) {
        Some(found) if found == u64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(ArchiveError::Version {
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        None => {
            return Err(ArchiveError::BadMeta(
                "format_version: missing or not a number".to_owned(),
            ));
        }
    }
    let meta: Meta = serde_json::from_value(version).map_err(|e| ArchiveError::BadMeta(e.to_string()))?;
    Ok(Archive { meta, tables, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["banned", "psk"];

    fn meta() -> Meta {
        Meta {
            format_version: FORMAT_VERSION,
            portico_version: "0.1.0".to_owned(),
            node: "portico@127.0.0.1".to_owned(),
            created_at: "2026-11-23T09:00:00Z".to_owned(),
            tables: vec!["banned".to_owned()],
        }
    }

    /// A `.tar.gz` of raw entries (path, type, data), as a hostile uploader would make it.
    fn raw(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            // The name's bytes as they are: `set_path` refuses `..`, which a hostile file has.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(data.len() as u64);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append(&header, *data).expect("append");
        }
        tar.into_inner().expect("tar").finish().expect("gzip")
    }

    #[test]
    fn round_trip() {
        let tables = vec![("banned".to_owned(), br#"[{"as":"clientid"}]"#.to_vec())];
        let bytes = write(&meta(), &tables).expect("write");
        let archive = read(&bytes, KNOWN).expect("read");
        assert_eq!(archive.meta, meta());
        assert_eq!(archive.tables.len(), 1);
        assert_eq!(archive.tables["banned"], tables[0].1);
        assert!(archive.ignored.is_empty(), "{:?}", archive.ignored);
    }

    #[test]
    fn unknown_entries_are_ignored_and_reported() {
        let meta_json = serde_json::to_vec(&meta()).expect("json");
        let bytes = raw(&[
            (META, tar::EntryType::Regular, &meta_json),
            ("../../etc/passwd", tar::EntryType::Regular, b"x"),
            ("other.json", tar::EntryType::Regular, b"[]"),
            ("psk.json", tar::EntryType::Symlink, b""),
            ("psk.json", tar::EntryType::Regular, b"[1]"),
        ]);
        let archive = read(&bytes, KNOWN).expect("read");
        assert_eq!(archive.tables.keys().collect::<Vec<_>>(), ["psk"]);
        assert_eq!(archive.tables["psk"], b"[1]");
        assert_eq!(archive.ignored.len(), 3, "{:?}", archive.ignored);
        assert!(archive.ignored[0].starts_with("../../etc/passwd"));
    }

    #[test]
    fn bad_versions_and_missing_meta_are_refused() {
        let mut newer = serde_json::to_value(meta()).expect("json");
        newer["format_version"] = serde_json::json!(2);
        let newer = serde_json::to_vec(&newer).expect("json");
        let bytes = raw(&[(META, tar::EntryType::Regular, &newer)]);
        assert!(matches!(read(&bytes, KNOWN), Err(ArchiveError::Version { found: 2 })));

        let bytes = raw(&[(META, tar::EntryType::Regular, b"{\"tables\": []}")]);
        assert!(matches!(read(&bytes, KNOWN), Err(ArchiveError::BadMeta(_))));

        let bytes = raw(&[("banned.json", tar::EntryType::Regular, b"[]")]);
        assert!(matches!(read(&bytes, KNOWN), Err(ArchiveError::NoMeta)));
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(read(b"not gzip at all", KNOWN), Err(ArchiveError::Corrupt(_))));
        let bytes = write(&meta(), &[]).expect("write");
        assert!(matches!(
            read(&bytes[..bytes.len() / 2], KNOWN),
            Err(ArchiveError::Corrupt(_))
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_unpacked_limit() {
        // 8 MiB of zeros in one entry compress to a few KiB; read with a 1 MiB limit (the real
        // one is too large to unpack quickly in a test), it stops at the limit.
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut header = tar::Header::new_gnu();
        let size = 8 * 1024 * 1024;
        header.set_size(size);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        tar.append_data(&mut header, "banned.json", io::repeat(0).take(size))
            .expect("append");
        let bomb = tar.into_inner().expect("tar").finish().expect("gzip");
        assert!(bomb.len() < 64 * 1024, "{} bytes compressed", bomb.len());
        let limit = 1024 * 1024;
        assert!(matches!(read_limited(&bomb, KNOWN, limit), Err(ArchiveError::TooLarge)));
        // Entries each under the limit but over it together stop at the limit too (the
        // decompressed stream is counted, not the headers' sizes).
        let meta_json = serde_json::to_vec(&meta()).expect("json");
        let part = vec![b' '; 600 * 1024];
        let two = raw(&[
            (META, tar::EntryType::Regular, &meta_json),
            ("banned.json", tar::EntryType::Regular, &part),
            ("psk.json", tar::EntryType::Regular, &part),
        ]);
        assert!(matches!(read_limited(&two, KNOWN, limit), Err(ArchiveError::TooLarge)));
        // The same limit lets a normal backup through.
        let small = write(&meta(), &[("banned".to_owned(), b"[]".to_vec())]).expect("write");
        assert!(read_limited(&small, KNOWN, limit).is_ok());
    }

    #[test]
    fn too_many_entries() {
        let meta_json = serde_json::to_vec(&meta()).expect("json");
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("junk-{i}")).collect();
        let mut entries: Vec<(&str, tar::EntryType, &[u8])> = vec![(META, tar::EntryType::Regular, &meta_json)];
        entries.extend(names.iter().map(|n| (n.as_str(), tar::EntryType::Regular, &b""[..])));
        assert!(matches!(read(&raw(&entries), KNOWN), Err(ArchiveError::TooManyEntries)));
    }
}
