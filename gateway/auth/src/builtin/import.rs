//! Importing users from EMQX's CSV and JSON files (`emqx_authn_mnesia:import_users`, the
//! bootstrap file).
//!
//! The formats, as EMQX reads them:
//! - CSV with a header row naming the columns, in any order: `user_id`, then `password`
//!   ("plain" files, e.g. `user_id,password,is_superuser`) or `password_hash` and optionally
//!   `salt` ("hash" files, `user_id,password_hash,salt,is_superuser`); `is_superuser` is
//!   optional. Unknown columns (EMQX 6's `namespace`) are ignored. No quoting: fields cannot
//!   hold commas. Unlike EMQX, blanks around fields are trimmed but blanks inside are kept (EMQX
//!   splits on them), and empty fields are allowed (EMQX drops them, which shifts columns).
//! - JSON: an array of objects with the same keys; `is_superuser` is `true` or `"true"`.
//!
//! Each user is checked on its own: a bad line (wrong number of fields, missing user id, too
//! long, ...) is reported with its line number (CSV) or entry number (JSON) and the others are
//! imported. Users that exist are skipped, never overwritten.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use super::{BuiltinDb, MAX_PASSWORD_LEN, MAX_SALT_LEN, MAX_STORED_HASH_LEN, UserRecord, check_user_id};

/// Largest import file, in bytes (100 MiB).
pub const MAX_IMPORT_BYTES: u64 = 100 * 1024 * 1024;
/// Most users in one import file.
pub const MAX_IMPORT_USERS: usize = 1_000_000;
/// Failures listed in an [`ImportReport`] (all are counted).
pub const MAX_REPORTED_FAILURES: usize = 1000;

/// What an import file holds: EMQX's `bootstrap_type` / import `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportKind {
    /// Clear-text passwords (`password` column), hashed on import with the configured algorithm;
    /// EMQX's default.
    #[default]
    Plain,
    /// Stored hashes (`password_hash`, `salt` columns) made with the configured algorithm.
    Hash,
}

impl ImportKind {
    /// The configuration spelling (`plain`, `hash`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Plain => "plain",
            ImportKind::Hash => "hash",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(name: &str) -> Option<ImportKind> {
        match name {
            "plain" => Some(ImportKind::Plain),
            "hash" => Some(ImportKind::Hash),
            _ => None,
        }
    }

    fn secret_field(self) -> &'static str {
        match self {
            ImportKind::Plain => "password",
            ImportKind::Hash => "password_hash",
        }
    }
}

/// Where in the file a user was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportLocation {
    /// CSV line number, from 1 (the header is line 1 when nothing precedes it).
    Line(usize),
    /// JSON array entry, from 1.
    Entry(usize),
}

impl fmt::Display for ImportLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportLocation::Line(n) => write!(f, "line {n}"),
            ImportLocation::Entry(n) => write!(f, "entry {n}"),
        }
    }
}

/// One user that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    /// Where it was.
    pub location: ImportLocation,
    /// Its user id, when one was read.
    pub user_id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ImportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user_id {
            Some(user_id) => write!(f, "{} (user {user_id:?}): {}", self.location, self.reason),
            None => write!(f, "{}: {}", self.location, self.reason),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Users added.
    pub added: usize,
    /// Users skipped because their id exists (also a repeat within the file).
    pub skipped: usize,
    /// Users that could not be imported.
    pub failed: usize,
    /// The first [`MAX_REPORTED_FAILURES`] failures, in file order.
    pub failures: Vec<ImportFailure>,
}

impl ImportReport {
    /// Users in the file.
    pub fn total(&self) -> usize {
        self.added + self.skipped + self.failed
    }

    fn fail(&mut self, location: ImportLocation, user_id: Option<&str>, reason: impl Into<String>) {
        self.failed += 1;
        if self.failures.len() < MAX_REPORTED_FAILURES {
            self.failures.push(ImportFailure {
                location,
                user_id: user_id.map(str::to_owned),
                reason: reason.into(),
            });
        }
    }
}

/// Why a whole file was refused (nothing was imported).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_IMPORT_BYTES`].
    #[error("the import file is {size} bytes; at most {MAX_IMPORT_BYTES} are allowed")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// The file holds more than [`MAX_IMPORT_USERS`] users.
    #[error("the import file holds {count} users; at most {MAX_IMPORT_USERS} are allowed")]
    TooManyUsers {
        /// How many.
        count: usize,
    },
    /// The file is not UTF-8.
    #[error("the import file is not UTF-8")]
    NotUtf8,
    /// Neither `.csv` nor `.json`.
    #[error("unsupported import file {0:?}: the name must end in .csv or .json")]
    UnsupportedFormat(String),
    /// The CSV header lacks a required column.
    #[error("the CSV header has no {column:?} column, required for a {kind} import")]
    MissingColumn {
        /// The column.
        column: &'static str,
        /// The import kind.
        kind: &'static str,
    },
    /// The CSV header names a column twice.
    #[error("the CSV header names {0:?} twice")]
    DuplicateColumn(String),
    /// The JSON does not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is not an array of users.
    #[error("the JSON import must be an array of user objects")]
    NotAnArray,
}

/// A user read from a file, not yet checked, or why its entry is unreadable (user id if any,
/// reason).
type Parsed = Result<Candidate, (ImportLocation, Option<String>, String)>;

/// One user read from a file, not yet checked.
struct Candidate {
    location: ImportLocation,
    user_id: String,
    /// Password (plain) or stored hash (hash).
    secret: String,
    salt: String,
    is_superuser: bool,
}

impl BuiltinDb {
    /// Imports users from EMQX's CSV format (see the module docs). Existing users are skipped.
    pub fn import_csv(&self, text: &str, kind: ImportKind) -> Result<ImportReport, ImportError> {
        check_size(text.len() as u64)?;
        Ok(self.import(parse_csv(text, kind)?, kind))
    }

    /// Imports users from EMQX's JSON format (see the module docs). Existing users are skipped.
    pub fn import_json(&self, text: &str, kind: ImportKind) -> Result<ImportReport, ImportError> {
        check_size(text.len() as u64)?;
        Ok(self.import(parse_json(text, kind)?, kind))
    }

    /// Imports the bootstrap file at start-up (EMQX `bootstrap_file` / `bootstrap_type`): CSV or
    /// JSON by the file name's extension; adds only users not yet present.
    pub fn bootstrap(&self, path: &Path, kind: ImportKind) -> Result<ImportReport, ImportError> {
        let io = |error| ImportError::Io {
            path: path.display().to_string(),
            error,
        };
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if extension != "csv" && extension != "json" {
            return Err(ImportError::UnsupportedFormat(path.display().to_string()));
        }
        check_size(std::fs::metadata(path).map_err(io)?.len())?;
        let bytes = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|_| ImportError::NotUtf8)?;
        let report = if extension == "csv" {
            self.import_csv(&text, kind)?
        } else {
            self.import_json(&text, kind)?
        };
        tracing::info!(
            file = %path.display(),
            added = report.added,
            skipped = report.skipped,
            failed = report.failed,
            "built-in users bootstrapped"
        );
        for failure in &report.failures {
            tracing::warn!(file = %path.display(), "built-in user not imported: {failure}");
        }
        Ok(report)
    }

    fn import(&self, entries: Vec<Parsed>, kind: ImportKind) -> ImportReport {
        let mut report = ImportReport::default();
        for entry in entries {
            let candidate = match entry {
                Ok(candidate) => candidate,
                Err((location, user_id, reason)) => {
                    report.fail(location, user_id.as_deref(), reason);
                    continue;
                }
            };
            let location = candidate.location;
            let user_id = candidate.user_id.clone();
            match self.import_one(candidate, kind) {
                Ok(true) => report.added += 1,
                Ok(false) => report.skipped += 1,
                Err(reason) => report.fail(location, Some(&user_id), reason),
            }
        }
        report
    }

    /// Adds one candidate; Ok(false) when the user exists.
    fn import_one(&self, candidate: Candidate, kind: ImportKind) -> Result<bool, String> {
        check_user_id(&candidate.user_id).map_err(|e| e.to_string())?;
        if self.users.read().contains_key(&candidate.user_id) {
            return Ok(false);
        }
        let (password_hash, salt) = match kind {
            ImportKind::Plain => {
                if candidate.secret.len() > MAX_PASSWORD_LEN {
                    return Err(format!("the password is longer than {MAX_PASSWORD_LEN} bytes"));
                }
                self.algorithm
                    .hash_new(candidate.secret.as_bytes())
                    .map_err(|e| e.to_string())?
            }
            ImportKind::Hash => {
                if candidate.secret.is_empty() {
                    return Err("the password_hash is empty".into());
                }
                if candidate.secret.len() > MAX_STORED_HASH_LEN {
                    return Err(format!("the password_hash is longer than {MAX_STORED_HASH_LEN} bytes"));
                }
                if candidate.salt.len() > MAX_SALT_LEN {
                    return Err(format!("the salt is longer than {MAX_SALT_LEN} bytes"));
                }
                (candidate.secret, candidate.salt)
            }
        };
        // Another import or an API call may have added the user meanwhile: that is a skip too.
        Ok(self
            .users
            .insert_new(UserRecord {
                user_id: candidate.user_id,
                password_hash,
                salt,
                is_superuser: candidate.is_superuser,
            })
            .is_ok())
    }
}

fn check_size(size: u64) -> Result<(), ImportError> {
    if size > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge { size });
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), ImportError> {
    if count > MAX_IMPORT_USERS {
        return Err(ImportError::TooManyUsers { count });
    }
    Ok(())
}

/// `true` / `false` (any case) or empty (false).
fn parse_superuser(text: &str) -> Option<bool> {
    if text.is_empty() || text.eq_ignore_ascii_case("false") {
        Some(false)
    } else if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else {
        None
    }
}

/// Column positions of a CSV header.
struct Columns {
    count: usize,
    user_id: usize,
    secret: usize,
    salt: Option<usize>,
    is_superuser: Option<usize>,
}

fn parse_header(line: &str, kind: ImportKind) -> Result<Columns, ImportError> {
    let names: Vec<&str> = line.split(',').map(str::trim).collect();
    for (i, name) in names.iter().enumerate() {
        if !name.is_empty() && names[..i].contains(name) {
            return Err(ImportError::DuplicateColumn((*name).to_owned()));
        }
    }
    let find = |name: &str| names.iter().position(|n| *n == name);
    let missing = |column| ImportError::MissingColumn {
        column,
        kind: kind.as_str(),
    };
    let secret_field = kind.secret_field();
    Ok(Columns {
        count: names.len(),
        user_id: find("user_id").ok_or_else(|| missing("user_id"))?,
        secret: find(secret_field).ok_or_else(|| missing(secret_field))?,
        salt: find("salt").filter(|_| kind == ImportKind::Hash),
        is_superuser: find("is_superuser"),
    })
}

fn parse_csv(text: &str, kind: ImportKind) -> Result<Vec<Parsed>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns = parse_header(header, kind)?;
    check_count(lines.clone().count())?;
    Ok(lines
        .map(|(number, line)| csv_candidate(line, &columns, ImportLocation::Line(number)))
        .collect())
}

fn csv_candidate(line: &str, columns: &Columns, location: ImportLocation) -> Parsed {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let user_id = fields.get(columns.user_id).copied().filter(|id| !id.is_empty());
    let fail = |user_id: Option<&str>, reason: String| Err((location, user_id.map(str::to_owned), reason));
    if fields.len() != columns.count {
        return fail(
            user_id,
            format!("{} fields where the header has {}", fields.len(), columns.count),
        );
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let Some(user_id) = user_id else {
        return fail(None, "no user_id".into());
    };
    let superuser = columns.is_superuser.map(field).unwrap_or_default();
    let Some(is_superuser) = parse_superuser(superuser) else {
        return fail(
            Some(user_id),
            format!("is_superuser must be true or false, not {superuser:?}"),
        );
    };
    Ok(Candidate {
        location,
        user_id: user_id.to_owned(),
        secret: field(columns.secret).to_owned(),
        salt: columns.salt.map(field).unwrap_or_default().to_owned(),
        is_superuser,
    })
}

fn parse_json(text: &str, kind: ImportKind) -> Result<Vec<Parsed>, ImportError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ImportError::Json(e.to_string()))?;
    let Value::Array(entries) = value else {
        return Err(ImportError::NotAnArray);
    };
    check_count(entries.len())?;
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| json_candidate(entry, kind, ImportLocation::Entry(i + 1)))
        .collect())
}

fn json_candidate(entry: Value, kind: ImportKind, location: ImportLocation) -> Parsed {
    let Value::Object(mut fields) = entry else {
        return Err((location, None, "not an object".into()));
    };
    let user_id = match fields.remove("user_id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(Value::String(_)) | None | Some(Value::Null) => return Err((location, None, "no user_id".into())),
        Some(_) => return Err((location, None, "user_id must be a string".into())),
    };
    let fail = |reason: String| Err((location, Some(user_id.clone()), reason));
    let secret_field = kind.secret_field();
    let secret = match fields.remove(secret_field) {
        Some(Value::String(secret)) => secret,
        None | Some(Value::Null) => return fail(format!("no {secret_field}, required for a {} import", kind.as_str())),
        Some(_) => return fail(format!("{secret_field} must be a string")),
    };
    let salt = match (kind, fields.remove("salt")) {
        (ImportKind::Hash, Some(Value::String(salt))) => salt,
        (ImportKind::Hash, Some(Value::Null) | None) | (ImportKind::Plain, _) => String::new(),
        (ImportKind::Hash, Some(_)) => return fail("salt must be a string".into()),
    };
    let is_superuser = match fields.remove("is_superuser") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => flag,
        Some(Value::String(text)) => match parse_superuser(&text) {
            Some(flag) => flag,
            None => return fail(format!("is_superuser must be true or false, not {text:?}")),
        },
        Some(other) => return fail(format!("is_superuser must be true or false, not {other}")),
    };
    Ok(Candidate {
        location,
        user_id,
        secret,
        salt,
        is_superuser,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_columns_in_any_order() {
        let columns = parse_header("is_superuser, salt ,password_hash,user_id,namespace", ImportKind::Hash)
            .map_err(|e| e.to_string());
        let columns = columns
            .as_ref()
            .map(|c| (c.count, c.user_id, c.secret, c.salt, c.is_superuser));
        assert_eq!(columns, Ok((5, 3, 2, Some(1), Some(0))));
        assert!(matches!(
            parse_header("user_id,password_hash", ImportKind::Plain),
            Err(ImportError::MissingColumn { column: "password", .. })
        ));
        assert!(matches!(
            parse_header("user_id,password,user_id", ImportKind::Plain),
            Err(ImportError::DuplicateColumn(_))
        ));
    }

    #[test]
    fn superuser_spellings() {
        assert_eq!(parse_superuser("true"), Some(true));
        assert_eq!(parse_superuser("TRUE"), Some(true));
        assert_eq!(parse_superuser("false"), Some(false));
        assert_eq!(parse_superuser(""), Some(false));
        assert_eq!(parse_superuser("1"), None);
    }
}
