//! Pre-shared keys: the [`PskStore`] the handshake asks, and [`PskFile`], a store read from
//! EMQX's `psk_authentication.init_file`.
//!
//! # The file format (EMQX `emqx_psk`)
//!
//! One `identity<separator>secret` per line, the separator `:` unless configured. The line is
//! split at the *first* separator, so a secret may contain it and an identity may not. The
//! secret is taken as the raw bytes written in the file (its trailing `\n` or `\r\n` removed),
//! exactly as EMQX does: EMQX hands the binary it read to OTP's `user_lookup_fun`, with no hex
//! or base64 decoding. So `dev1:secret1` makes the 7-byte key `secret1`, and a client whose tool
//! wants the key in hex (`openssl s_client -psk`) is given the hex of those ASCII bytes
//! (`73656372657431`). Keeping EMQX's reading means a file moves over unchanged.
//!
//! Where we differ, on purpose: blank lines are skipped (EMQX refuses the file); an identity
//! must be UTF-8 (it is shown to channels as text, see [`ConnInfo::psk_identity`]); an empty
//! identity or secret and a repeated identity are errors (EMQX keeps the last); every error
//! names the file and the line.
//!
//! [`ConnInfo::psk_identity`]: portico_core::channel::ConnInfo::psk_identity

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a DTLS handshake looks up the key of a PSK identity. Called synchronously from the
/// handshake (the DTLS engine's callback is synchronous), so it must answer from memory.
pub trait PskStore: Send + Sync + 'static {
    /// The key of `identity`, or `None` if the identity is unknown (the handshake fails).
    fn key(&self, identity: &[u8]) -> Option<Vec<u8>>;
}

/// The separator EMQX uses by default.
pub const DEFAULT_SEPARATOR: &str = ":";

/// An in-memory PSK table, usually read from an EMQX `init_file` (see the module docs).
#[derive(Clone, Default)]
pub struct PskFile {
    keys: HashMap<Box<str>, Box<[u8]>>,
}

impl std::fmt::Debug for PskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("PskFile")
            .field("identities", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// A PSK file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskFileError {
    /// The file cannot be read.
    #[error("cannot read the PSK file {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        why: String,
    },
    /// A line is not `identity<separator>secret`.
    #[error("{path}:{line}: {why}")]
    Line {
        /// The file (empty when parsed from memory).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The separator is empty.
    #[error("the PSK file separator must not be empty")]
    EmptySeparator,
}

impl PskFile {
    /// Reads `path`; see the module docs for the format.
    pub fn load(path: &Path, separator: &str) -> Result<PskFile, PskFileError> {
        let bytes = std::fs::read(path).map_err(|e| PskFileError::Read {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        Self::parse_at(&bytes, separator, path)
    }

    /// Parses the contents of a PSK file.
    pub fn parse(contents: &[u8], separator: &str) -> Result<PskFile, PskFileError> {
        Self::parse_at(contents, separator, Path::new(""))
    }

    fn parse_at(contents: &[u8], separator: &str, path: &Path) -> Result<PskFile, PskFileError> {
        if separator.is_empty() {
            return Err(PskFileError::EmptySeparator);
        }
        let sep = separator.as_bytes();
        let mut keys = HashMap::new();
        let bad = |line: usize, why: String| PskFileError::Line {
            path: path.to_owned(),
            line,
            why,
        };
        for (index, raw) in contents.split_inclusive(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let text = raw
                .strip_suffix(b"\r\n")
                .or_else(|| raw.strip_suffix(b"\n"))
                .unwrap_or(raw);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Some(at) = text.windows(sep.len()).position(|w| w == sep) else {
                return Err(bad(line, format!("expected identity{separator}secret")));
            };
            let (identity, secret) = (&text[..at], &text[at + sep.len()..]);
            let identity =
                std::str::from_utf8(identity).map_err(|_| bad(line, "the identity is not UTF-8".to_owned()))?;
            if identity.is_empty() {
                return Err(bad(line, "empty identity".to_owned()));
            }
            if secret.is_empty() {
                return Err(bad(line, format!("empty secret for identity {identity:?}")));
            }
            if keys.insert(Box::from(identity), Box::from(secret)).is_some() {
                return Err(bad(line, format!("identity {identity:?} appears twice")));
            }
        }
        Ok(PskFile { keys })
    }

    /// A table from `(identity, key)` pairs (tests, other sources); a repeated identity keeps
    /// the last key.
    pub fn from_entries<I, K>(entries: I) -> PskFile
    where
        I: IntoIterator<Item = (String, K)>,
        K: Into<Vec<u8>>,
    {
        PskFile {
            keys: entries
                .into_iter()
                .map(|(identity, key)| (identity.into_boxed_str(), key.into().into_boxed_slice()))
                .collect(),
        }
    }

    /// Every `(identity, key)`, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys.iter().map(|(identity, key)| (&**identity, &**key))
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no identity is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl PskStore for PskFile {
    fn key(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let identity = std::str::from_utf8(identity).ok()?;
        self.keys.get(identity).map(|key| key.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_error(contents: &str) -> (usize, String) {
        match PskFile::parse(contents.as_bytes(), ":") {
            Err(PskFileError::Line { line, why, .. }) => (line, why),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_emqx_format() {
        let file = PskFile::parse(b"dev1:secret1\ndev2:a:b:c\r\n\n  \nmydevice1:c2VjcmV0", ":").expect("parses");
        assert_eq!(file.len(), 3);
        assert_eq!(file.key(b"dev1").as_deref(), Some(&b"secret1"[..]));
        assert_eq!(
            file.key(b"dev2").as_deref(),
            Some(&b"a:b:c"[..]),
            "split at the first separator"
        );
        // The raw string, not base64-decoded (as EMQX).
        assert_eq!(file.key(b"mydevice1").as_deref(), Some(&b"c2VjcmV0"[..]));
        assert_eq!(file.key(b"nobody"), None);
        assert_eq!(file.key(&[0xFF]), None);
    }

    #[test]
    fn a_custom_separator() {
        let file = PskFile::parse(b"dev1 => k1\ndev:2 => k:2\n", " => ").expect("parses");
        assert_eq!(file.key(b"dev1").as_deref(), Some(&b"k1"[..]));
        assert_eq!(file.key(b"dev:2").as_deref(), Some(&b"k:2"[..]));
        assert_eq!(
            PskFile::parse(b"a:b", "").expect_err("empty separator"),
            PskFileError::EmptySeparator
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            line_error("a:1\nno separator\n"),
            (2, "expected identity:secret".to_owned())
        );
        assert_eq!(line_error("\n\n:k\n"), (3, "empty identity".to_owned()));
        assert_eq!(line_error("a:\n"), (1, "empty secret for identity \"a\"".to_owned()));
        assert_eq!(
            line_error("a:1\nb:2\na:3\n"),
            (3, "identity \"a\" appears twice".to_owned())
        );
        match PskFile::parse(b"ok:1\n\xFF\xFE:k\n", ":") {
            Err(PskFileError::Line { line: 2, why, .. }) => assert_eq!(why, "the identity is not UTF-8"),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("portico-psk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("psk.txt");
        std::fs::write(&path, "dev1:k1\nbroken\n").expect("write");
        let error = PskFile::load(&path, ":").expect_err("line 2").to_string();
        assert!(error.starts_with(&format!("{}:2: ", path.display())), "{error}");
        let missing = PskFile::load(&dir.join("missing.txt"), ":")
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("missing.txt"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn debug_never_shows_keys() {
        let file = PskFile::from_entries([("dev1".to_owned(), b"topsecret".to_vec())]);
        let shown = format!("{file:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("identities: 1"), "{shown}");
    }
}
