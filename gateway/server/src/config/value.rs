//! Leaf parsers for the EMQX value formats (durations, byte sizes, bind addresses, bounded integers)
//! plus small helpers for error messages.
//!
//! Every parser takes a raw `toml::Value` and returns the reason as a `String` on failure; the caller
//! adds the source and key path, so reasons only say *why*.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::Value;

/// Longest rendering of a value in an error line; a whole table pasted into one line helps nobody.
const RENDER_MAX_CHARS: usize = 80;

/// Human name of a value's TOML type, for "expected X, found Y" messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn expected(what: &str, v: &Value) -> String {
    format!("expected {what}, found {}", type_name(v))
}

/// Renders a value on a single line (TOML-like), truncated to [`RENDER_MAX_CHARS`].
pub(crate) fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, &mut out);
    if out.chars().count() > RENDER_MAX_CHARS {
        let mut cut: String = out.chars().take(RENDER_MAX_CHARS - 1).collect();
        cut.push('…');
        return cut;
    }
    out
}

fn render_into(v: &Value, out: &mut String) {
    match v {
        // Debug quoting escapes control characters, so a value with a newline stays on one line.
        Value::String(s) => out.push_str(&format!("{s:?}")),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&f.to_string()),
        Value::Boolean(b) => out.push_str(&b.to_string()),
        Value::Datetime(d) => out.push_str(&d.to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, out);
                // Stop early on huge arrays; the result is truncated anyway.
                if out.len() > RENDER_MAX_CHARS * 4 {
                    break;
                }
            }
            out.push(']');
        }
        Value::Table(table) => {
            out.push_str("{ ");
            for (i, (k, item)) in table.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(" = ");
                render_into(item, out);
                if out.len() > RENDER_MAX_CHARS * 4 {
                    break;
                }
            }
            out.push_str(" }");
        }
    }
}

pub(crate) fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| expected("true or false", v))
}

pub(crate) fn string(v: &Value) -> Result<String, String> {
    v.as_str().map(str::to_owned).ok_or_else(|| expected("a string", v))
}

pub(crate) fn non_empty_string(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s)
}

/// An integer within `min..=max` (inclusive), converted to the target type.
pub(crate) fn int_in<T: TryFrom<i64>>(v: &Value, min: i64, max: i64) -> Result<T, String> {
    let i = v.as_integer().ok_or_else(|| expected("an integer", v))?;
    if i < min || i > max {
        return Err(format!("out of range: must be between {min} and {max}"));
    }
    // Only unreachable if the caller's range does not fit T; still an error rather than a panic.
    T::try_from(i).map_err(|_| format!("out of range: must be between {min} and {max}"))
}

/// A positive count or `"infinity"` (mapped to `usize::MAX`).
///
/// Zero is refused: older EMQX releases read 0 as "unlimited" for several of these keys, so
/// silently taking it literally would change the behaviour of a migrated config.
pub(crate) fn count_or_infinity(v: &Value) -> Result<usize, String> {
    match v {
        Value::String(s) if s == "infinity" => Ok(usize::MAX),
        Value::Integer(0) => Err("must be at least 1; use \"infinity\" for no limit".to_owned()),
        Value::Integer(i) if *i > 0 => usize::try_from(*i).map_err(|_| "too large".to_owned()),
        Value::Integer(_) => Err("must be at least 1; use \"infinity\" for no limit".to_owned()),
        _ => Err(format!(
            "expected a positive integer or \"infinity\", found {}",
            type_name(v)
        )),
    }
}

/// A float (integers accepted) that is finite and at least `min`.
pub(crate) fn float_at_least(v: &Value, min: f64) -> Result<f64, String> {
    let f = match v {
        Value::Float(f) => *f,
        // Precision loss is irrelevant for the small numbers that make sense here.
        Value::Integer(i) => *i as f64,
        _ => return Err(expected("a number", v)),
    };
    if !f.is_finite() || f < min {
        return Err(format!("must be a finite number of at least {min}"));
    }
    Ok(f)
}

const DURATION_HELP: &str =
    "expected a duration such as \"30s\", \"5m\" or \"1h30m\" (units ms, s, m, h, d, w; a bare integer means seconds)";

/// Parses an EMQX duration string: one or more `<digits><unit>` groups (`"1h30m"`), or only digits
/// (seconds). Fractions are refused so that every accepted value is exact.
pub(crate) fn parse_duration_str(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DURATION_HELP.to_owned());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t.parse().map_err(|_| "duration too large".to_owned())?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(DURATION_HELP.to_owned());
        }
        let n: u64 = rest[..digits_end]
            .parse()
            .map_err(|_| "duration too large".to_owned())?;
        rest = &rest[digits_end..];
        let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            "w" => n.checked_mul(604_800).map(Duration::from_secs),
            "" => return Err(format!("missing unit after {n}; {DURATION_HELP}")),
            other => return Err(format!("unknown unit \"{other}\"; {DURATION_HELP}")),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| "duration too large".to_owned())?;
    }
    Ok(total)
}

/// A duration: integer seconds or an EMQX duration string.
pub(crate) fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Integer(i) => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| "duration must not be negative".to_owned()),
        Value::String(s) => parse_duration_str(s),
        _ => Err(format!("{DURATION_HELP}; found {}", type_name(v))),
    }
}

/// A strictly positive duration: zero would mean "time out immediately" or a busy retry loop.
pub(crate) fn positive_duration(v: &Value) -> Result<Duration, String> {
    let d = duration(v)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// A byte size: integer bytes, or a string `<digits>[B|KB|MB|GB]` (case-insensitive, 1KB = 1024).
pub(crate) fn bytesize(v: &Value) -> Result<u64, String> {
    const HELP: &str =
        "expected a size such as \"1MB\", \"512KB\" or a number of bytes (units B, KB, MB, GB; 1KB = 1024)";
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| "size must not be negative".to_owned()),
        Value::String(s) => {
            let t = s.trim();
            let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            if digits_end == 0 {
                return Err(HELP.to_owned());
            }
            let n: u64 = t[..digits_end].parse().map_err(|_| "size too large".to_owned())?;
            let factor: u64 = match t[digits_end..].trim().to_ascii_uppercase().as_str() {
                "" | "B" => 1,
                "KB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                _ => return Err(HELP.to_owned()),
            };
            n.checked_mul(factor).ok_or_else(|| "size too large".to_owned())
        }
        _ => Err(format!("{HELP}; found {}", type_name(v))),
    }
}

/// A listen address: `"ip:port"`, `"[ipv6]:port"`, or a bare port (integer or string) meaning
/// `0.0.0.0:port`. Host names are refused: resolving DNS at startup makes the bound address depend on
/// the resolver, which is surprising for a server socket.
pub(crate) fn bind(v: &Value) -> Result<SocketAddr, String> {
    let any = |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    match v {
        Value::Integer(i) => u16::try_from(*i)
            .map(any)
            .map_err(|_| "port out of range: must be between 0 and 65535".to_owned()),
        Value::String(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return t
                    .parse::<u16>()
                    .map(any)
                    .map_err(|_| "port out of range: must be between 0 and 65535".to_owned());
            }
            t.parse::<SocketAddr>().map_err(|_| {
                "expected \"ip:port\", \"[ipv6]:port\" or a port number (host names are not resolved)".to_owned()
            })
        }
        _ => Err(format!("expected \"ip:port\" or a port number, found {}", type_name(v))),
    }
}

/// Levenshtein distance over chars; inputs are short key names so the O(n*m) table is fine.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            let delete = prev[j + 1] + 1;
            let insert = cur[j] + 1;
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known key within edit distance 2, if any. Compared lower-cased because keys are
/// case-sensitive and `Max_Inflight` is a plausible typo for `max_inflight`.
pub(crate) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = name.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
