//! Plain text (`text/plain`, Content-Format 0; LwM2M Core §7.4.1) and opaque
//! (`application/octet-stream`, 42; §7.4.2): one value of one resource or resource instance.
//!
//! Plain text is typed through the resource's definition: decimal numbers, Boolean `1`/`0`
//! (the spec's form, written on output; `true`/`false` are read too, EMQX's form), Opaque as
//! base64, Objlnk `object:instance`. The text must be UTF-8 and is taken as is (no trimming).
//! EMQX reads text Booleans inverted (`"true"` as false) and does not read `1`/`0` at all.
//!
//! Opaque is the payload's bytes, whatever the resource's type.

use crate::error::FormatError;
use crate::path::Path;
use crate::tlv::resource_type;
use crate::value::{Item, TypeLookup, Value, ValueError};

fn resource_target(target: &Path) -> Result<(), FormatError> {
    if target.depth() < 3 {
        return Err(FormatError::Target {
            target: *target,
            what: "a single-value format (plain text, opaque) answers a resource or resource instance request",
        });
    }
    Ok(())
}

/// Decodes a plain-text payload answering a request on `target` (a resource or resource
/// instance path), typed through `types`.
pub fn decode_text(payload: &[u8], target: &Path, types: &dyn TypeLookup) -> Result<Item, FormatError> {
    resource_target(target)?;
    let ty = resource_type(types, target)?;
    let text = std::str::from_utf8(payload).map_err(|e| FormatError::Value {
        path: *target,
        source: ValueError::NotUtf8 {
            ty,
            offset: e.valid_up_to(),
        },
    })?;
    let value = Value::from_text(ty, text).map_err(|source| FormatError::Value { path: *target, source })?;
    Ok(Item { path: *target, value })
}

/// Encodes one value as plain text.
pub fn encode_text(item: &Item) -> Result<Vec<u8>, FormatError> {
    item.value
        .to_text()
        .map(String::into_bytes)
        .map_err(|source| FormatError::Value {
            path: item.path,
            source,
        })
}

/// Decodes an opaque payload answering a request on `target` (a resource or resource instance
/// path): the bytes, as an Opaque value.
pub fn decode_opaque(payload: &[u8], target: &Path) -> Result<Item, FormatError> {
    resource_target(target)?;
    Ok(Item {
        path: *target,
        value: Value::Opaque(payload.to_vec()),
    })
}

/// Encodes an Opaque value as its bytes; any other type is an error.
pub fn encode_opaque(item: &Item) -> Result<Vec<u8>, FormatError> {
    match &item.value {
        Value::Opaque(bytes) => Ok(bytes.clone()),
        other => Err(FormatError::Value {
            path: item.path,
            source: ValueError::Mismatch {
                ty: other.resource_type(),
                wanted: "written as plain text, not opaque",
                found: "an opaque content format",
            },
        }),
    }
}
