//! One entry point per direction, by Content-Format number: what the gateway calls with a
//! response's Content-Format (gateway-semantics §3.6) or to build a write's payload.
//!
//! | number | format | decode | encode |
//! |---|---|---|---|
//! | 0 | plain text | one value, typed | one value |
//! | 42 | opaque | one Opaque value | one Opaque value |
//! | 11542 (1542) | OMA TLV | typed | yes |
//! | 11543 (1543) | OMA LwM2M JSON | typed if known | yes |
//! | 110 | SenML JSON | typed if known | yes |
//! | 112 | SenML CBOR | typed if known | yes |
//!
//! 1541..1544 are the numbers LwM2M 1.0 drafts used before IANA registered 11542/11543; some
//! 1.0 clients still send them (1541 text, 1542 TLV, 1543 JSON, 1544 opaque).
//! Every decoded record must lie under the request path. Link format (40) is the discover
//! answer; see [`crate::link`].

use crate::error::FormatError;
use crate::path::Path;
use crate::value::{Item, Record, TypeLookup};
use crate::{json, senml, text, tlv};

/// `text/plain;charset=utf-8`.
pub const TEXT_PLAIN: u16 = 0;
/// `application/link-format`.
pub const LINK_FORMAT: u16 = 40;
/// `application/octet-stream`.
pub const OCTET_STREAM: u16 = 42;
/// `application/senml+json`.
pub const SENML_JSON: u16 = 110;
/// `application/senml+cbor`.
pub const SENML_CBOR: u16 = 112;
/// `application/vnd.oma.lwm2m+tlv`.
pub const LWM2M_TLV: u16 = 11542;
/// `application/vnd.oma.lwm2m+json`.
pub const LWM2M_JSON: u16 = 11543;
/// LwM2M 1.0 draft number for plain text.
pub const LEGACY_TEXT: u16 = 1541;
/// LwM2M 1.0 draft number for TLV.
pub const LEGACY_TLV: u16 = 1542;
/// LwM2M 1.0 draft number for JSON.
pub const LEGACY_JSON: u16 = 1543;
/// LwM2M 1.0 draft number for opaque.
pub const LEGACY_OPAQUE: u16 = 1544;

/// The data format of a Content-Format number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text.
    Text,
    /// Opaque bytes.
    Opaque,
    /// OMA TLV.
    Tlv,
    /// OMA LwM2M JSON.
    Json,
    /// SenML JSON.
    SenmlJson,
    /// SenML CBOR.
    SenmlCbor,
}

impl Format {
    /// The format of a Content-Format number, if it is an LwM2M data format.
    pub fn from_content_format(number: u16) -> Option<Format> {
        Some(match number {
            TEXT_PLAIN | LEGACY_TEXT => Format::Text,
            OCTET_STREAM | LEGACY_OPAQUE => Format::Opaque,
            LWM2M_TLV | LEGACY_TLV => Format::Tlv,
            LWM2M_JSON | LEGACY_JSON => Format::Json,
            SENML_JSON => Format::SenmlJson,
            SENML_CBOR => Format::SenmlCbor,
            _ => return None,
        })
    }

    /// The registered Content-Format number.
    pub fn content_format(self) -> u16 {
        match self {
            Format::Text => TEXT_PLAIN,
            Format::Opaque => OCTET_STREAM,
            Format::Tlv => LWM2M_TLV,
            Format::Json => LWM2M_JSON,
            Format::SenmlJson => SENML_JSON,
            Format::SenmlCbor => SENML_CBOR,
        }
    }
}

/// Decodes a payload of Content-Format `number` answering a request on `target`.
pub fn decode(number: u16, payload: &[u8], target: &Path, types: &dyn TypeLookup) -> Result<Vec<Record>, FormatError> {
    let format = Format::from_content_format(number).ok_or(FormatError::Unsupported(number))?;
    let records: Vec<Record> = match format {
        Format::Text => vec![text::decode_text(payload, target, types)?.into()],
        Format::Opaque => vec![text::decode_opaque(payload, target)?.into()],
        Format::Tlv => tlv::decode_items(payload, target, types)?
            .into_iter()
            .map(Record::from)
            .collect(),
        Format::Json => json::decode(payload, types)?,
        Format::SenmlJson => senml::decode_json(payload, types)?,
        Format::SenmlCbor => senml::decode_cbor(payload, types)?,
    };
    for record in &records {
        if !record.path.starts_with(target) {
            return Err(FormatError::OutsideTarget {
                target: *target,
                found: record.path,
            });
        }
    }
    Ok(records)
}

/// Encodes `items` in Content-Format `number` as the payload of a write or create on
/// `target`. Plain text and opaque take exactly one item, at `target`.
pub fn encode(number: u16, target: &Path, items: &[Item]) -> Result<Vec<u8>, FormatError> {
    let format = Format::from_content_format(number).ok_or(FormatError::Unsupported(number))?;
    let single = || match items {
        [item] if item.path == *target => Ok(item),
        [item] => Err(FormatError::OutsideTarget {
            target: *target,
            found: item.path,
        }),
        [] => Err(FormatError::Target {
            target: *target,
            what: "a single-value format needs exactly one value",
        }),
        [_, second, ..] => Err(FormatError::Duplicate(second.path)),
    };
    let records = || items.iter().cloned().map(Record::from).collect::<Vec<_>>();
    match format {
        Format::Text => text::encode_text(single()?),
        Format::Opaque => text::encode_opaque(single()?),
        Format::Tlv => tlv::encode_items(target, items),
        Format::Json => json::encode(Some(target), &records()),
        Format::SenmlJson => senml::encode_json(Some(target), &records()),
        Format::SenmlCbor => senml::encode_cbor(Some(target), &records()),
    }
}
