//! The error every content-format decoder and encoder returns.

use crate::path::{Path, PathError};
use crate::tlv::TlvError;
use crate::value::ValueError;

/// Why a payload could not be decoded in, or values encoded to, a content format. Each
/// variant says what and where: a byte offset, a JSON line and column, an entry index
/// (counted from 0), or the path concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// The TLV structure is malformed.
    #[error("TLV: {0}")]
    Tlv(#[from] TlvError),
    /// A value does not fit its resource type.
    #[error("{path}: {source}")]
    Value {
        /// Where.
        path: Path,
        /// What.
        source: ValueError,
    },
    /// No definition for the object, so the payload cannot be typed (EMQX answers
    /// `4.00 bad_request` for the same case).
    #[error("object {0} has no definition in the registry")]
    UnknownObject(u16),
    /// The object's definition has no such resource.
    #[error("object {object} has no resource {resource} in its definition")]
    UnknownResource {
        /// The object id.
        object: u16,
        /// The resource id.
        resource: u16,
    },
    /// A value for an executable resource (type None).
    #[error("{0} is an executable resource and carries no value")]
    Executable(Path),
    /// The request path does not suit the format or the payload's shape.
    #[error("{what}; the request path is {target}")]
    Target {
        /// The request path.
        target: Path,
        /// What the format or payload needs.
        what: &'static str,
    },
    /// A path in the payload is not the request path or below it.
    #[error("{found} is not under the request path {target}")]
    OutsideTarget {
        /// The request path.
        target: Path,
        /// The payload's path.
        found: Path,
    },
    /// A path that carries a value is not a resource or resource instance path.
    #[error("{0} is not a resource or resource instance path")]
    NotAResource(Path),
    /// The same path twice, or a resource given both as a value and as instances.
    #[error("{0} is given more than once")]
    Duplicate(Path),
    /// The payload is not valid JSON, or not the JSON shape of the format.
    #[error("{format}: {reason}")]
    Json {
        /// `"LwM2M JSON"` or `"SenML JSON"`.
        format: &'static str,
        /// What, with the line and column serde_json reports, or the entry index.
        reason: String,
    },
    /// The payload is not valid CBOR, or not the CBOR shape of SenML.
    #[error("SenML CBOR at byte {offset}: {reason}")]
    Cbor {
        /// The byte at which the fault was found.
        offset: usize,
        /// What.
        reason: String,
    },
    /// A SenML or LwM2M JSON entry whose fields are wrong.
    #[error("{format} entry {index}: {reason}")]
    Entry {
        /// The format.
        format: &'static str,
        /// The entry, counted from 0.
        index: usize,
        /// What.
        reason: String,
    },
    /// A SenML or LwM2M JSON entry whose resolved name is not an LwM2M path.
    #[error("{format} entry {index}: name {name:?} is not an LwM2M path: {source}")]
    Name {
        /// The format.
        format: &'static str,
        /// The entry, counted from 0.
        index: usize,
        /// The resolved name (cut at 64 characters).
        name: String,
        /// Why.
        source: PathError,
    },
    /// A content format this crate has no codec for.
    #[error("content format {0} is not one this crate decodes")]
    Unsupported(u16),
}
