//! OMA LwM2M TLV (`application/vnd.oma.lwm2m+tlv`, Content-Format 11542; LwM2M Core §7.4.3).
//!
//! Two layers:
//! - the structure, [`decode`] and [`TlvPayload::encode`]: object instances holding resources,
//!   multiple resources holding resource instances, resources and resource instances holding
//!   bytes;
//! - typed values, [`decode_items`] and [`encode_items`]: the structure placed under a request
//!   path, each value read through the resource's type.
//!
//! Each entry starts with a type byte — bits 7-6 the entry type, bit 5 the identifier width
//! (8 or 16 bits), bits 4-3 the length form (in bits 2-0, or an 8-, 16- or 24-bit length
//! field). Decoding accepts every form; encoding writes the shortest.
//!
//! Bounds: an entry's length is checked against the bytes that remain before anything is
//! sliced, values are borrowed from the input, nesting is at most three levels by the type
//! rules (an object instance holds resources, a multiple resource holds resource instances,
//! nothing else nests), and every entry takes at least two input bytes, so decoding allocates
//! in proportion to the input and nothing else.
//!
//! Values (Core Appendix C): Integer and Time are signed big-endian of 1, 2, 4 or 8 bytes,
//! Unsigned Integer unsigned of the same widths, Float 4 or 8 bytes, Boolean one byte 0 or 1,
//! Objlnk two 16-bit ids, String and Corelnk UTF-8, Opaque as is. Other widths are refused.
//! Encoding picks the narrowest width that holds the value (a float is written in 4 bytes when
//! that is exact). EMQX's encoder writes non-negative integers in the minimal *unsigned* width
//! (128 becomes the single byte 0x80, which a device reads as -128); this one does not.

use std::borrow::Cow;
use std::fmt;

use crate::error::FormatError;
use crate::path::{Path, RESERVED_ID};
use crate::value::{Item, Objlnk, ResourceType, TypeLookup, Value, ValueError};

/// The longest value the 24-bit length field can state.
pub const MAX_VALUE_LEN: usize = 0xFF_FFFF;

/// The four entry types (bits 7-6 of the type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvType {
    /// `00`: an object instance, holding resources.
    ObjectInstance,
    /// `01`: a resource instance, holding a value.
    ResourceInstance,
    /// `10`: a multiple resource, holding resource instances.
    MultipleResource,
    /// `11`: a resource, holding a value.
    Resource,
}

impl TlvType {
    fn from_bits(bits: u8) -> TlvType {
        match bits & 0b11 {
            0 => TlvType::ObjectInstance,
            1 => TlvType::ResourceInstance,
            2 => TlvType::MultipleResource,
            _ => TlvType::Resource,
        }
    }

    fn bits(self) -> u8 {
        match self {
            TlvType::ObjectInstance => 0,
            TlvType::ResourceInstance => 1,
            TlvType::MultipleResource => 2,
            TlvType::Resource => 3,
        }
    }
}

impl fmt::Display for TlvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlvType::ObjectInstance => "an object instance",
            TlvType::ResourceInstance => "a resource instance",
            TlvType::MultipleResource => "a multiple resource",
            TlvType::Resource => "a resource",
        })
    }
}

/// What is wrong with a TLV payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlvErrorKind {
    /// The input ends inside an entry's identifier, length field or value.
    #[error("the {part} needs {needed} bytes, {available} remain")]
    Truncated {
        /// `"identifier"`, `"length field"` or `"value"`.
        part: &'static str,
        /// The bytes the part needs.
        needed: usize,
        /// The bytes that remain (in the enclosing entry, or in the input).
        available: usize,
    },
    /// A 16-bit identifier of 65535.
    #[error("identifier 65535 is reserved")]
    ReservedId,
    /// An entry where its type cannot be: inside an entry that holds something else.
    #[error("{found} cannot be inside {inside}")]
    Misplaced {
        /// The entry found.
        found: TlvType,
        /// What holds it (`"an object instance"`, `"a multiple resource"`).
        inside: &'static str,
    },
    /// The top level mixes object instances, resources and resource instances.
    #[error("the top level starts with {first} and then has {found}")]
    MixedTopLevel {
        /// The type of the first entry.
        first: TlvType,
        /// The type that does not go with it.
        found: TlvType,
    },
    /// A value longer than the 24-bit length field can state (encoding only).
    #[error("a value of {0} bytes is longer than the 16 MiB a TLV length can state")]
    TooLong(usize),
}

/// Why a TLV payload is malformed: what, and the offset of the entry (or of the byte) where it
/// was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct TlvError {
    /// What.
    pub kind: TlvErrorKind,
    /// Where, in bytes from the start of the payload.
    pub offset: usize,
}

/// A resource instance entry: an id and its value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInstanceTlv<'a> {
    /// The resource instance id.
    pub id: u16,
    /// The value bytes.
    pub value: Cow<'a, [u8]>,
}

/// A resource entry: a single value, or a multiple resource with its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceTlv<'a> {
    /// Type `11`, a resource with a value.
    Single {
        /// The resource id.
        id: u16,
        /// The value bytes.
        value: Cow<'a, [u8]>,
    },
    /// Type `10`, a multiple resource.
    Multiple {
        /// The resource id.
        id: u16,
        /// Its instances, in payload order.
        instances: Vec<ResourceInstanceTlv<'a>>,
    },
}

impl ResourceTlv<'_> {
    /// The resource id.
    pub fn id(&self) -> u16 {
        match self {
            ResourceTlv::Single { id, .. } | ResourceTlv::Multiple { id, .. } => *id,
        }
    }
}

/// An object instance entry and its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInstanceTlv<'a> {
    /// The object instance id.
    pub id: u16,
    /// Its resources, in payload order.
    pub resources: Vec<ResourceTlv<'a>>,
}

/// A whole TLV payload. Its top level holds entries of one kind: object instances (a read of
/// an object, a create), resources (a read of an object instance or resource, a write), or
/// resource instances (a read of a resource instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvPayload<'a> {
    /// Object instances. An empty payload decodes to an empty list.
    ObjectInstances(Vec<ObjectInstanceTlv<'a>>),
    /// Resources and multiple resources.
    Resources(Vec<ResourceTlv<'a>>),
    /// Resource instances.
    ResourceInstances(Vec<ResourceInstanceTlv<'a>>),
}

/// One entry's header, read.
struct Entry<'a> {
    ty: TlvType,
    id: u16,
    value: &'a [u8],
    /// The offset of the value in the whole payload.
    value_offset: usize,
}

/// Reads entries from `input[pos..end]` one at a time; `base` is `input`'s offset in the
/// whole payload.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8], base: usize) -> Reader<'a> {
        Reader { input, pos: 0, base }
    }

    fn next_entry(&mut self) -> Result<Option<(usize, Entry<'a>)>, TlvError> {
        if self.pos >= self.input.len() {
            return Ok(None);
        }
        let start = self.pos;
        let offset = self.base + start;
        let truncated = |part, needed, available| TlvError {
            kind: TlvErrorKind::Truncated {
                part,
                needed,
                available,
            },
            offset,
        };
        let byte = self.input[start];
        let ty = TlvType::from_bits(byte >> 6);
        let id_len = if byte & 0x20 != 0 { 2 } else { 1 };
        let len_len = usize::from((byte >> 3) & 0b11);
        let mut pos = start + 1;
        let rest = self.input.len() - pos;
        if rest < id_len {
            return Err(truncated("identifier", id_len, rest));
        }
        let id = if id_len == 2 {
            u16::from_be_bytes([self.input[pos], self.input[pos + 1]])
        } else {
            u16::from(self.input[pos])
        };
        if id == RESERVED_ID {
            return Err(TlvError {
                kind: TlvErrorKind::ReservedId,
                offset,
            });
        }
        pos += id_len;
        let rest = self.input.len() - pos;
        let len = if len_len == 0 {
            usize::from(byte & 0b111)
        } else {
            if rest < len_len {
                return Err(truncated("length field", len_len, rest));
            }
            let len = self.input[pos..pos + len_len]
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            pos += len_len;
            len
        };
        let rest = self.input.len() - pos;
        if rest < len {
            return Err(truncated("value", len, rest));
        }
        self.pos = pos + len;
        Ok(Some((
            offset,
            Entry {
                ty,
                id,
                value: &self.input[pos..pos + len],
                value_offset: self.base + pos,
            },
        )))
    }
}

fn resource_instances<'a>(value: &'a [u8], base: usize) -> Result<Vec<ResourceInstanceTlv<'a>>, TlvError> {
    let mut reader = Reader::new(value, base);
    let mut out = Vec::new();
    while let Some((offset, entry)) = reader.next_entry()? {
        if entry.ty != TlvType::ResourceInstance {
            return Err(TlvError {
                kind: TlvErrorKind::Misplaced {
                    found: entry.ty,
                    inside: "a multiple resource",
                },
                offset,
            });
        }
        out.push(ResourceInstanceTlv {
            id: entry.id,
            value: Cow::Borrowed(entry.value),
        });
    }
    Ok(out)
}

fn resource<'a>(entry: Entry<'a>) -> Result<ResourceTlv<'a>, TlvError> {
    Ok(match entry.ty {
        TlvType::Resource => ResourceTlv::Single {
            id: entry.id,
            value: Cow::Borrowed(entry.value),
        },
        _ => ResourceTlv::Multiple {
            id: entry.id,
            instances: resource_instances(entry.value, entry.value_offset)?,
        },
    })
}

fn resources<'a>(value: &'a [u8], base: usize) -> Result<Vec<ResourceTlv<'a>>, TlvError> {
    let mut reader = Reader::new(value, base);
    let mut out = Vec::new();
    while let Some((offset, entry)) = reader.next_entry()? {
        if !matches!(entry.ty, TlvType::Resource | TlvType::MultipleResource) {
            return Err(TlvError {
                kind: TlvErrorKind::Misplaced {
                    found: entry.ty,
                    inside: "an object instance",
                },
                offset,
            });
        }
        out.push(resource(entry)?);
    }
    Ok(out)
}

/// Decodes the structure of a TLV payload (module docs).
pub fn decode(input: &[u8]) -> Result<TlvPayload<'_>, TlvError> {
    let mut reader = Reader::new(input, 0);
    let Some((_, first)) = reader.next_entry()? else {
        return Ok(TlvPayload::ObjectInstances(Vec::new()));
    };
    let first_ty = first.ty;
    let mixed = |offset, found| TlvError {
        kind: TlvErrorKind::MixedTopLevel { first: first_ty, found },
        offset,
    };
    match first_ty {
        TlvType::ObjectInstance => {
            let mut out = vec![ObjectInstanceTlv {
                id: first.id,
                resources: resources(first.value, first.value_offset)?,
            }];
            while let Some((offset, entry)) = reader.next_entry()? {
                if entry.ty != TlvType::ObjectInstance {
                    return Err(mixed(offset, entry.ty));
                }
                out.push(ObjectInstanceTlv {
                    id: entry.id,
                    resources: resources(entry.value, entry.value_offset)?,
                });
            }
            Ok(TlvPayload::ObjectInstances(out))
        }
        TlvType::Resource | TlvType::MultipleResource => {
            let mut out = vec![resource(first)?];
            while let Some((offset, entry)) = reader.next_entry()? {
                if !matches!(entry.ty, TlvType::Resource | TlvType::MultipleResource) {
                    return Err(mixed(offset, entry.ty));
                }
                out.push(resource(entry)?);
            }
            Ok(TlvPayload::Resources(out))
        }
        TlvType::ResourceInstance => {
            let mut out = vec![ResourceInstanceTlv {
                id: first.id,
                value: Cow::Borrowed(first.value),
            }];
            while let Some((offset, entry)) = reader.next_entry()? {
                if entry.ty != TlvType::ResourceInstance {
                    return Err(mixed(offset, entry.ty));
                }
                out.push(ResourceInstanceTlv {
                    id: entry.id,
                    value: Cow::Borrowed(entry.value),
                });
            }
            Ok(TlvPayload::ResourceInstances(out))
        }
    }
}

/// Writes one entry's header and value, in the shortest forms.
fn put_entry(out: &mut Vec<u8>, ty: TlvType, id: u16, value: &[u8]) -> Result<(), TlvError> {
    let len = value.len();
    if len > MAX_VALUE_LEN {
        return Err(TlvError {
            kind: TlvErrorKind::TooLong(len),
            offset: out.len(),
        });
    }
    let mut byte = ty.bits() << 6;
    if id > 0xFF {
        byte |= 0x20;
    }
    let len_bytes: &[u8] = &(len as u32).to_be_bytes();
    let len_field = match len {
        0..=7 => {
            byte |= len as u8;
            &[][..]
        }
        8..=0xFF => {
            byte |= 1 << 3;
            &len_bytes[3..]
        }
        0x100..=0xFFFF => {
            byte |= 2 << 3;
            &len_bytes[2..]
        }
        _ => {
            byte |= 3 << 3;
            &len_bytes[1..]
        }
    };
    out.push(byte);
    if id > 0xFF {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_field);
    out.extend_from_slice(value);
    Ok(())
}

fn put_resource(out: &mut Vec<u8>, resource: &ResourceTlv<'_>) -> Result<(), TlvError> {
    match resource {
        ResourceTlv::Single { id, value } => put_entry(out, TlvType::Resource, *id, value),
        ResourceTlv::Multiple { id, instances } => {
            let mut inner = Vec::new();
            for instance in instances {
                put_entry(&mut inner, TlvType::ResourceInstance, instance.id, &instance.value)?;
            }
            put_entry(out, TlvType::MultipleResource, *id, &inner)
        }
    }
}

impl TlvPayload<'_> {
    /// Encodes the payload: every header in its shortest form.
    pub fn encode(&self) -> Result<Vec<u8>, TlvError> {
        let mut out = Vec::new();
        match self {
            TlvPayload::ObjectInstances(instances) => {
                for instance in instances {
                    let mut inner = Vec::new();
                    for resource in &instance.resources {
                        put_resource(&mut inner, resource)?;
                    }
                    put_entry(&mut out, TlvType::ObjectInstance, instance.id, &inner)?;
                }
            }
            TlvPayload::Resources(resources) => {
                for resource in resources {
                    put_resource(&mut out, resource)?;
                }
            }
            TlvPayload::ResourceInstances(instances) => {
                for instance in instances {
                    put_entry(&mut out, TlvType::ResourceInstance, instance.id, &instance.value)?;
                }
            }
        }
        Ok(out)
    }
}

fn width_error(ty: ResourceType, allowed: &'static str, found: usize) -> ValueError {
    ValueError::Width { ty, allowed, found }
}

fn signed(ty: ResourceType, bytes: &[u8]) -> Result<i64, ValueError> {
    Ok(match bytes.len() {
        1 => i64::from(bytes[0] as i8),
        2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        8 => i64::from_be_bytes(bytes.try_into().map_err(|_| width_error(ty, "1, 2, 4 or 8", 8))?),
        n => return Err(width_error(ty, "1, 2, 4 or 8", n)),
    })
}

fn utf8(ty: ResourceType, bytes: &[u8]) -> Result<String, ValueError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| ValueError::NotUtf8 {
            ty,
            offset: e.valid_up_to(),
        })
}

/// Reads a TLV value of type `ty` (module docs give the widths).
pub fn value_from_bytes(ty: ResourceType, bytes: &[u8]) -> Result<Value, ValueError> {
    Ok(match ty {
        ResourceType::String => Value::String(utf8(ty, bytes)?),
        ResourceType::Corelnk => Value::Corelnk(utf8(ty, bytes)?),
        ResourceType::Integer => Value::Integer(signed(ty, bytes)?),
        ResourceType::Time => Value::Time(signed(ty, bytes)?),
        ResourceType::UnsignedInteger => Value::UnsignedInteger(match bytes.len() {
            1 | 2 | 4 | 8 => bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
            n => return Err(width_error(ty, "1, 2, 4 or 8", n)),
        }),
        ResourceType::Float => Value::Float(match bytes.len() {
            4 => f64::from(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            8 => f64::from_be_bytes(bytes.try_into().map_err(|_| width_error(ty, "4 or 8", 8))?),
            n => return Err(width_error(ty, "4 or 8", n)),
        }),
        ResourceType::Boolean => match bytes {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            [b] => return Err(ValueError::BooleanByte(*b)),
            _ => return Err(width_error(ty, "1", bytes.len())),
        },
        ResourceType::Opaque => Value::Opaque(bytes.to_vec()),
        ResourceType::Objlnk => match bytes {
            [a, b, c, d] => Value::Objlnk(Objlnk {
                object: u16::from_be_bytes([*a, *b]),
                instance: u16::from_be_bytes([*c, *d]),
            }),
            _ => return Err(width_error(ty, "4", bytes.len())),
        },
        ResourceType::None => return Err(ValueError::NoValue),
    })
}

/// Writes a value's TLV bytes (module docs: the narrowest exact width).
pub fn value_to_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) | Value::Corelnk(s) => s.as_bytes().to_vec(),
        Value::Integer(v) | Value::Time(v) => {
            let v = *v;
            if let Ok(v) = i8::try_from(v) {
                v.to_be_bytes().to_vec()
            } else if let Ok(v) = i16::try_from(v) {
                v.to_be_bytes().to_vec()
            } else if let Ok(v) = i32::try_from(v) {
                v.to_be_bytes().to_vec()
            } else {
                v.to_be_bytes().to_vec()
            }
        }
        Value::UnsignedInteger(v) => {
            let v = *v;
            if let Ok(v) = u8::try_from(v) {
                vec![v]
            } else if let Ok(v) = u16::try_from(v) {
                v.to_be_bytes().to_vec()
            } else if let Ok(v) = u32::try_from(v) {
                v.to_be_bytes().to_vec()
            } else {
                v.to_be_bytes().to_vec()
            }
        }
        Value::Float(v) => {
            let narrow = *v as f32;
            if f64::from(narrow).to_bits() == v.to_bits() {
                narrow.to_be_bytes().to_vec()
            } else {
                v.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::Opaque(bytes) => bytes.clone(),
        Value::Objlnk(link) => {
            let mut out = link.object.to_be_bytes().to_vec();
            out.extend_from_slice(&link.instance.to_be_bytes());
            out
        }
    }
}

/// Reads the value at `path` (a resource or resource instance path) through its type.
pub(crate) fn typed_value(types: &dyn TypeLookup, path: Path, bytes: &[u8]) -> Result<Item, FormatError> {
    let ty = resource_type(types, &path)?;
    let value = value_from_bytes(ty, bytes).map_err(|source| FormatError::Value { path, source })?;
    Ok(Item { path, value })
}

/// The type of the resource `path` points into, or the error that says what is missing.
pub(crate) fn resource_type(types: &dyn TypeLookup, path: &Path) -> Result<ResourceType, FormatError> {
    let object = path.object_id();
    let resource = path.resource_id().ok_or(FormatError::NotAResource(*path))?;
    match types.resource_type(object, resource) {
        Some(ResourceType::None) => Err(FormatError::Executable(*path)),
        Some(ty) => Ok(ty),
        None if types.has_object(object) => Err(FormatError::UnknownResource { object, resource }),
        None => Err(FormatError::UnknownObject(object)),
    }
}

fn under(target: &Path, path: Path) -> Result<Path, FormatError> {
    if path.starts_with(target) {
        Ok(path)
    } else {
        Err(FormatError::OutsideTarget {
            target: *target,
            found: path,
        })
    }
}

fn child(path: &Path, id: u16) -> Result<Path, FormatError> {
    // The reader refuses id 65535 and every parent here is above the resource instance level.
    path.child(id).map_err(|_| FormatError::NotAResource(*path))
}

fn resource_items(
    types: &dyn TypeLookup,
    instance: &Path,
    target: &Path,
    resources: &[ResourceTlv<'_>],
    out: &mut Vec<Item>,
) -> Result<(), FormatError> {
    for resource in resources {
        let path = child(instance, resource.id())?;
        match resource {
            ResourceTlv::Single { value, .. } => out.push(typed_value(types, under(target, path)?, value)?),
            ResourceTlv::Multiple { instances, .. } => {
                if target.depth() < 4 {
                    under(target, path)?;
                }
                for ri in instances {
                    out.push(typed_value(types, under(target, child(&path, ri.id)?)?, &ri.value)?);
                }
            }
        }
    }
    Ok(())
}

/// Decodes a TLV response to a request on `target`, typing every value through `types`.
///
/// Paths: object instances go under the object (and must match the target's instance, if it
/// has one); resources go under the target's object instance (a resource request may only
/// hold that resource); resource instances go under the target's resource. An empty payload
/// is no items, for any request path. Every item's path lies under `target`.
pub fn decode_items(payload: &[u8], target: &Path, types: &dyn TypeLookup) -> Result<Vec<Item>, FormatError> {
    let mut out = Vec::new();
    if payload.is_empty() {
        // No entries: nothing of any kind, whatever the request path.
        return Ok(out);
    }
    match decode(payload)? {
        TlvPayload::ObjectInstances(instances) => {
            if target.depth() > 2 {
                return Err(FormatError::Target {
                    target: *target,
                    what: "object instance entries answer an object or object instance request",
                });
            }
            let object = Path::object(target.object_id()).map_err(|_| FormatError::NotAResource(*target))?;
            for instance in &instances {
                let path = under(target, child(&object, instance.id)?)?;
                resource_items(types, &path, target, &instance.resources, &mut out)?;
            }
        }
        TlvPayload::Resources(resources) => {
            let Some(instance) = target
                .resource_path()
                .and_then(|r| r.parent())
                .or_else(|| (target.depth() == 2).then_some(*target))
            else {
                return Err(FormatError::Target {
                    target: *target,
                    what: "resource entries need an object instance in the request path",
                });
            };
            resource_items(types, &instance, target, &resources, &mut out)?;
        }
        TlvPayload::ResourceInstances(instances) => {
            let Some(resource) = target.resource_path() else {
                return Err(FormatError::Target {
                    target: *target,
                    what: "resource instance entries answer a resource or resource instance request",
                });
            };
            for ri in &instances {
                out.push(typed_value(types, under(target, child(&resource, ri.id)?)?, &ri.value)?);
            }
        }
    }
    Ok(out)
}

/// Groups `items` by the id at `depth`, keeping first-appearance order.
fn group_by<'a>(items: &[&'a Item], depth: usize) -> Vec<(u16, Vec<&'a Item>)> {
    let mut groups: Vec<(u16, Vec<&Item>)> = Vec::new();
    for item in items {
        let id = item.path.ids()[depth];
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, members)) => members.push(item),
            None => groups.push((id, vec![item])),
        }
    }
    groups
}

fn resource_tlv(resource_id: u16, items: &[&Item]) -> Result<ResourceTlv<'static>, FormatError> {
    if let [item] = items
        && item.path.depth() == 3
    {
        return Ok(ResourceTlv::Single {
            id: resource_id,
            value: Cow::Owned(value_to_bytes(&item.value)),
        });
    }
    let mut instances: Vec<ResourceInstanceTlv<'static>> = Vec::with_capacity(items.len());
    for item in items {
        let Some(ri) = item.path.resource_instance_id() else {
            // A resource given as a value and also as instances, or twice as a value.
            return Err(FormatError::Duplicate(item.path));
        };
        if instances.iter().any(|i| i.id == ri) {
            return Err(FormatError::Duplicate(item.path));
        }
        instances.push(ResourceInstanceTlv {
            id: ri,
            value: Cow::Owned(value_to_bytes(&item.value)),
        });
    }
    Ok(ResourceTlv::Multiple {
        id: resource_id,
        instances,
    })
}

fn resource_tlvs(items: &[&Item]) -> Result<Vec<ResourceTlv<'static>>, FormatError> {
    group_by(items, 2)
        .into_iter()
        .map(|(id, members)| resource_tlv(id, &members))
        .collect()
}

/// Encodes `items` as the TLV payload of a write or create on `target`.
///
/// The request path decides the top level (LwM2M Core §7.4.3; EMQX builds the same shapes):
/// an object (create) gets object instance entries, an object instance (write, partial
/// update) gets resource entries, a resource gets one resource entry (a value, or a multiple
/// resource when the items are its instances), a resource instance gets one resource instance
/// entry. Resources and instances keep the order they first appear in. Every item must lie
/// under `target` at the resource or resource instance level, and no path may appear twice.
pub fn encode_items(target: &Path, items: &[Item]) -> Result<Vec<u8>, FormatError> {
    let mut refs: Vec<&Item> = Vec::with_capacity(items.len());
    for item in items {
        if item.path.depth() < 3 {
            return Err(FormatError::NotAResource(item.path));
        }
        under(target, item.path)?;
        refs.push(item);
    }
    let payload = match target.depth() {
        1 => {
            let mut instances = Vec::new();
            for (id, members) in group_by(&refs, 1) {
                instances.push(ObjectInstanceTlv {
                    id,
                    resources: resource_tlvs(&members)?,
                });
            }
            TlvPayload::ObjectInstances(instances)
        }
        2 | 3 => TlvPayload::Resources(resource_tlvs(&refs)?),
        _ => match refs.as_slice() {
            [] => TlvPayload::ResourceInstances(Vec::new()),
            [item] => TlvPayload::ResourceInstances(vec![ResourceInstanceTlv {
                id: target.resource_instance_id().unwrap_or_default(),
                value: Cow::Owned(value_to_bytes(&item.value)),
            }]),
            [_, second, ..] => return Err(FormatError::Duplicate(second.path)),
        },
    };
    Ok(payload.encode()?)
}
