//! Resource types, typed values, and the JSON forms EMQX's LwM2M gateway uses on its MQTT side.
//!
//! - [`ResourceType`]: the data types of LwM2M Core Appendix C, named as the object definition
//!   files name them (`"Unsigned Integer"`, `"Corelnk"`, and the empty type of an executable
//!   resource, [`ResourceType::None`]);
//! - [`Value`]: one typed value;
//! - [`Item`] and [`Record`]: a value at a path, the unit every content format decodes to
//!   (a [`Record`] may have no value and a time, as the JSON formats allow);
//! - [`TypeLookup`]: where a decoder learns a resource's type ([`crate::Registry`] is one).
//!
//! JSON forms (gateway-semantics §3.5, §3.6):
//!
//! | type | downlink command `value` | uplink `value` |
//! |---|---|---|
//! | String, Corelnk | JSON string, raw | string |
//! | Integer, Time, Unsigned Integer | JSON integer or a numeric string | number |
//! | Float | JSON number or a numeric string | number (`null` if not finite) |
//! | Boolean | `"true"` / `"false"` (and JSON `true` / `false`) | `true` / `false` |
//! | Opaque | base64 string | base64 string (padded) |
//! | Objlnk | `"object:instance"` | `"object:instance"` |

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::{Map, Value as Json};

use crate::path::Path;

/// A resource's data type (LwM2M Core Appendix C; `UnsignedInteger` and `Corelnk` since 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// UTF-8 text.
    String,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer (LwM2M 1.1).
    UnsignedInteger,
    /// 32- or 64-bit IEEE 754 float.
    Float,
    /// `true` or `false`.
    Boolean,
    /// Bytes.
    Opaque,
    /// Unix time in seconds, a signed integer.
    Time,
    /// A reference to an object instance, `object:instance`.
    Objlnk,
    /// A CoRE link-format string (LwM2M 1.1).
    Corelnk,
    /// No value: an executable resource.
    None,
}

impl ResourceType {
    /// Every type, in the order of the table above.
    pub const ALL: [ResourceType; 10] = [
        ResourceType::String,
        ResourceType::Integer,
        ResourceType::UnsignedInteger,
        ResourceType::Float,
        ResourceType::Boolean,
        ResourceType::Opaque,
        ResourceType::Time,
        ResourceType::Objlnk,
        ResourceType::Corelnk,
        ResourceType::None,
    ];

    /// The type's name in an object definition's `<Type>` element (`""` for `None`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::String => "String",
            ResourceType::Integer => "Integer",
            ResourceType::UnsignedInteger => "Unsigned Integer",
            ResourceType::Float => "Float",
            ResourceType::Boolean => "Boolean",
            ResourceType::Opaque => "Opaque",
            ResourceType::Time => "Time",
            ResourceType::Objlnk => "Objlnk",
            ResourceType::Corelnk => "Corelnk",
            ResourceType::None => "",
        }
    }

    /// The type an object definition's `<Type>` text names, exactly as the OMA registry spells
    /// it (surrounding whitespace is the caller's business).
    pub fn from_xml_name(name: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type a downlink command's `"type"` names: the definition names EMQX accepts
    /// (`String`, `Integer`, `Float`, `Boolean`, `Opaque`, `Time`, `Objlnk`) and the 1.1 ones,
    /// `Unsigned Integer` (also `UnsignedInteger`) and `Corelnk`.
    pub fn from_command_name(name: &str) -> Option<ResourceType> {
        match name {
            "" => None,
            "UnsignedInteger" => Some(ResourceType::UnsignedInteger),
            _ => ResourceType::from_xml_name(name),
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceType::None => f.write_str("None"),
            other => f.write_str(other.name()),
        }
    }
}

/// A reference to an object instance (LwM2M Core Appendix C). `65535:65535` is the null link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Objlnk {
    /// The object id.
    pub object: u16,
    /// The object instance id.
    pub instance: u16,
}

impl Objlnk {
    /// Parses `object:instance`, two decimal 16-bit numbers.
    pub fn parse(text: &str) -> Result<Objlnk, ValueError> {
        let bad = |reason| ValueError::text(ResourceType::Objlnk, text, reason);
        let (object, instance) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let id = |part: &str| -> Result<u16, ValueError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each side is a decimal number"));
            }
            part.parse::<u16>().map_err(|_| bad("each side is at most 65535"))
        };
        Ok(Objlnk {
            object: id(object)?,
            instance: id(instance)?,
        })
    }
}

impl fmt::Display for Objlnk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.object, self.instance)
    }
}

/// One typed value.
///
/// Equality compares floats bit for bit, so that a value always equals itself (a NaN read
/// from a device included) and `0.0` differs from `-0.0`.
#[derive(Debug, Clone)]
pub enum Value {
    /// [`ResourceType::String`].
    String(String),
    /// [`ResourceType::Integer`].
    Integer(i64),
    /// [`ResourceType::UnsignedInteger`].
    UnsignedInteger(u64),
    /// [`ResourceType::Float`].
    Float(f64),
    /// [`ResourceType::Boolean`].
    Boolean(bool),
    /// [`ResourceType::Opaque`].
    Opaque(Vec<u8>),
    /// [`ResourceType::Time`], seconds since the Unix epoch.
    Time(i64),
    /// [`ResourceType::Objlnk`].
    Objlnk(Objlnk),
    /// [`ResourceType::Corelnk`].
    Corelnk(String),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::String(a), Value::String(b)) | (Value::Corelnk(a), Value::Corelnk(b)) => a == b,
            (Value::Integer(a), Value::Integer(b)) | (Value::Time(a), Value::Time(b)) => a == b,
            (Value::UnsignedInteger(a), Value::UnsignedInteger(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            (Value::Opaque(a), Value::Opaque(b)) => a == b,
            (Value::Objlnk(a), Value::Objlnk(b)) => a == b,
            _ => false,
        }
    }
}

/// Why a value cannot be read or written in some form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The JSON or format value has the wrong kind for the type.
    #[error("a {ty} value is {wanted}, found {found}")]
    Mismatch {
        /// The resource type.
        ty: ResourceType,
        /// What the type takes here.
        wanted: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A text form does not parse.
    #[error("{text:?} is not a {ty} value: {reason}")]
    Text {
        /// The resource type.
        ty: ResourceType,
        /// The text (cut at 64 characters).
        text: String,
        /// Why.
        reason: &'static str,
    },
    /// A binary value has a width the type does not allow.
    #[error("a {ty} value takes {allowed} bytes, found {found}")]
    Width {
        /// The resource type.
        ty: ResourceType,
        /// The widths the type allows.
        allowed: &'static str,
        /// The width found.
        found: usize,
    },
    /// A TLV Boolean other than 0 or 1.
    #[error("a Boolean is the byte 0 or 1, found {0:#04x}")]
    BooleanByte(u8),
    /// Text that should be UTF-8 is not.
    #[error("a {ty} value is not UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// The resource type.
        ty: ResourceType,
        /// The first invalid byte.
        offset: usize,
    },
    /// Not valid base64.
    #[error("not valid base64: {0}")]
    Base64(String),
    /// Not valid hex (a downlink command with `"encoding":"hex"`).
    #[error("not valid hex at character {0}")]
    Hex(usize),
    /// A value for an executable resource.
    #[error("an executable resource (type None) carries no value")]
    NoValue,
    /// A type name nobody defines.
    #[error("unknown resource type {0:?}")]
    UnknownType(String),
    /// A float that the format cannot carry (NaN or infinite).
    #[error("the float {0} cannot be written in this format")]
    NotFinite(f64),
}

impl ValueError {
    pub(crate) fn text(ty: ResourceType, text: &str, reason: &'static str) -> ValueError {
        ValueError::Text {
            ty,
            text: text.chars().take(64).collect(),
            reason,
        }
    }
}

/// Base64 as EMQX reads it: the standard alphabet, padding optional.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes standard base64, padded or not.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, ValueError> {
    BASE64_LENIENT
        .decode(text)
        .map_err(|e| ValueError::Base64(e.to_string()))
}

/// Encodes standard padded base64, as EMQX's uplink does.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes URL-safe base64, padded or not (SenML JSON `vd`, RFC 8428 §5).
pub(crate) fn base64url_decode(text: &str) -> Result<Vec<u8>, ValueError> {
    const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    URL_LENIENT.decode(text).map_err(|e| ValueError::Base64(e.to_string()))
}

/// Encodes URL-safe base64 without padding (RFC 8428 §5).
pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A decimal integer: an optional sign, then digits.
fn integer_digits(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn parse_integer(ty: ResourceType, text: &str) -> Result<i64, ValueError> {
    if !integer_digits(text) {
        return Err(ValueError::text(ty, text, "expected a decimal integer"));
    }
    text.parse::<i64>()
        .map_err(|_| ValueError::text(ty, text, "outside the signed 64-bit range"))
}

pub(crate) fn parse_unsigned(text: &str) -> Result<u64, ValueError> {
    let ty = ResourceType::UnsignedInteger;
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::text(ty, text, "expected an unsigned decimal integer"));
    }
    digits
        .parse::<u64>()
        .map_err(|_| ValueError::text(ty, text, "outside the unsigned 64-bit range"))
}

/// A decimal number: `[+-]digits[.digits][(e|E)[+-]digits]`. No `inf`, `nan`, `.5` or `5.`.
pub(crate) fn parse_float(text: &str) -> Result<f64, ValueError> {
    let ty = ResourceType::Float;
    let bad = || ValueError::text(ty, text, "expected a decimal number");
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(bad());
    }
    if let Some(exp) = exponent
        && !all_digits(exp.strip_prefix(['-', '+']).unwrap_or(exp))
    {
        return Err(bad());
    }
    let value: f64 = text.parse().map_err(|_| bad())?;
    if !value.is_finite() {
        return Err(ValueError::text(ty, text, "outside the 64-bit float range"));
    }
    Ok(value)
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl Value {
    /// The value's type.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Value::String(_) => ResourceType::String,
            Value::Integer(_) => ResourceType::Integer,
            Value::UnsignedInteger(_) => ResourceType::UnsignedInteger,
            Value::Float(_) => ResourceType::Float,
            Value::Boolean(_) => ResourceType::Boolean,
            Value::Opaque(_) => ResourceType::Opaque,
            Value::Time(_) => ResourceType::Time,
            Value::Objlnk(_) => ResourceType::Objlnk,
            Value::Corelnk(_) => ResourceType::Corelnk,
        }
    }

    /// Reads the plain-text form of a value (LwM2M Core §7.4.1, Appendix C): numbers in
    /// decimal, Boolean `1`/`0` (and `true`/`false`), Opaque as base64, Objlnk `o:i`.
    pub fn from_text(ty: ResourceType, text: &str) -> Result<Value, ValueError> {
        Ok(match ty {
            ResourceType::String => Value::String(text.to_owned()),
            ResourceType::Corelnk => Value::Corelnk(text.to_owned()),
            ResourceType::Integer => Value::Integer(parse_integer(ty, text)?),
            ResourceType::Time => Value::Time(parse_integer(ty, text)?),
            ResourceType::UnsignedInteger => Value::UnsignedInteger(parse_unsigned(text)?),
            ResourceType::Float => Value::Float(parse_float(text)?),
            ResourceType::Boolean => match text {
                "1" | "true" => Value::Boolean(true),
                "0" | "false" => Value::Boolean(false),
                _ => return Err(ValueError::text(ty, text, "expected 1, 0, true or false")),
            },
            ResourceType::Opaque => Value::Opaque(base64_decode(text)?),
            ResourceType::Objlnk => Value::Objlnk(Objlnk::parse(text)?),
            ResourceType::None => return Err(ValueError::NoValue),
        })
    }

    /// The plain-text form: what [`Value::from_text`] reads back (Boolean as `1`/`0`, floats
    /// in the shortest decimal that reads back exactly, never with an exponent).
    pub fn to_text(&self) -> Result<String, ValueError> {
        Ok(match self {
            Value::String(s) | Value::Corelnk(s) => s.clone(),
            Value::Integer(v) | Value::Time(v) => v.to_string(),
            Value::UnsignedInteger(v) => v.to_string(),
            Value::Float(v) if !v.is_finite() => return Err(ValueError::NotFinite(*v)),
            Value::Float(v) => v.to_string(),
            Value::Boolean(b) => if *b { "1" } else { "0" }.to_owned(),
            Value::Opaque(bytes) => base64_encode(bytes),
            Value::Objlnk(link) => link.to_string(),
        })
    }

    /// The uplink JSON form (module table): what EMQX puts in `content[].value`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::String(s) | Value::Corelnk(s) => Json::String(s.clone()),
            Value::Integer(v) | Value::Time(v) => Json::from(*v),
            Value::UnsignedInteger(v) => Json::from(*v),
            // serde_json turns a non-finite float into null.
            Value::Float(v) => Json::from(*v),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Opaque(bytes) => Json::String(base64_encode(bytes)),
            Value::Objlnk(link) => Json::String(link.to_string()),
        }
    }

    /// Reads a downlink command's `value` for a resource of type `ty` (module table).
    /// Stricter than EMQX: an Integer or Time must be integral and within 64 bits (EMQX sends
    /// a float for `"1.5"`), a String must be a JSON string.
    pub fn from_command_json(ty: ResourceType, json: &Json) -> Result<Value, ValueError> {
        let mismatch = |wanted| ValueError::Mismatch {
            ty,
            wanted,
            found: json_kind(json),
        };
        match (ty, json) {
            (ResourceType::None, _) => Err(ValueError::NoValue),
            (_, Json::String(text)) => Value::from_command_text(ty, text),
            (ResourceType::Integer | ResourceType::Time, Json::Number(n)) => {
                let v = n.as_i64().ok_or_else(|| mismatch("an integer within 64 bits"))?;
                Ok(if ty == ResourceType::Time {
                    Value::Time(v)
                } else {
                    Value::Integer(v)
                })
            }
            (ResourceType::UnsignedInteger, Json::Number(n)) => n
                .as_u64()
                .map(Value::UnsignedInteger)
                .ok_or_else(|| mismatch("a non-negative integer within 64 bits")),
            (ResourceType::Float, Json::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Value::Float)
                .ok_or_else(|| mismatch("a finite number")),
            (ResourceType::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
            (ResourceType::Integer | ResourceType::Time | ResourceType::UnsignedInteger, _) => {
                Err(mismatch("a number or a numeric string"))
            }
            (ResourceType::Float, _) => Err(mismatch("a number or a numeric string")),
            (ResourceType::Boolean, _) => Err(mismatch("\"true\" or \"false\"")),
            (ResourceType::Opaque, _) => Err(mismatch("a base64 string")),
            (ResourceType::Objlnk, _) => Err(mismatch("an \"object:instance\" string")),
            (ResourceType::String | ResourceType::Corelnk, _) => Err(mismatch("a string")),
        }
    }

    /// Reads a downlink command's `value` string: raw for String and Corelnk, a decimal
    /// number for the numeric types, `"true"`/`"false"` for Boolean, base64 for Opaque,
    /// `"o:i"` for Objlnk.
    pub fn from_command_text(ty: ResourceType, text: &str) -> Result<Value, ValueError> {
        match ty {
            ResourceType::Boolean => match text {
                "true" => Ok(Value::Boolean(true)),
                "false" => Ok(Value::Boolean(false)),
                _ => Err(ValueError::text(ty, text, "expected \"true\" or \"false\"")),
            },
            _ => Value::from_text(ty, text),
        }
    }

    /// Reads a downlink command's `value` when the command says `"encoding":"hex"`: the hex
    /// string is decoded first; an Opaque value is those bytes (EMQX base64-decodes them
    /// again), every other type reads them as the text of [`Value::from_command_text`].
    pub fn from_command_hex(ty: ResourceType, hex: &str) -> Result<Value, ValueError> {
        let bytes = hex_decode(hex)?;
        if ty == ResourceType::Opaque {
            return Ok(Value::Opaque(bytes));
        }
        let text = String::from_utf8(bytes).map_err(|e| ValueError::NotUtf8 {
            ty,
            offset: e.utf8_error().valid_up_to(),
        })?;
        Value::from_command_text(ty, &text)
    }
}

/// Decodes a hex string (either case, even length).
pub(crate) fn hex_decode(hex: &str) -> Result<Vec<u8>, ValueError> {
    let digit = |at: usize, b: u8| -> Result<u8, ValueError> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(ValueError::Hex(at)),
        }
    };
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(ValueError::Hex(bytes.len()));
    }
    bytes
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| Ok(digit(2 * i, pair[0])? << 4 | digit(2 * i + 1, pair[1])?))
        .collect()
}

/// A value at a path: what TLV and plain text decode to, and what every encoder takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// A resource (`/o/i/r`) or resource instance (`/o/i/r/ri`) path.
    pub path: Path,
    /// The value.
    pub value: Value,
}

impl Item {
    /// An item.
    pub fn new(path: Path, value: Value) -> Item {
        Item { path, value }
    }

    /// `{"path": "/3/0/0", "value": ...}`, one entry of EMQX's uplink `content` list.
    pub fn to_json(&self) -> Json {
        entry_json(&self.path, Some(&self.value))
    }
}

/// An entry of a JSON or SenML payload: a path, maybe a value, maybe a time (seconds, the
/// base time already added).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The resolved name.
    pub path: Path,
    /// The value, if the entry has one.
    pub value: Option<Value>,
    /// The resolved time, if the entry or its base has one.
    pub time: Option<f64>,
}

impl Record {
    /// `{"path": ..., "value": ...}` with `null` for a missing value (EMQX's shape for OMA
    /// JSON); the time is not part of EMQX's uplink.
    pub fn to_json(&self) -> Json {
        entry_json(&self.path, self.value.as_ref())
    }
}

impl From<Item> for Record {
    fn from(item: Item) -> Record {
        Record {
            path: item.path,
            value: Some(item.value),
            time: None,
        }
    }
}

fn entry_json(path: &Path, value: Option<&Value>) -> Json {
    let mut map = Map::new();
    map.insert("path".to_owned(), Json::String(path.to_string()));
    map.insert("value".to_owned(), value.map_or(Json::Null, Value::to_json));
    Json::Object(map)
}

/// Where a decoder learns a resource's type.
pub trait TypeLookup {
    /// The type of resource `resource` of object `object`, if known.
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType>;

    /// Whether object `object` is known at all (for the error that says which is missing).
    fn has_object(&self, object: u16) -> bool;
}

/// Knows no type: the JSON formats then take each value as its JSON kind says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Untyped;

impl TypeLookup for Untyped {
    fn resource_type(&self, _: u16, _: u16) -> Option<ResourceType> {
        None
    }

    fn has_object(&self, _: u16) -> bool {
        false
    }
}
