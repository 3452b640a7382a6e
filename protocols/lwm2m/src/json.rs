//! OMA LwM2M JSON (`application/vnd.oma.lwm2m+json`, Content-Format 11543; LwM2M 1.0 §6.4.4,
//! 1.1 §7.4.4): `{"bn": base name, "bt": base time, "e": [{"n", "v"|"sv"|"bv"|"ov", "t"}]}`.
//!
//! Names: an entry's path is the base name and its name joined by one `/` (a trailing `/` on
//! the base and a leading `/` on the name are not doubled; EMQX joins the same way), or the
//! base name alone when the entry has no name. Every entry resolves to an LwM2M path.
//!
//! Values: `v` a number, `sv` a string (Opaque resources carry base64 here), `bv` a Boolean,
//! `ov` an object link `"o:i"`; at most one per entry, none for an entry without a value.
//! With a type for the resource the value must fit it (an Integer `v` must be integral and
//! within 64 bits, an Opaque `sv` valid base64); without one it is taken as its JSON kind says
//! (an integral `v` is an Integer, a fractional one a Float). Unknown keys are ignored. Times
//! are `bt + t` when either is present.
//!
//! EMQX passes values through as given and reads `t` as the value when it is present; here `t`
//! is the time.

use serde_json::{Map, Number, Value as Json};

use crate::error::FormatError;
use crate::path::Path;
use crate::value::{Objlnk, Record, ResourceType, TypeLookup, Value, ValueError, base64_decode, base64_encode};

const FORMAT: &str = "LwM2M JSON";

/// 2^63.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// A number as JSON gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Num {
    pub(crate) fn from_json(n: &Number) -> Num {
        if let Some(v) = n.as_i64() {
            Num::Int(v)
        } else if let Some(v) = n.as_u64() {
            Num::UInt(v)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::UInt(v) => v as f64,
            Num::Float(v) => v,
        }
    }

    /// The value as an i64, if it is integral and fits.
    fn as_i64(self) -> Option<i64> {
        match self {
            Num::Int(v) => Some(v),
            Num::UInt(v) => i64::try_from(v).ok(),
            // -2^63 and 2^63 are exact floats; the range is [-2^63, 2^63).
            Num::Float(v) if v.fract() == 0.0 && (-TWO_63..TWO_63).contains(&v) => Some(v as i64),
            Num::Float(_) => None,
        }
    }

    fn as_u64(self) -> Option<u64> {
        match self {
            Num::Int(v) => u64::try_from(v).ok(),
            Num::UInt(v) => Some(v),
            Num::Float(v) if v.fract() == 0.0 && (0.0..2.0 * TWO_63).contains(&v) => Some(v as u64),
            Num::Float(_) => None,
        }
    }
}

/// A value as a JSON-based format carries it, before typing.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Number(Num),
    String(String),
    Bool(bool),
    Objlnk(String),
    Data(Vec<u8>),
}

impl Raw {
    fn kind(&self) -> &'static str {
        match self {
            Raw::Number(_) => "a number",
            Raw::String(_) => "a string",
            Raw::Bool(_) => "a boolean",
            Raw::Objlnk(_) => "an object link",
            Raw::Data(_) => "data",
        }
    }
}

/// Types a raw value: through the resource's type if known, by its kind otherwise.
pub(crate) fn typed(raw: Raw, path: &Path, types: &dyn TypeLookup) -> Result<Value, FormatError> {
    let known = path
        .resource_id()
        .and_then(|r| types.resource_type(path.object_id(), r));
    let Some(ty) = known else {
        return Ok(match raw {
            Raw::Number(Num::Int(v)) => Value::Integer(v),
            Raw::Number(Num::UInt(v)) => Value::UnsignedInteger(v),
            Raw::Number(Num::Float(v)) => Value::Float(v),
            Raw::String(s) => Value::String(s),
            Raw::Bool(b) => Value::Boolean(b),
            Raw::Objlnk(s) => {
                Value::Objlnk(Objlnk::parse(&s).map_err(|source| FormatError::Value { path: *path, source })?)
            }
            Raw::Data(d) => Value::Opaque(d),
        });
    };
    let error = |source| FormatError::Value { path: *path, source };
    let mismatch = |wanted, raw: &Raw| {
        error(ValueError::Mismatch {
            ty,
            wanted,
            found: raw.kind(),
        })
    };
    Ok(match (ty, raw) {
        (ResourceType::None, _) => return Err(FormatError::Executable(*path)),
        (ResourceType::Integer, Raw::Number(n)) => Value::Integer(
            n.as_i64()
                .ok_or_else(|| mismatch("an integer within 64 bits", &Raw::Number(n)))?,
        ),
        (ResourceType::Time, Raw::Number(n)) => Value::Time(
            n.as_i64()
                .ok_or_else(|| mismatch("an integer within 64 bits", &Raw::Number(n)))?,
        ),
        (ResourceType::UnsignedInteger, Raw::Number(n)) => Value::UnsignedInteger(
            n.as_u64()
                .ok_or_else(|| mismatch("a non-negative integer within 64 bits", &Raw::Number(n)))?,
        ),
        (ResourceType::Float, Raw::Number(n)) => Value::Float(n.as_f64()),
        (ResourceType::String, Raw::String(s)) => Value::String(s),
        (ResourceType::Corelnk, Raw::String(s)) => Value::Corelnk(s),
        (ResourceType::Opaque, Raw::String(s)) => Value::Opaque(base64_decode(&s).map_err(error)?),
        (ResourceType::Opaque, Raw::Data(d)) => Value::Opaque(d),
        (ResourceType::Boolean, Raw::Bool(b)) => Value::Boolean(b),
        (ResourceType::Objlnk, Raw::Objlnk(s)) => Value::Objlnk(Objlnk::parse(&s).map_err(error)?),
        (ResourceType::Integer | ResourceType::Time | ResourceType::UnsignedInteger | ResourceType::Float, raw) => {
            return Err(mismatch("a number", &raw));
        }
        (ResourceType::String | ResourceType::Corelnk, raw) => return Err(mismatch("a string", &raw)),
        (ResourceType::Opaque, raw) => return Err(mismatch("base64 data", &raw)),
        (ResourceType::Boolean, raw) => return Err(mismatch("a boolean", &raw)),
        (ResourceType::Objlnk, raw) => return Err(mismatch("an object link", &raw)),
    })
}

pub(crate) fn json_error(format: &'static str, e: &serde_json::Error) -> FormatError {
    FormatError::Json {
        format,
        reason: e.to_string(),
    }
}

/// Joins a base name and a name as EMQX does (module docs).
fn join(base: &str, name: &str) -> String {
    if name.is_empty() {
        return base
            .strip_suffix('/')
            .filter(|b| !b.is_empty())
            .unwrap_or(base)
            .to_owned();
    }
    if base.is_empty() {
        return name.to_owned();
    }
    format!(
        "{}/{}",
        base.strip_suffix('/').unwrap_or(base),
        name.strip_prefix('/').unwrap_or(name)
    )
}

fn entry_error(index: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Entry {
        format: FORMAT,
        index,
        reason: reason.into(),
    }
}

/// Decodes an LwM2M JSON payload (module docs).
pub fn decode(payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, FormatError> {
    let root: Json = serde_json::from_slice(payload).map_err(|e| json_error(FORMAT, &e))?;
    let Json::Object(root) = root else {
        return Err(FormatError::Json {
            format: FORMAT,
            reason: "the payload is not a JSON object".to_owned(),
        });
    };
    let base = match root.get("bn") {
        None => "",
        Some(Json::String(s)) => s.as_str(),
        Some(_) => {
            return Err(FormatError::Json {
                format: FORMAT,
                reason: "\"bn\" is not a string".to_owned(),
            });
        }
    };
    let base_time = match root.get("bt") {
        None => None,
        Some(Json::Number(n)) => Some(Num::from_json(n).as_f64()),
        Some(_) => {
            return Err(FormatError::Json {
                format: FORMAT,
                reason: "\"bt\" is not a number".to_owned(),
            });
        }
    };
    let Some(Json::Array(entries)) = root.get("e") else {
        return Err(FormatError::Json {
            format: FORMAT,
            reason: "no \"e\" array".to_owned(),
        });
    };
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Json::Object(entry) = entry else {
            return Err(entry_error(index, "not a JSON object"));
        };
        let name = match entry.get("n") {
            None => "",
            Some(Json::String(s)) => s.as_str(),
            Some(_) => return Err(entry_error(index, "\"n\" is not a string")),
        };
        let full = join(base, name);
        let path = Path::parse(&full).map_err(|source| FormatError::Name {
            format: FORMAT,
            index,
            name: full.chars().take(64).collect(),
            source,
        })?;
        let mut raw = None;
        for key in ["v", "sv", "bv", "ov"] {
            let Some(field) = entry.get(key) else { continue };
            if raw.is_some() {
                return Err(entry_error(index, "more than one of v, sv, bv, ov"));
            }
            raw = Some(match (key, field) {
                ("v", Json::Number(n)) => Raw::Number(Num::from_json(n)),
                ("sv", Json::String(s)) => Raw::String(s.clone()),
                ("bv", Json::Bool(b)) => Raw::Bool(*b),
                ("ov", Json::String(s)) => Raw::Objlnk(s.clone()),
                _ => return Err(entry_error(index, format!("\"{key}\" has the wrong JSON type"))),
            });
        }
        let time = match entry.get("t") {
            None => base_time,
            Some(Json::Number(n)) => Some(base_time.unwrap_or(0.0) + Num::from_json(n).as_f64()),
            Some(_) => return Err(entry_error(index, "\"t\" is not a number")),
        };
        if time.is_some_and(|t| !t.is_finite()) {
            return Err(entry_error(index, "the time is not a finite number"));
        }
        let value = match raw {
            None => None,
            Some(raw) => {
                if path.depth() < 3 {
                    return Err(FormatError::NotAResource(path));
                }
                Some(typed(raw, &path, types)?)
            }
        };
        out.push(Record { path, value, time });
    }
    Ok(out)
}

/// A value's field name and JSON value in LwM2M JSON.
fn value_field(record: &Record, value: &Value) -> Result<(&'static str, Json), FormatError> {
    Ok(match value {
        Value::Integer(v) | Value::Time(v) => ("v", Json::from(*v)),
        Value::UnsignedInteger(v) => ("v", Json::from(*v)),
        Value::Float(v) => match Number::from_f64(*v) {
            Some(n) => ("v", Json::Number(n)),
            None => {
                return Err(FormatError::Value {
                    path: record.path,
                    source: ValueError::NotFinite(*v),
                });
            }
        },
        Value::String(s) | Value::Corelnk(s) => ("sv", Json::String(s.clone())),
        Value::Opaque(bytes) => ("sv", Json::String(base64_encode(bytes))),
        Value::Boolean(b) => ("bv", Json::Bool(*b)),
        Value::Objlnk(link) => ("ov", Json::String(link.to_string())),
    })
}

/// The name of `path` relative to `base` (`"6/0"`), or `None` when the path is the base.
pub(crate) fn relative(base: &Path, path: &Path) -> Result<Option<String>, FormatError> {
    if !path.starts_with(base) {
        return Err(FormatError::OutsideTarget {
            target: *base,
            found: *path,
        });
    }
    let rest = &path.ids()[base.depth()..];
    Ok((!rest.is_empty()).then(|| rest.iter().map(u16::to_string).collect::<Vec<_>>().join("/")))
}

/// Encodes records as LwM2M JSON. With a base, `bn` is the base followed by `/` and each name
/// is relative to it (every record must lie under the base); without one, each name is the
/// full path.
pub fn encode(base: Option<&Path>, records: &[Record]) -> Result<Vec<u8>, FormatError> {
    let mut root = Map::new();
    if let Some(base) = base {
        root.insert("bn".to_owned(), Json::String(format!("{base}/")));
    }
    let mut entries = Vec::with_capacity(records.len());
    for record in records {
        let mut entry = Map::new();
        let name = match base {
            Some(base) => relative(base, &record.path)?,
            None => Some(record.path.to_string()),
        };
        if let Some(name) = name {
            entry.insert("n".to_owned(), Json::String(name));
        }
        if let Some(value) = &record.value {
            let (key, json) = value_field(record, value)?;
            entry.insert(key.to_owned(), json);
        }
        if let Some(time) = record.time {
            let n = Number::from_f64(time).ok_or(FormatError::Value {
                path: record.path,
                source: ValueError::NotFinite(time),
            })?;
            entry.insert("t".to_owned(), Json::Number(n));
        }
        entries.push(Json::Object(entry));
    }
    root.insert("e".to_owned(), Json::Array(entries));
    serde_json::to_vec(&Json::Object(root)).map_err(|e| json_error(FORMAT, &e))
}
