//! Content-Format numbers (RFC 7252 §12.3 and the CoAP Content-Formats registry) that the
//! gateways meet, and their media types.

/// `text/plain; charset=utf-8`.
pub const TEXT_PLAIN: u16 = 0;
/// `application/link-format` (RFC 6690).
pub const LINK_FORMAT: u16 = 40;
/// `application/xml`.
pub const XML: u16 = 41;
/// `application/octet-stream`.
pub const OCTET_STREAM: u16 = 42;
/// `application/exi`.
pub const EXI: u16 = 47;
/// `application/json`.
pub const JSON: u16 = 50;
/// `application/cbor`.
pub const CBOR: u16 = 60;
/// `application/senml+json` (RFC 8428).
pub const SENML_JSON: u16 = 110;
/// `application/senml+cbor` (RFC 8428).
pub const SENML_CBOR: u16 = 112;
/// `application/vnd.oma.lwm2m+tlv`.
pub const LWM2M_TLV: u16 = 11542;
/// `application/vnd.oma.lwm2m+json`.
pub const LWM2M_JSON: u16 = 11543;

/// The media type of a known Content-Format number. EMQX treats any other number as
/// `application/octet-stream` (gateway-semantics §2.2); callers that want that write
/// `media_type(n).unwrap_or("application/octet-stream")`.
pub fn media_type(format: u16) -> Option<&'static str> {
    Some(match format {
        TEXT_PLAIN => "text/plain",
        LINK_FORMAT => "application/link-format",
        XML => "application/xml",
        OCTET_STREAM => "application/octet-stream",
        EXI => "application/exi",
        JSON => "application/json",
        CBOR => "application/cbor",
        SENML_JSON => "application/senml+json",
        SENML_CBOR => "application/senml+cbor",
        LWM2M_TLV => "application/vnd.oma.lwm2m+tlv",
        LWM2M_JSON => "application/vnd.oma.lwm2m+json",
        _ => return None,
    })
}
