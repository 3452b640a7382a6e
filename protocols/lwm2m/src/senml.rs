//! SenML (RFC 8428) as LwM2M 1.1 uses it (Core §7.4.5, §7.4.6): SenML JSON
//! (`application/senml+json`, Content-Format 110) and SenML CBOR (`application/senml+cbor`,
//! 112).
//!
//! A payload is an array of records. Base fields (`bn`, `bt`, `bv`, `bver`) apply to their
//! record and every later one until replaced (RFC 8428 §4.1); a record's path is the base name
//! and its name concatenated (§4.5.1), which must give an LwM2M path; its time is `bt + t` when
//! either is present; a numeric value is `bv + v`. Values: `v` number, `vs` string (String,
//! Corelnk), `vb` Boolean, `vd` data (Opaque; base64url in JSON, a byte string in CBOR), and
//! LwM2M's `vlo` object link `"o:i"`. At most one per record; none is allowed (a Read-Composite
//! request, for one). Typing as in [`crate::json`]: through the resource's type when known.
//!
//! Strictness (§4.4, §6): a label ending in `_` is one this decoder must understand, and it
//! understands none, so it is an error; other unknown labels are skipped; `bver` above 10 is
//! refused; sums (`s`, `bs`), units and update times are checked for type and not used.
//! CBOR: integer labels as the RFC assigns them (`vlo` as the text key LwM2M gives it),
//! definite or indefinite arrays and maps, definite strings only, no tags, nesting within
//! skipped values at most [`MAX_SKIP_DEPTH`]. Nothing is allocated from a length the input
//! states; every step consumes input.
//!
//! Encoding writes full names (or, with a base, `bn` on the first record and relative names),
//! integers as integers, floats in the narrowest exact width (CBOR) or shortest exact decimal
//! (JSON).

use std::borrow::Cow;

use minicbor::Decoder;
use minicbor::data::Type;
use serde_json::{Map, Number, Value as Json};

use crate::error::FormatError;
use crate::json::{Num, Raw, json_error, relative, typed};
use crate::path::Path;
use crate::value::{Record, TypeLookup, Value, ValueError, base64url_decode, base64url_encode};

/// The SenML version this decoder reads (RFC 8428 §4.4).
pub const SENML_VERSION: i64 = 10;

/// How deep a skipped (unknown) CBOR value may nest.
pub const MAX_SKIP_DEPTH: usize = 16;

const JSON_FORMAT: &str = "SenML JSON";
const CBOR_FORMAT: &str = "SenML CBOR";

/// One record's fields, before base resolution.
#[derive(Default)]
struct Fields<'a> {
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    bv: Option<Num>,
    bver: Option<i64>,
    n: Option<Cow<'a, str>>,
    t: Option<f64>,
    value: Option<Raw>,
}

/// The base fields in force.
#[derive(Default)]
struct Base {
    name: String,
    time: Option<f64>,
    value: Option<Num>,
}

fn add(value: Num, base: Option<Num>) -> Num {
    match (value, base) {
        (v, None) => v,
        (Num::Int(a), Some(Num::Int(b))) => a.checked_add(b).map_or(Num::Float(a as f64 + b as f64), Num::Int),
        (v, Some(b)) => Num::Float(v.as_f64() + b.as_f64()),
    }
}

fn resolve(
    format: &'static str,
    index: usize,
    fields: Fields<'_>,
    base: &mut Base,
    types: &dyn TypeLookup,
) -> Result<Record, FormatError> {
    let entry_error = |reason: &str| FormatError::Entry {
        format,
        index,
        reason: reason.to_owned(),
    };
    if let Some(version) = fields.bver
        && !(1..=SENML_VERSION).contains(&version)
    {
        return Err(entry_error("bver is not a SenML version this decoder reads (1..=10)"));
    }
    if let Some(bn) = fields.bn {
        base.name = bn.into_owned();
    }
    if fields.bt.is_some() {
        base.time = fields.bt;
    }
    if fields.bv.is_some() {
        base.value = fields.bv;
    }
    let name = format!("{}{}", base.name, fields.n.as_deref().unwrap_or(""));
    let path = Path::parse(&name).map_err(|source| FormatError::Name {
        format,
        index,
        name: name.chars().take(64).collect(),
        source,
    })?;
    let time = match (base.time, fields.t) {
        (None, None) => None,
        (b, t) => Some(b.unwrap_or(0.0) + t.unwrap_or(0.0)),
    };
    if time.is_some_and(|t| !t.is_finite()) {
        return Err(entry_error("the time is not a finite number"));
    }
    let value = match fields.value {
        None => None,
        Some(raw) => {
            if path.depth() < 3 {
                return Err(FormatError::NotAResource(path));
            }
            let raw = match raw {
                Raw::Number(n) => {
                    let n = add(n, base.value);
                    if !n.as_f64().is_finite() {
                        return Err(entry_error("the value is not a finite number"));
                    }
                    Raw::Number(n)
                }
                other => other,
            };
            Some(typed(raw, &path, types)?)
        }
    };
    Ok(Record { path, value, time })
}

fn set<T>(slot: &mut Option<T>, value: T, label: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{label} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn set_value(fields: &mut Fields<'_>, value: Raw) -> Result<(), String> {
    if fields.value.is_some() {
        return Err("more than one of v, vs, vb, vd, vlo".to_owned());
    }
    fields.value = Some(value);
    Ok(())
}

/// Decodes a SenML JSON payload (module docs).
pub fn decode_json(payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, FormatError> {
    let root: Json = serde_json::from_slice(payload).map_err(|e| json_error(JSON_FORMAT, &e))?;
    let Json::Array(records) = root else {
        return Err(FormatError::Json {
            format: JSON_FORMAT,
            reason: "the payload is not a JSON array".to_owned(),
        });
    };
    let mut base = Base::default();
    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let entry_error = |reason: String| FormatError::Entry {
            format: JSON_FORMAT,
            index,
            reason,
        };
        let Json::Object(map) = record else {
            return Err(entry_error("not a JSON object".to_owned()));
        };
        let fields = json_fields(map).map_err(entry_error)?;
        out.push(resolve(JSON_FORMAT, index, fields, &mut base, types)?);
    }
    Ok(out)
}

fn json_fields(map: &Map<String, Json>) -> Result<Fields<'_>, String> {
    let mut fields = Fields::default();
    let number = |label: &str, json: &Json| match json {
        Json::Number(n) => Ok(Num::from_json(n)),
        _ => Err(format!("{label} is not a number")),
    };
    let string = |label: &str, json: &'_ Json| -> Result<String, String> {
        match json {
            Json::String(s) => Ok(s.clone()),
            _ => Err(format!("{label} is not a string")),
        }
    };
    for (label, json) in map {
        match label.as_str() {
            "bn" => fields.bn = Some(Cow::Owned(string(label, json)?)),
            "bt" => fields.bt = Some(number(label, json)?.as_f64()),
            "bv" => fields.bv = Some(number(label, json)?),
            "bver" => match json {
                Json::Number(n) if n.as_i64().is_some() => fields.bver = n.as_i64(),
                _ => return Err("bver is not an integer".to_owned()),
            },
            "n" => fields.n = Some(Cow::Owned(string(label, json)?)),
            "t" => fields.t = Some(number(label, json)?.as_f64()),
            "v" => set_value(&mut fields, Raw::Number(number(label, json)?))?,
            "vs" => set_value(&mut fields, Raw::String(string(label, json)?))?,
            "vb" => match json {
                Json::Bool(b) => set_value(&mut fields, Raw::Bool(*b))?,
                _ => return Err("vb is not a boolean".to_owned()),
            },
            "vd" => {
                let data = base64url_decode(&string(label, json)?).map_err(|e| format!("vd: {e}"))?;
                set_value(&mut fields, Raw::Data(data))?;
            }
            "vlo" => set_value(&mut fields, Raw::Objlnk(string(label, json)?))?,
            "bu" | "u" => {
                string(label, json)?;
            }
            "bs" | "s" | "ut" => {
                number(label, json)?;
            }
            other if other.ends_with('_') => return Err(format!("label {other:?} must be understood and is not")),
            _ => {}
        }
    }
    Ok(fields)
}

/// Encodes records as SenML JSON (module docs).
pub fn encode_json(base: Option<&Path>, records: &[Record]) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let mut map = Map::new();
        let name = name_for(base, index, record)?;
        if let (Some(base), 0) = (base, index) {
            map.insert("bn".to_owned(), Json::String(base.to_string()));
        }
        if let Some(name) = name {
            map.insert("n".to_owned(), Json::String(name));
        }
        if let Some(value) = &record.value {
            let (label, json) = match value {
                Value::Integer(v) | Value::Time(v) => ("v", Json::from(*v)),
                Value::UnsignedInteger(v) => ("v", Json::from(*v)),
                Value::Float(v) => ("v", Json::Number(finite(record, *v)?)),
                Value::String(s) | Value::Corelnk(s) => ("vs", Json::String(s.clone())),
                Value::Boolean(b) => ("vb", Json::Bool(*b)),
                Value::Opaque(bytes) => ("vd", Json::String(base64url_encode(bytes))),
                Value::Objlnk(link) => ("vlo", Json::String(link.to_string())),
            };
            map.insert(label.to_owned(), json);
        }
        if let Some(time) = record.time {
            map.insert("t".to_owned(), Json::Number(finite(record, time)?));
        }
        out.push(Json::Object(map));
    }
    serde_json::to_vec(&Json::Array(out)).map_err(|e| json_error(JSON_FORMAT, &e))
}

fn finite(record: &Record, v: f64) -> Result<Number, FormatError> {
    Number::from_f64(v).ok_or(FormatError::Value {
        path: record.path,
        source: ValueError::NotFinite(v),
    })
}

/// The `n` of a record: relative to the base (which the first record carries as `bn`), or
/// the full path; `None` when the record is the base itself.
fn name_for(base: Option<&Path>, _index: usize, record: &Record) -> Result<Option<String>, FormatError> {
    match base {
        Some(base) => Ok(relative(base, &record.path)?.map(|rest| format!("/{rest}"))),
        None => Ok(Some(record.path.to_string())),
    }
}

// RFC 8428 §6, Table 6.
const BVER: i64 = -1;
const BN: i64 = -2;
const BT: i64 = -3;
const BU: i64 = -4;
const BV: i64 = -5;
const BS: i64 = -6;
const N: i64 = 0;
const U: i64 = 1;
const V: i64 = 2;
const VS: i64 = 3;
const VB: i64 = 4;
const S: i64 = 5;
const T: i64 = 6;
const UT: i64 = 7;
const VD: i64 = 8;

fn cbor_error(e: minicbor::decode::Error, at: usize) -> FormatError {
    FormatError::Cbor {
        offset: e.position().unwrap_or(at),
        reason: e.to_string(),
    }
}

/// Calls a decoder method, turning its error into a [`FormatError`] at the current position.
macro_rules! cbor {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {{
        let at = $self.d.position();
        $self.d.$method($($arg),*).map_err(|e| cbor_error(e, at))
    }};
}

/// An IEEE 754 half-precision float, widened.
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1F);
    let mantissa = f64::from(bits & 0x3FF);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        0x1F if mantissa == 0.0 => f64::INFINITY,
        0x1F => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

struct Cbor<'b> {
    d: Decoder<'b>,
}

impl<'b> Cbor<'b> {
    fn error(&self, reason: impl Into<String>) -> FormatError {
        FormatError::Cbor {
            offset: self.d.position(),
            reason: reason.into(),
        }
    }

    fn datatype(&self) -> Result<Type, FormatError> {
        let at = self.d.position();
        self.d.datatype().map_err(|e| cbor_error(e, at))
    }

    /// A half-precision float (minicbor reads those only with its `half` feature).
    fn f16(&mut self) -> Result<f64, FormatError> {
        let at = self.d.position();
        let input = self.d.input();
        if input.len() < at + 3 {
            return Err(self.error("a half-precision float is cut short"));
        }
        let bits = u16::from_be_bytes([input[at + 1], input[at + 2]]);
        self.d.set_position(at + 3);
        Ok(half_to_f64(bits))
    }

    fn number(&mut self, label: &str) -> Result<Num, FormatError> {
        Ok(match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                let v = cbor!(self, u64())?;
                i64::try_from(v).map_or(Num::UInt(v), Num::Int)
            }
            Type::I8 | Type::I16 | Type::I32 | Type::I64 => Num::Int(cbor!(self, i64())?),
            Type::F16 => Num::Float(self.f16()?),
            Type::F32 => Num::Float(f64::from(cbor!(self, f32())?)),
            Type::F64 => Num::Float(cbor!(self, f64())?),
            Type::Int => return Err(self.error(format!("{label} is an integer outside 64 bits"))),
            other => return Err(self.error(format!("{label} is not a number (found {other})"))),
        })
    }

    fn string(&mut self, label: &str) -> Result<&'b str, FormatError> {
        match self.datatype()? {
            Type::String => cbor!(self, str()),
            other => Err(self.error(format!("{label} is not a definite-length text string (found {other})"))),
        }
    }

    /// A container's length: `Some(n)` or `None` for indefinite; the break is consumed by
    /// [`Cbor::at_end`].
    fn at_end(&mut self, remaining: &mut Option<u64>) -> Result<bool, FormatError> {
        match remaining {
            Some(0) => Ok(true),
            Some(n) => {
                *n -= 1;
                Ok(false)
            }
            None => {
                if self.datatype()? == Type::Break {
                    self.d.set_position(self.d.position() + 1);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// Skips one value of an unknown label, refusing tags and deep nesting.
    fn skip(&mut self, depth: usize) -> Result<(), FormatError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(self.error(format!("a value nests deeper than {MAX_SKIP_DEPTH}")));
        }
        match self.datatype()? {
            Type::Array | Type::ArrayIndef => {
                let mut len = cbor!(self, array())?;
                while !self.at_end(&mut len)? {
                    self.skip(depth + 1)?;
                }
            }
            Type::Map | Type::MapIndef => {
                let mut len = cbor!(self, map())?;
                while !self.at_end(&mut len)? {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            Type::Tag => return Err(self.error("tags are not part of SenML")),
            Type::Break => return Err(self.error("a break outside an indefinite-length item")),
            Type::BytesIndef | Type::StringIndef => {
                return Err(self.error("indefinite-length strings are not supported"));
            }
            _ => cbor!(self, skip())?,
        }
        Ok(())
    }

    fn fields(&mut self) -> Result<Fields<'b>, FormatError> {
        match self.datatype()? {
            Type::Map | Type::MapIndef => {}
            other => return Err(self.error(format!("a record is a map (found {other})"))),
        }
        let mut len = cbor!(self, map())?;
        let mut fields = Fields::default();
        let mut seen_labels: Vec<i64> = Vec::new();
        while !self.at_end(&mut len)? {
            let at = self.d.position();
            let label = match self.datatype()? {
                Type::String => {
                    let text = cbor!(self, str())?;
                    if text == "vlo" {
                        let link = self.string("vlo")?;
                        set_value(&mut fields, Raw::Objlnk(link.to_owned())).map_err(|e| self.error(e))?;
                        continue;
                    }
                    if text.ends_with('_') {
                        return Err(FormatError::Cbor {
                            offset: at,
                            reason: format!("label {text:?} must be understood and is not"),
                        });
                    }
                    self.skip(0)?;
                    continue;
                }
                Type::U8 | Type::U16 | Type::U32 | Type::U64 | Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
                    cbor!(self, i64())?
                }
                other => return Err(self.error(format!("a label is an integer or a text string (found {other})"))),
            };
            if seen_labels.contains(&label) {
                return Err(FormatError::Cbor {
                    offset: at,
                    reason: format!("label {label} is given twice"),
                });
            }
            seen_labels.push(label);
            let result = match label {
                BN => {
                    let s = self.string("bn")?;
                    set(&mut fields.bn, Cow::Borrowed(s), "bn")
                }
                BT => {
                    let n = self.number("bt")?;
                    set(&mut fields.bt, n.as_f64(), "bt")
                }
                BV => {
                    let n = self.number("bv")?;
                    set(&mut fields.bv, n, "bv")
                }
                BVER => match self.number("bver")? {
                    Num::Int(v) => set(&mut fields.bver, v, "bver"),
                    _ => Err("bver is not an integer".to_owned()),
                },
                N => {
                    let s = self.string("n")?;
                    set(&mut fields.n, Cow::Borrowed(s), "n")
                }
                T => {
                    let n = self.number("t")?;
                    set(&mut fields.t, n.as_f64(), "t")
                }
                V => {
                    let n = self.number("v")?;
                    set_value(&mut fields, Raw::Number(n))
                }
                VS => {
                    let s = self.string("vs")?;
                    set_value(&mut fields, Raw::String(s.to_owned()))
                }
                VB => match self.datatype()? {
                    Type::Bool => {
                        let b = cbor!(self, bool())?;
                        set_value(&mut fields, Raw::Bool(b))
                    }
                    other => Err(format!("vb is not a boolean (found {other})")),
                },
                VD => match self.datatype()? {
                    Type::Bytes => {
                        let data = cbor!(self, bytes())?;
                        set_value(&mut fields, Raw::Data(data.to_vec()))
                    }
                    other => Err(format!("vd is not a definite-length byte string (found {other})")),
                },
                BU | U => {
                    self.string("a unit")?;
                    Ok(())
                }
                BS | S | UT => {
                    self.number("a sum or update time")?;
                    Ok(())
                }
                _ => {
                    // Negative labels and labels past 8 are not assigned; skip them like unknown
                    // text labels (RFC 8428 §12.2 leaves the registry open).
                    self.skip(0)?;
                    Ok(())
                }
            };
            result.map_err(|reason| FormatError::Cbor { offset: at, reason })?;
        }
        Ok(fields)
    }
}

/// Decodes a SenML CBOR payload (module docs).
pub fn decode_cbor(payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, FormatError> {
    let mut cbor = Cbor {
        d: Decoder::new(payload),
    };
    match cbor.datatype()? {
        Type::Array | Type::ArrayIndef => {}
        other => return Err(cbor.error(format!("the payload is an array of records (found {other})"))),
    }
    let mut len = cbor!(cbor, array())?;
    let mut base = Base::default();
    let mut out = Vec::new();
    let mut index = 0;
    while !cbor.at_end(&mut len)? {
        let fields = cbor.fields()?;
        out.push(resolve(CBOR_FORMAT, index, fields, &mut base, types)?);
        index += 1;
    }
    if cbor.d.position() != payload.len() {
        return Err(cbor.error("bytes after the array of records"));
    }
    Ok(out)
}

/// Encodes records as SenML CBOR (module docs).
pub fn encode_cbor(base: Option<&Path>, records: &[Record]) -> Result<Vec<u8>, FormatError> {
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let infallible = |_: minicbor::encode::Error<std::convert::Infallible>| FormatError::Cbor {
        offset: 0,
        reason: "encoder".to_owned(),
    };
    e.array(records.len() as u64).map_err(infallible)?;
    for (index, record) in records.iter().enumerate() {
        let name = name_for(base, index, record)?;
        let with_base = base.filter(|_| index == 0);
        let count = usize::from(with_base.is_some())
            + usize::from(name.is_some())
            + usize::from(record.value.is_some())
            + usize::from(record.time.is_some());
        e.map(count as u64).map_err(infallible)?;
        if let Some(base) = with_base {
            e.i64(BN)
                .map_err(infallible)?
                .str(&base.to_string())
                .map_err(infallible)?;
        }
        if let Some(name) = &name {
            e.i64(N).map_err(infallible)?.str(name).map_err(infallible)?;
        }
        if let Some(value) = &record.value {
            match value {
                Value::Integer(v) | Value::Time(v) => e.i64(V).map_err(infallible)?.i64(*v).map_err(infallible)?,
                Value::UnsignedInteger(v) => e.i64(V).map_err(infallible)?.u64(*v).map_err(infallible)?,
                Value::Float(v) => {
                    if !v.is_finite() {
                        return Err(FormatError::Value {
                            path: record.path,
                            source: ValueError::NotFinite(*v),
                        });
                    }
                    e.i64(V).map_err(infallible)?;
                    put_float(&mut e, *v).map_err(infallible)?
                }
                Value::String(s) | Value::Corelnk(s) => e.i64(VS).map_err(infallible)?.str(s).map_err(infallible)?,
                Value::Boolean(b) => e.i64(VB).map_err(infallible)?.bool(*b).map_err(infallible)?,
                Value::Opaque(bytes) => e.i64(VD).map_err(infallible)?.bytes(bytes).map_err(infallible)?,
                Value::Objlnk(link) => e
                    .str("vlo")
                    .map_err(infallible)?
                    .str(&link.to_string())
                    .map_err(infallible)?,
            };
        }
        if let Some(time) = record.time {
            if !time.is_finite() {
                return Err(FormatError::Value {
                    path: record.path,
                    source: ValueError::NotFinite(time),
                });
            }
            e.i64(T).map_err(infallible)?;
            put_float(&mut e, time).map_err(infallible)?;
        }
    }
    Ok(e.into_writer())
}

fn put_float(
    e: &mut minicbor::Encoder<Vec<u8>>,
    v: f64,
) -> Result<&mut minicbor::Encoder<Vec<u8>>, minicbor::encode::Error<std::convert::Infallible>> {
    let narrow = v as f32;
    if f64::from(narrow).to_bits() == v.to_bits() {
        e.f32(narrow)
    } else {
        e.f64(v)
    }
}
