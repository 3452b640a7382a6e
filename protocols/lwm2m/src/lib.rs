//! LwM2M for Portico: the data layer and the LwM2M gateway channel.
//!
//! - [`path`]: [`Path`], `/o`, `/o/i`, `/o/i/r`, `/o/i/r/ri`;
//! - [`value`]: [`ResourceType`], [`Value`], [`Item`], [`Record`], and the JSON forms of
//!   EMQX's MQTT side (downlink command values, uplink `{"path","value"}` entries);
//! - [`tlv`]: OMA TLV (11542), structure and typed values;
//! - [`text`]: plain text (0) and opaque (42);
//! - [`json`]: OMA LwM2M JSON (11543);
//! - [`senml`]: SenML JSON (110) and SenML CBOR (112);
//! - [`content`]: one entry point per direction, by Content-Format number;
//! - [`link`]: CoRE link format (RFC 6690) for registration payloads and discover responses;
//! - [`registry`]: the XML object registry ([`Registry`]);
//! - [`fuzzing`]: the properties the fuzz targets check, shared with the tests that replay
//!   their seeds.
//!
//! Every decoder is strict and bounded: malformed input is an error that says what and where,
//! never a panic, and nothing is allocated beyond what the input's own size accounts for.
//! `docs/conformance/lwm2m.md` lists the rules and every difference from EMQX.
//!
//! - [`channel`]: the LwM2M gateway channel on `portico-coap`'s codec and message layer
//!   (registration interface, MQTT commands and replies, observations, queue mode).

pub mod channel;
pub mod content;
pub mod error;
pub mod fuzzing;
pub mod json;
pub mod link;
pub mod path;
pub mod registry;
pub mod senml;
pub mod text;
pub mod tlv;
pub mod value;

pub use error::FormatError;
pub use link::{Link, LinkError, ObjectLinks};
pub use path::{Level, Path, PathError};
pub use registry::{ObjectDef, Operations, Registry, RegistryError, ResourceDef};
pub use value::{Item, Objlnk, Record, ResourceType, TypeLookup, Untyped, Value, ValueError};
