//! `trace.*`: the log trace of `/api/v5/trace` and `portico ctl trace` (EMQX 5 `trace`). The
//! traces themselves are created through the API; only the file limit is configured.
//!
//! ```toml
//! [trace]
//! max_file_size = "50MB"
//! ```

use super::schema::{Ctx, Section};
use super::value;

/// Smallest `trace.max_file_size`: room for some lines.
const MIN_FILE_SIZE: u64 = 1024;
/// Largest `trace.max_file_size`: 30 traces of it must fit on the node's disk.
const MAX_FILE_SIZE: u64 = 1024 * 1024 * 1024;

/// `trace.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceConfig {
    /// `trace.max_file_size`: a trace's file stops growing at this many bytes (later lines are
    /// counted as dropped). Default 50MB.
    pub max_file_size: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            max_file_size: portico_trace::DEFAULT_MAX_FILE_SIZE,
        }
    }
}

pub(super) fn trace(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> TraceConfig {
    let d = TraceConfig::default();
    let max_file_size = s.field(ctx, "max_file_size", d.max_file_size, |v| {
        let size = value::bytesize(v)?;
        if (MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&size) {
            Ok(size)
        } else {
            Err(format!("must be between 1KB and 1GB, got {size} bytes"))
        }
    });
    s.finish(ctx);
    TraceConfig { max_file_size }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Config;

    fn load(size: &str) -> Result<Config, String> {
        let env = vec![("PORTICO_TRACE__MAX_FILE_SIZE".to_owned(), size.to_owned())];
        Config::load(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn max_file_size_has_a_default_and_bounds() {
        let defaults = Config::load(None, Vec::new()).unwrap();
        assert_eq!(defaults.trace.max_file_size, 50 * 1024 * 1024);
        assert_eq!(load("2MB").unwrap().trace.max_file_size, 2 * 1024 * 1024);
        let error = load("10").unwrap_err();
        assert!(error.contains("trace.max_file_size"), "{error}");
        let error = load("2GB").unwrap_err();
        assert!(error.contains("between 1KB and 1GB"), "{error}");
        let error = load("big").unwrap_err();
        assert!(error.contains("trace.max_file_size"), "{error}");
    }
}
