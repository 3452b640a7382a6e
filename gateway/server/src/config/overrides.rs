//! The API-override layer: configuration changed through the HTTP API (`PUT /gateways/{name}`
//! and friends), kept in `{node.data_dir}/configs/api.toml` and merged when the configuration
//! loads.
//!
//! Precedence, lowest first: built-in defaults < the TOML file < API overrides < `PORTICO_*`
//! environment. EMQX lets `emqx.conf` win over `cluster.hocon` (its API file); here the API
//! layer sits above the file because the shipped `etc/portico.toml` sets every key, so a
//! winning file would turn every API change into a no-op. The environment stays on top (it is
//! how containers are configured), and the API refuses to change a key a variable sets rather
//! than accept a change that would never take effect.
//!
//! The file is written whole, atomically (a temporary file in the same directory, then a
//! rename), readable by the owner only: it may hold gateway secrets.

use std::io::Write;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::env;
use super::error::ConfigError;

/// The override file's path under the data directory.
pub fn api_overrides_path(data_dir: &Path) -> PathBuf {
    data_dir.join("configs").join("api.toml")
}

/// The data directory as the file and environment set it (the API layer cannot move it: the
/// override file lives there), before validation; `data` when neither does.
pub(crate) fn data_dir_before_overrides(file: &Table, env: &[(String, String)]) -> PathBuf {
    let from_env = env
        .iter()
        .rev()
        .find(|(var, _)| var == "PORTICO_NODE__DATA_DIR")
        .map(|(_, raw)| raw.clone());
    let from_file = file
        .get("node")
        .and_then(Value::as_table)
        .and_then(|node| node.get("data_dir"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    PathBuf::from(from_env.or(from_file).unwrap_or_else(|| "data".to_owned()))
}

/// Reads the override file; a missing file is an empty layer. A file that exists but cannot be
/// read or parsed is an error naming it (startup and reload refuse it rather than silently
/// dropping the operator's API changes).
pub(crate) fn read(path: &Path) -> Result<Table, ConfigError> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Table::new()),
        _ => super::read_file(path),
    }
}

/// Writes `table` to `path` atomically with mode 0600, creating the directory if needed.
pub(crate) fn write(path: &Path, table: &Table) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let text = format!(
        "# Configuration changed through the HTTP API. Written by Portico: edit with care.\n\
         # Merged over the configuration file; PORTICO_* environment variables still win.\n\n{}",
        toml::to_string(table).map_err(std::io::Error::other)?
    );
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("api.toml");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Merges `over` into `base`: tables merge key by key, anything else replaces.
pub(crate) fn merge(base: &mut Table, over: &Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(base_table)), Value::Table(over_table)) => merge(base_table, over_table),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The value at an environment variable's key parts (numeric parts are 1-based indexes).
fn lookup<'t>(table: &'t Table, parts: &[String]) -> Option<&'t Value> {
    let (first, rest) = parts.split_first()?;
    let mut current = table.get(first)?;
    for part in rest {
        current = match current {
            Value::Table(t) => t.get(part)?,
            Value::Array(items) => {
                let index: usize = part.parse().ok()?;
                items.get(index.checked_sub(1)?)?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// The `PORTICO_*` variables (with the key they set) whose key the change from `before` to
/// `after` would set to something else than the variable does. Such a change could never take
/// effect, so the API refuses it and names the variable.
pub(crate) fn env_conflicts(before: &Table, after: &Table, vars: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (var, raw) in vars {
        let Some(Ok(parts)) = env::key_parts(var) else {
            continue;
        };
        let Some(new) = lookup(after, &parts) else {
            continue;
        };
        if lookup(before, &parts) == Some(new) || *new == env::parse_value(raw) {
            continue;
        }
        out.push((var.clone(), parts.join(".")));
    }
    out
}
