//! `PORTICO_*` environment overrides.
//!
//! `PORTICO_A__B__C=value` sets key `a.b.c`: the prefix is stripped, the rest split on `__` and each
//! part lower-cased (single underscores stay, so `MAX_INFLIGHT` is `max_inflight`). A part made only
//! of digits addresses a 1-based element of an array (`__1` is the first element, `len + 1` appends).
//! The value is parsed as a TOML value when it is one (`64`, `true`, `"x"`, `[1, 2]`, `{ a = 1 }`),
//! otherwise it is taken as a plain string (`127.0.0.1:1883`, `15s`).

use std::cmp::Ordering;
use std::collections::HashMap;

use toml::{Table, Value};

use super::error::ConfigError;
use super::value::type_name;

pub(crate) const PREFIX: &str = "PORTICO_";

/// Variables that share the prefix but belong to the command line, not the config tree:
/// `PORTICO_CONFIG` names the config file itself and `PORTICO_LOG` is a tracing filter override.
/// Treating them as keys would make every run that uses them fail with "unknown key".
pub(crate) const IGNORED: [&str; 2] = [super::CONFIG_PATH_ENV, super::LOG_FILTER_ENV];

/// Which variable set a key, kept so errors can name the variable instead of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvOrigin {
    pub(crate) var: String,
    /// The raw text for keys the variable set directly; `None` for tables it only created on the
    /// way. Lets a string-typed key accept `PORTICO_NODE__COOKIE=12345`, which TOML parses as an
    /// integer.
    pub(crate) raw: Option<String>,
}

/// Splits a variable name into lower-cased key parts. `None` for variables that are not ours.
pub(crate) fn key_parts(var: &str) -> Option<Result<Vec<String>, String>> {
    if IGNORED.contains(&var) {
        return None;
    }
    let rest = var.strip_prefix(PREFIX)?;
    let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Some(Err(
            "empty key part: the name must look like PORTICO_SECTION__KEY with parts joined by `__`".to_owned(),
        ));
    }
    Some(Ok(parts))
}

/// The value as TOML if it parses as exactly one TOML value, else the raw string.
pub(crate) fn parse_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut table) if table.len() == 1 => table.remove("v").unwrap_or_else(|| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    }
}

fn is_index(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
}

fn empty_container_for(next: &str) -> Value {
    if is_index(next) {
        Value::Array(Vec::new())
    } else {
        Value::Table(Table::new())
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Sets `parts` (as produced by [`key_parts`]) to `value` inside `root`, creating tables on the way.
///
/// Returns the display path of the key that was set (array elements as `[0]`, 0-based like the rest
/// of the error messages) and, through `created`, the display paths of containers it had to create.
/// A digit part inside a *table* is an ordinary key (a listener may well be called `1`); it only acts
/// as an index where an array already exists or where a new container has to be created.
pub(crate) fn set_path(
    root: &mut Value,
    parts: &[String],
    value: Value,
    created: &mut Vec<String>,
) -> Result<String, String> {
    let mut path = String::new();
    let mut node = root;
    // Held in an Option because the borrow checker cannot see that only the last iteration moves
    // it; the `unwrap_or` fallbacks below are therefore never used.
    let mut value = Some(value);
    for (i, part) in parts.iter().enumerate() {
        let next = parts.get(i + 1);
        let is_last = next.is_none();
        node = match node {
            Value::Table(table) => {
                push_key(&mut path, part);
                if is_last {
                    table.insert(part.clone(), value.take().unwrap_or(Value::Boolean(false)));
                    return Ok(path);
                }
                table.entry(part.clone()).or_insert_with(|| {
                    created.push(path.clone());
                    empty_container_for(next.map(String::as_str).unwrap_or_default())
                })
            }
            Value::Array(items) => {
                let shown = if path.is_empty() { "the root" } else { path.as_str() };
                if !is_index(part) {
                    return Err(format!(
                        "`{shown}` is an array; address its elements with a 1-based index such as __1, not `{part}`"
                    ));
                }
                let len = items.len();
                let n: usize = match part.parse() {
                    Ok(n) if n >= 1 && n <= len + 1 => n,
                    _ => {
                        return Err(format!(
                            "index {part} is out of range for `{shown}` (it has {len} element(s); indexes are 1-based and {} appends)",
                            len + 1
                        ));
                    }
                };
                path.push_str(&format!("[{}]", n - 1));
                if is_last {
                    let v = value.take().unwrap_or(Value::Boolean(false));
                    match items.get_mut(n - 1) {
                        Some(slot) => *slot = v,
                        None => items.push(v),
                    }
                    return Ok(path);
                }
                if n == len + 1 {
                    created.push(path.clone());
                    items.push(empty_container_for(next.map(String::as_str).unwrap_or_default()));
                }
                match items.get_mut(n - 1) {
                    Some(slot) => slot,
                    None => return Err(format!("index {part} is out of range")),
                }
            }
            scalar => {
                return Err(format!(
                    "cannot set a key inside `{path}`: it is {}, not a table",
                    type_name(scalar)
                ));
            }
        };
    }
    // Only reachable with no parts, which `key_parts` never produces.
    Err("empty key".to_owned())
}

/// Orders parts so that parents come before children and numeric indexes compare as numbers: `__2`
/// must be applied before `__10`, or appending element 10 to a one-element array fails.
fn compare_parts(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = if is_index(x) && is_index(y) {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Applies every `PORTICO_*` variable in `env` to `root`, recording where each key came from.
pub(crate) fn apply(
    root: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    origins: &mut HashMap<String, EnvOrigin>,
    errors: &mut Vec<ConfigError>,
) {
    let mut vars = Vec::new();
    for (var, raw) in env {
        match key_parts(&var) {
            None => {}
            Some(Ok(parts)) => vars.push((parts, var, raw)),
            Some(Err(reason)) => errors.push(ConfigError::EnvName { var, reason }),
        }
    }
    // Stable sort: if the same variable appears twice the later one wins, like in a shell.
    vars.sort_by(|a, b| compare_parts(&a.0, &b.0));
    for (parts, var, raw) in vars {
        let mut created = Vec::new();
        match set_path(root, &parts, parse_value(&raw), &mut created) {
            Ok(path) => {
                for container in created {
                    origins.entry(container).or_insert_with(|| EnvOrigin {
                        var: var.clone(),
                        raw: None,
                    });
                }
                // The key was replaced wholesale, so anything recorded below it is stale.
                let below = format!("{path}.");
                let below_index = format!("{path}[");
                origins.retain(|k, _| !k.starts_with(&below) && !k.starts_with(&below_index));
                origins.insert(path, EnvOrigin { var, raw: Some(raw) });
            }
            Err(reason) => errors.push(ConfigError::EnvName { var, reason }),
        }
    }
}
