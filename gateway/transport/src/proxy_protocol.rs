//! The PROXY protocol (HAProxy, versions 1 and 2): the header a load balancer sends before the
//! client's bytes, so that the broker learns the client's real address instead of the balancer's.
//!
//! A listener with `proxy_protocol = true` trusts whatever the first bytes of a connection say
//! about addresses, so this parser is strict: anything that is not exactly a v1 line or a v2
//! block is an error, and the listener closes the connection. It is also careful with time and
//! memory, because the bytes come from the network before any authentication:
//! - it never asks for more than the spec's maximum (107 bytes for v1, 16 + 65 535 for v2);
//! - it rejects garbage as soon as the bytes seen so far cannot start a valid header — an MQTT
//!   CONNECT (first byte `0x10`) is refused on its first byte, not after a timeout;
//! - [`read_proxy_header`] bounds the whole exchange by `proxy_protocol_timeout` (EMQX's default
//!   is 3 s), so a silent or trickling peer cannot hold the connection open.
//!
//! The parser is sans-I/O ([`parse`] over a byte slice, `Incomplete` until the header is whole),
//! which keeps it fuzzable (`fuzz/fuzz_targets/proxy_protocol.rs`) and lets the async helper read
//! in whatever chunks the socket gives. Reading in chunks may read past the header; those bytes
//! belong to the client's protocol and come back to the caller, who wraps the stream in
//! [`Prefixed`] so that the protocol codec sees them first.
//!
//! What the header means (spec §2.1, §2.2): `LOCAL` (v2: a health check from the balancer
//! itself) and `UNKNOWN` (v1) carry no addresses, so the connection's real addresses stay; so do
//! v2 `AF_UNIX` and `AF_UNSPEC` addresses, which a socket address cannot hold. For a `PROXY`
//! command the v2 TLVs are parsed and bounded: ALPN, authority (the TLS SNI the client sent),
//! unique id, network namespace, and SSL with its sub-TLVs (version, client-certificate CN,
//! cipher, algorithms); a CRC32C TLV, when present, is verified; NOOP and unknown TLVs are
//! skipped. A known TLV that appears twice is an error: which copy to believe is ambiguous.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt> (cited as "spec §x").

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

mod read;
#[cfg(test)]
use tlv::crc32c;
#[cfg(test)]
mod tests;

pub use read::{Prefixed, read_proxy_header};

/// Longest v1 header, CRLF included (spec §2.1).
pub const V1_MAX_LEN: usize = 107;
/// Fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;
/// Longest v2 header.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;
/// The v2 signature (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

const V1_PREFIX: &[u8] = b"PROXY ";
const EXPECTED_START: &str = "\"PROXY \" (v1) or the v2 signature";

mod tlv;

/// Which version of the protocol the header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text line.
    V1,
    /// Binary block.
    V2,
}

/// v2 command (v1 headers are always `Proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The balancer's own connection (health check): use the real addresses.
    Local,
    /// A relayed client connection.
    Proxy,
}

/// Address family the header declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Unknown or unspecified (v1 `UNKNOWN`, v2 `AF_UNSPEC`, and every `LOCAL` header).
    Unspec,
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
    /// Unix socket paths (no [`SocketAddr`]; the real addresses stay).
    Unix,
}

/// Transport the header declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Unspecified (v1 `UNKNOWN`, v2 `UNSPEC`, every `LOCAL` header).
    Unspec,
    /// TCP (v1 `TCP4`/`TCP6`, v2 `STREAM`).
    Stream,
    /// UDP (v2 `DGRAM`).
    Datagram,
}

/// The v2 `PP2_TYPE_SSL` TLV: how the client reached the balancer over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslInfo {
    /// `PP2_CLIENT_*` bit field.
    pub client: u8,
    /// Zero when the client presented a certificate that verified.
    pub verify: u32,
    /// TLS version, e.g. `TLSv1.3` (`PP2_SUBTYPE_SSL_VERSION`).
    pub version: Option<String>,
    /// Client certificate's Common Name (`PP2_SUBTYPE_SSL_CN`).
    pub cn: Option<String>,
    /// Cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256` (`PP2_SUBTYPE_SSL_CIPHER`).
    pub cipher: Option<String>,
    /// Certificate signature algorithm (`PP2_SUBTYPE_SSL_SIG_ALG`).
    pub sig_alg: Option<String>,
    /// Certificate key algorithm (`PP2_SUBTYPE_SSL_KEY_ALG`).
    pub key_alg: Option<String>,
}

impl SslInfo {
    /// `PP2_CLIENT_SSL`: the client connected over TLS.
    pub fn client_ssl(&self) -> bool {
        self.client & 0x01 != 0
    }

    /// `PP2_CLIENT_CERT_CONN`: the client sent a certificate on this connection.
    pub fn client_cert_conn(&self) -> bool {
        self.client & 0x02 != 0
    }

    /// `PP2_CLIENT_CERT_SESS`: the client sent a certificate at least once in this TLS session.
    pub fn client_cert_sess(&self) -> bool {
        self.client & 0x04 != 0
    }

    /// The client sent a certificate and it verified.
    pub fn cert_verified(&self) -> bool {
        self.client_cert_conn() && self.verify == 0
    }
}

/// The v2 TLVs Portico understands. Unknown types (and NOOP) are skipped and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// `PP2_TYPE_ALPN`: the negotiated application protocol.
    pub alpn: Option<Vec<u8>>,
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI).
    pub authority: Option<String>,
    /// `PP2_TYPE_CRC32C`: the checksum, present only when it verified.
    pub crc32c: Option<u32>,
    /// `PP2_TYPE_UNIQUE_ID`: the balancer's id for this connection (at most 128 bytes).
    pub unique_id: Option<Vec<u8>>,
    /// `PP2_TYPE_SSL`.
    pub ssl: Option<SslInfo>,
    /// `PP2_TYPE_NETNS`: the network namespace the connection came from.
    pub netns: Option<String>,
    /// How many TLVs were skipped (NOOP and types not listed above).
    pub skipped: usize,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// v1 or v2.
    pub version: Version,
    /// `Local` or `Proxy`.
    pub command: Command,
    /// Declared family.
    pub family: Family,
    /// Declared transport.
    pub transport: Transport,
    /// The client's address, when the header carries one the connection should use.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (on the balancer).
    pub destination: Option<SocketAddr>,
    /// v2 TLVs (always empty for v1 and for `LOCAL`).
    pub tlvs: Tlvs,
}

/// Result of [`parse`].
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per connection and matched at once; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are a valid start; more are needed. Never returned once the buffer holds
    /// the longest possible header.
    Incomplete,
    /// A whole header, taking the first `consumed` bytes.
    Complete {
        /// The header.
        header: ProxyHeader,
        /// Its length in bytes; the rest of the buffer is the client's protocol.
        consumed: usize,
    },
}

/// Which field of a v1 line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// `TCP4`, `TCP6` or `UNKNOWN`.
    Protocol,
    /// Source address.
    SourceAddress,
    /// Destination address.
    DestinationAddress,
    /// Source port.
    SourcePort,
    /// Destination port.
    DestinationPort,
}

impl V1Field {
    const ORDER: [V1Field; 5] = [
        V1Field::Protocol,
        V1Field::SourceAddress,
        V1Field::DestinationAddress,
        V1Field::SourcePort,
        V1Field::DestinationPort,
    ];

    fn name(self) -> &'static str {
        match self {
            V1Field::Protocol => "protocol",
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        }
    }
}

impl std::fmt::Display for V1Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a header was refused, or why reading it failed. Offsets count from the connection's
/// first byte.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The bytes do not start a PROXY header (e.g. the client spoke MQTT directly).
    #[error("not a PROXY protocol header: byte {offset} is {byte:#04x}, expected {EXPECTED_START}")]
    NotProxyProtocol {
        /// Offset of the first byte that cannot belong to a header.
        offset: usize,
        /// That byte.
        byte: u8,
    },
    /// A v1 line without CRLF within 107 bytes.
    #[error("PROXY v1 header: no CRLF within the first {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line contains a byte other than printable ASCII and the final CRLF.
    #[error("PROXY v1 header: unexpected byte {byte:#04x} at byte {offset}")]
    V1BadByte {
        /// Where.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A v1 protocol other than `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY v1 header: unknown protocol {found:?} at byte {offset}; expected TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol {
        /// Where the field starts.
        offset: usize,
        /// The field (lossy text).
        found: String,
    },
    /// A v1 field that is not what its position requires.
    #[error("PROXY v1 header: invalid {field} {found:?} at byte {offset}{}", if *.wrong_family { " (wrong address family for the protocol)" } else { "" })]
    V1BadField {
        /// Which field.
        field: V1Field,
        /// Where it starts.
        offset: usize,
        /// The field (lossy text).
        found: String,
        /// The field is an address of the other family (e.g. IPv6 after `TCP4`).
        wrong_family: bool,
    },
    /// A v1 line that ends before all its fields.
    #[error("PROXY v1 header: missing {field} (line ends at byte {offset})")]
    V1MissingField {
        /// The first missing field.
        field: V1Field,
        /// Where the line ends.
        offset: usize,
    },
    /// A v1 line with more than five fields.
    #[error("PROXY v1 header: unexpected data after the destination port at byte {offset}")]
    V1TrailingData {
        /// Where the extra data starts.
        offset: usize,
    },
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header: unsupported version {version} at byte 12")]
    V2Version {
        /// The high nibble of byte 12.
        version: u8,
    },
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("PROXY v2 header: unknown command {command:#x} at byte 12")]
    V2Command {
        /// The low nibble of byte 12.
        command: u8,
    },
    /// A v2 address family other than UNSPEC, INET, INET6 or UNIX.
    #[error("PROXY v2 header: unknown address family {family:#x} at byte 13")]
    V2Family {
        /// The high nibble of byte 13.
        family: u8,
    },
    /// A v2 transport other than UNSPEC, STREAM or DGRAM.
    #[error("PROXY v2 header: unknown transport {transport:#x} at byte 13")]
    V2Transport {
        /// The low nibble of byte 13.
        transport: u8,
    },
    /// A v2 length too small for the declared family's addresses.
    #[error("PROXY v2 header: length {length} at byte 14 is too short for {family:?} addresses ({needed} bytes)")]
    V2AddressTooShort {
        /// Declared family.
        family: Family,
        /// Bytes its addresses take.
        needed: usize,
        /// Declared length.
        length: usize,
    },
    /// A TLV (or SSL sub-TLV) that runs past the end of its enclosing block.
    #[error("PROXY v2 header: TLV at byte {offset} runs past the end of the header")]
    V2TruncatedTlv {
        /// Where the TLV starts.
        offset: usize,
    },
    /// A TLV whose value is malformed.
    #[error("PROXY v2 header: TLV type {kind:#04x} at byte {offset}: {reason}")]
    V2BadTlv {
        /// TLV type.
        kind: u8,
        /// Where the TLV starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A known TLV that appears twice.
    #[error("PROXY v2 header: TLV type {kind:#04x} repeated at byte {offset}")]
    V2DuplicateTlv {
        /// TLV type.
        kind: u8,
        /// Where the second copy starts.
        offset: usize,
    },
    /// The CRC32C TLV does not match the header.
    #[error("PROXY v2 header: CRC32C mismatch (header says {expected:#010x}, computed {computed:#010x})")]
    V2Checksum {
        /// From the TLV.
        expected: u32,
        /// Over the received header.
        computed: u32,
    },
    /// The peer closed the connection before the header was complete.
    #[error("connection closed after {received} bytes, before the PROXY header was complete")]
    Eof {
        /// Bytes received.
        received: usize,
    },
    /// The header did not arrive within `proxy_protocol_timeout`.
    #[error("no complete PROXY header within {after:?} ({received} bytes received)")]
    Timeout {
        /// The timeout.
        after: Duration,
        /// Bytes received by then.
        received: usize,
    },
    /// Reading the socket failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Parses a PROXY header at the start of `buf`: v1 if it starts with `P`, v2 if it starts with
/// `\r`, an error otherwise.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(&byte) => Err(ProxyError::NotProxyProtocol { offset: 0, byte }),
    }
}

/// Checks that `buf` starts like `expected` (as far as it goes).
fn check_prefix(buf: &[u8], expected: &[u8]) -> Result<(), ProxyError> {
    match buf.iter().zip(expected).position(|(a, b)| a != b) {
        Some(offset) => Err(ProxyError::NotProxyProtocol {
            offset,
            byte: buf[offset],
        }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// v1

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    check_prefix(buf, V1_PREFIX)?;
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let lf = window.iter().position(|&b| b == b'\n');
    // Every byte before the CRLF must be printable ASCII; a CR only right before the LF.
    let line_end = lf.unwrap_or(window.len());
    for (offset, &byte) in window[..line_end].iter().enumerate() {
        let last = offset + 1 == line_end;
        let ok = (0x20..0x7f).contains(&byte) || (byte == b'\r' && last);
        if !ok {
            return Err(ProxyError::V1BadByte { offset, byte });
        }
    }
    let Some(lf) = lf else {
        if window.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        // Validate the fields that are already complete, so garbage fails early.
        if window.len() > V1_PREFIX.len() {
            let partial = window.strip_suffix(b"\r").unwrap_or(window);
            v1_fields(partial, false)?;
        }
        return Ok(Parsed::Incomplete);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProxyError::V1BadByte {
            offset: lf,
            byte: b'\n',
        });
    }
    let header = v1_fields(&buf[..lf - 1], true)?.ok_or(ProxyError::V1MissingField {
        field: V1Field::Protocol,
        offset: lf - 1,
    })?;
    Ok(Parsed::Complete {
        header,
        consumed: lf + 1,
    })
}

/// Parses the fields of `line` (`PROXY ` included, CRLF excluded). With `complete == false` the
/// line is a prefix: only fields followed by a space are checked (the last may still grow), and
/// `Ok(None)` means "valid so far".
fn v1_fields(line: &[u8], complete: bool) -> Result<Option<ProxyHeader>, ProxyError> {
    let mut offset = V1_PREFIX.len();
    let body = &line[offset..];
    let mut pieces = body.split(|&b| b == b' ').peekable();
    let mut protocol = None;
    let mut addrs: [Option<IpAddr>; 2] = [None, None];
    let mut ports = [0u16; 2];
    let mut index = 0;
    while let Some(piece) = pieces.next() {
        let terminated = complete || pieces.peek().is_some();
        let field = match V1Field::ORDER.get(index) {
            Some(&field) => field,
            None if protocol == Some(Family::Unspec) => break,
            None => return Err(ProxyError::V1TrailingData { offset }),
        };
        match field {
            V1Field::Protocol => {
                let family = match piece {
                    b"TCP4" => Family::Inet,
                    b"TCP6" => Family::Inet6,
                    b"UNKNOWN" => Family::Unspec,
                    partial
                        if !terminated
                            && [&b"TCP4"[..], b"TCP6", b"UNKNOWN"]
                                .iter()
                                .any(|p| p.starts_with(partial)) =>
                    {
                        return Ok(None);
                    }
                    other => {
                        return Err(ProxyError::V1UnknownProtocol {
                            offset,
                            found: String::from_utf8_lossy(other).into_owned(),
                        });
                    }
                };
                protocol = Some(family);
                // spec §2.1: with UNKNOWN the rest of the line is ignored.
                if family == Family::Unspec {
                    break;
                }
            }
            _ if !terminated => return Ok(None),
            V1Field::SourceAddress | V1Field::DestinationAddress => {
                let family = protocol.unwrap_or(Family::Unspec);
                addrs[index - 1] = Some(v1_address(piece, family, field, offset)?);
            }
            V1Field::SourcePort | V1Field::DestinationPort => {
                ports[index - 3] = v1_port(piece, field, offset)?;
            }
        }
        offset += piece.len() + 1;
        index += 1;
    }
    if !complete {
        return Ok(None);
    }
    let family = match protocol {
        Some(family) => family,
        None => return Ok(None),
    };
    if family == Family::Unspec {
        return Ok(Some(ProxyHeader {
            version: Version::V1,
            command: Command::Proxy,
            family,
            transport: Transport::Unspec,
            source: None,
            destination: None,
            tlvs: Tlvs::default(),
        }));
    }
    if let Some(&field) = V1Field::ORDER.get(index) {
        return Err(ProxyError::V1MissingField {
            field,
            offset: line.len(),
        });
    }
    let (Some(src), Some(dst)) = (addrs[0], addrs[1]) else {
        // Unreachable: five fields were parsed; still an error rather than a panic.
        return Err(ProxyError::V1MissingField {
            field: V1Field::SourceAddress,
            offset: line.len(),
        });
    };
    Ok(Some(ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        family,
        transport: Transport::Stream,
        source: Some(SocketAddr::new(src, ports[0])),
        destination: Some(SocketAddr::new(dst, ports[1])),
        tlvs: Tlvs::default(),
    }))
}

fn v1_address(piece: &[u8], family: Family, field: V1Field, offset: usize) -> Result<IpAddr, ProxyError> {
    let bad = |wrong_family| ProxyError::V1BadField {
        field,
        offset,
        found: String::from_utf8_lossy(piece).into_owned(),
        wrong_family,
    };
    // Bytes were checked to be ASCII, so this is valid UTF-8.
    let text = std::str::from_utf8(piece).map_err(|_| bad(false))?;
    match family {
        Family::Inet => match text.parse::<Ipv4Addr>() {
            Ok(v4) => Ok(IpAddr::V4(v4)),
            Err(_) => Err(bad(text.parse::<Ipv6Addr>().is_ok())),
        },
        _ => match text.parse::<Ipv6Addr>() {
            Ok(v6) => Ok(IpAddr::V6(v6)),
            Err(_) => Err(bad(text.parse::<Ipv4Addr>().is_ok())),
        },
    }
}

/// A decimal port, 0..=65535, without sign or leading zeros.
fn v1_port(piece: &[u8], field: V1Field, offset: usize) -> Result<u16, ProxyError> {
    let ok = !piece.is_empty()
        && piece.len() <= 5
        && piece.iter().all(u8::is_ascii_digit)
        && (piece[0] != b'0' || piece.len() == 1);
    let value = ok
        .then(|| piece.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')))
        .and_then(|v| u16::try_from(v).ok());
    value.ok_or_else(|| ProxyError::V1BadField {
        field,
        offset,
        found: String::from_utf8_lossy(piece).into_owned(),
        wrong_family: false,
    })
}

// ---------------------------------------------------------------------------------------------
// v2

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    check_prefix(buf, &V2_SIGNATURE)?;
    if buf.len() <= 12 {
        return Ok(Parsed::Incomplete);
    }
    let version = buf[12] >> 4;
    if version != 2 {
        return Err(ProxyError::V2Version { version });
    }
    let command = match buf[12] & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        command => return Err(ProxyError::V2Command { command }),
    };
    if buf.len() <= 13 {
        return Ok(Parsed::Incomplete);
    }
    // spec §2.2: with LOCAL the family and addresses are ignored; with PROXY they must be known.
    let (family, transport) = match command {
        Command::Local => (Family::Unspec, Transport::Unspec),
        Command::Proxy => v2_family(buf[13])?,
    };
    if buf.len() < V2_FIXED_LEN {
        return Ok(Parsed::Incomplete);
    }
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let addr_len = match family {
        Family::Unspec => 0,
        Family::Inet => 12,
        Family::Inet6 => 36,
        Family::Unix => 216,
    };
    if length < addr_len {
        return Err(ProxyError::V2AddressTooShort {
            family,
            needed: addr_len,
            length,
        });
    }
    let total = V2_FIXED_LEN + length;
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let header_bytes = &buf[..total];
    let block = &header_bytes[V2_FIXED_LEN..];
    let (source, destination) = v2_addresses(family, block);
    let tlvs = match command {
        Command::Local => Tlvs::default(),
        Command::Proxy => tlv::parse_tlvs(header_bytes, V2_FIXED_LEN + addr_len)?,
    };
    Ok(Parsed::Complete {
        header: ProxyHeader {
            version: Version::V2,
            command,
            family,
            transport,
            source,
            destination,
            tlvs,
        },
        consumed: total,
    })
}

fn v2_family(byte: u8) -> Result<(Family, Transport), ProxyError> {
    let family = match byte >> 4 {
        0 => Family::Unspec,
        1 => Family::Inet,
        2 => Family::Inet6,
        3 => Family::Unix,
        family => return Err(ProxyError::V2Family { family }),
    };
    let transport = match byte & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Datagram,
        transport => return Err(ProxyError::V2Transport { transport }),
    };
    Ok((family, transport))
}

/// Addresses from the start of the block (its length was checked against the family).
fn v2_addresses(family: Family, block: &[u8]) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match family {
        Family::Inet => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]));
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        Family::Inet6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        Family::Unspec | Family::Unix => (None, None),
    }
}
