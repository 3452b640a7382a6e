//! v2 TLVs (spec §2.2.1–2.2.8): walking them within their bounds, decoding the known types,
//! verifying CRC32C.

use super::{ProxyError, SslInfo, Tlvs};

pub(super) const ALPN: u8 = 0x01;
pub(super) const AUTHORITY: u8 = 0x02;
pub(super) const CRC32C: u8 = 0x03;
pub(super) const NOOP: u8 = 0x04;
pub(super) const UNIQUE_ID: u8 = 0x05;
pub(super) const SSL: u8 = 0x20;
pub(super) const SSL_VERSION: u8 = 0x21;
pub(super) const SSL_CN: u8 = 0x22;
pub(super) const SSL_CIPHER: u8 = 0x23;
pub(super) const SSL_SIG_ALG: u8 = 0x24;
pub(super) const SSL_KEY_ALG: u8 = 0x25;
pub(super) const NETNS: u8 = 0x30;

/// Longest unique id (spec §2.2.5).
const UNIQUE_ID_MAX: usize = 128;

/// Iterates `(offset, kind, value)` over TLVs in `data[start..end]`; offsets are absolute.
fn tlv_walk<'a>(
    data: &'a [u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = Result<(usize, u8, &'a [u8]), ProxyError>> + 'a {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let offset = at;
        if end - at < 3 {
            at = end;
            return Some(Err(ProxyError::V2TruncatedTlv { offset }));
        }
        let kind = data[at];
        let len = usize::from(u16::from_be_bytes([data[at + 1], data[at + 2]]));
        let value_start = at + 3;
        if end - value_start < len {
            at = end;
            return Some(Err(ProxyError::V2TruncatedTlv { offset }));
        }
        at = value_start + len;
        Some(Ok((offset, kind, &data[value_start..at])))
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, kind: u8, offset: usize) -> Result<(), ProxyError> {
    if slot.is_some() {
        return Err(ProxyError::V2DuplicateTlv { kind, offset });
    }
    *slot = Some(value);
    Ok(())
}

fn utf8(value: &[u8], kind: u8, offset: usize) -> Result<String, ProxyError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| ProxyError::V2BadTlv {
            kind,
            offset,
            reason: "value is not valid UTF-8",
        })
}

/// TLVs of a PROXY header: `header` is the whole header, TLVs start at `start`.
pub(super) fn parse_tlvs(header: &[u8], start: usize) -> Result<Tlvs, ProxyError> {
    let mut tlvs = Tlvs::default();
    for item in tlv_walk(header, start, header.len()) {
        let (offset, kind, value) = item?;
        match kind {
            ALPN => set_once(&mut tlvs.alpn, value.to_vec(), kind, offset)?,
            AUTHORITY => set_once(&mut tlvs.authority, utf8(value, kind, offset)?, kind, offset)?,
            CRC32C => {
                let Ok(expected) = <[u8; 4]>::try_from(value).map(u32::from_be_bytes) else {
                    return Err(ProxyError::V2BadTlv {
                        kind,
                        offset,
                        reason: "CRC32C value must be 4 bytes",
                    });
                };
                // spec §2.2.3: the checksum covers the whole header with this field zeroed.
                let at = offset + 3;
                let computed = crc32c(&[&header[..at], &[0; 4], &header[at + 4..]]);
                if computed != expected {
                    return Err(ProxyError::V2Checksum { expected, computed });
                }
                set_once(&mut tlvs.crc32c, expected, kind, offset)?;
            }
            UNIQUE_ID => {
                if value.len() > UNIQUE_ID_MAX {
                    return Err(ProxyError::V2BadTlv {
                        kind,
                        offset,
                        reason: "unique id longer than 128 bytes",
                    });
                }
                set_once(&mut tlvs.unique_id, value.to_vec(), kind, offset)?;
            }
            SSL => {
                let ssl = v2_ssl(header, offset, value.len())?;
                set_once(&mut tlvs.ssl, ssl, kind, offset)?;
            }
            NETNS => set_once(&mut tlvs.netns, utf8(value, kind, offset)?, kind, offset)?,
            // spec §2.2.4: NOOP carries padding only.
            NOOP => tlvs.skipped += 1,
            // Unknown, custom (0xE0–0xEF) and experimental (0xF0) types.
            _ => tlvs.skipped += 1,
        }
    }
    Ok(tlvs)
}

/// The SSL TLV starting at `offset` with a value of `len` bytes: client, verify, sub-TLVs.
fn v2_ssl(header: &[u8], offset: usize, len: usize) -> Result<SslInfo, ProxyError> {
    let value_start = offset + 3;
    if len < 5 {
        return Err(ProxyError::V2BadTlv {
            kind: SSL,
            offset,
            reason: "SSL value shorter than its 5-byte client/verify prefix",
        });
    }
    let value = &header[value_start..value_start + len];
    let mut ssl = SslInfo {
        client: value[0],
        verify: u32::from_be_bytes([value[1], value[2], value[3], value[4]]),
        ..SslInfo::default()
    };
    for item in tlv_walk(header, value_start + 5, value_start + len) {
        let (offset, kind, value) = item?;
        let slot = match kind {
            SSL_VERSION => &mut ssl.version,
            SSL_CN => &mut ssl.cn,
            SSL_CIPHER => &mut ssl.cipher,
            SSL_SIG_ALG => &mut ssl.sig_alg,
            SSL_KEY_ALG => &mut ssl.key_alg,
            _ => continue,
        };
        set_once(slot, utf8(value, kind, offset)?, kind, offset)?;
    }
    Ok(ssl)
}

/// CRC-32C (Castagnoli) over the concatenation of `parts`. Bitwise: it runs once per header that
/// carries the TLV, over at most 64 KB.
pub(super) fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}
