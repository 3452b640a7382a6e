//! Configuration errors.
//!
//! Loading collects every problem it finds instead of stopping at the first one, so that an operator
//! fixing a config file sees the whole list in one run rather than one problem per restart.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from; printed first on every error line so the operator knows
/// whether to edit the file or the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The TOML file given to [`super::Config::load`].
    File(PathBuf),
    /// An environment variable (its full name, e.g. `PORTICO_MQTT__MAX_INFLIGHT`).
    Env(String),
    /// A built-in default (only reachable for cross-key checks such as duplicate bind addresses).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8, ...).
    #[error("{}: cannot read config file: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML. Line and column are 1-based.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A `PORTICO_*` variable whose name cannot be mapped onto the configuration tree.
    #[error("env {var}: {reason}")]
    EnvName { var: String, reason: String },
    /// A key whose value is wrong (type, range, format), or that is not a known key at all.
    #[error("{origin}: {key} = {value}: {reason}")]
    Invalid {
        /// Named `origin` rather than `source` because thiserror treats a `source` field as the
        /// underlying error.
        origin: Source,
        /// Dotted key path, e.g. `listeners.tcp.default.bind`; array elements print as `[0]`.
        key: String,
        /// The offending value rendered on one line (TOML-ish syntax, long values elided).
        value: String,
        reason: String,
    },
}

/// Every problem found while loading; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual problems, in the order they were found.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
