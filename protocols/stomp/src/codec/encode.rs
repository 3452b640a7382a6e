//! Encoding: headers escaped for the version, `content-length` written from the body.

use bytes::{BufMut, BytesMut};
use portico_core::channel::EncodeError;

use crate::frame::{Command, Frame, Version};

/// Appends the wire form of `frame` under `version`'s escaping rules. A header that the rules
/// cannot carry (a line break in a 1.0 value, say) is an error rather than a broken frame; the
/// channel leaves such headers out before it gets here ([`Version::can_carry`]).
pub fn encode(frame: &Frame, version: Version, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if frame.command == Command::HeartBeat {
        dst.put_u8(b'\n');
        return Ok(());
    }
    let name = frame.command.as_str();
    let escaped = version >= Version::V1_1 && !frame.command.is_unescaped();
    dst.reserve(name.len() + 1 + frame.headers.len() * 24 + 24 + frame.body.len() + 2);
    dst.put_slice(name.as_bytes());
    dst.put_u8(b'\n');
    for (key, value) in &frame.headers {
        if key == "content-length" {
            continue;
        }
        let carried = if escaped {
            version.can_carry(key, value)
        } else {
            Version::V1_0.can_carry(key, value)
        };
        if !carried {
            return Err(EncodeError {
                frame: name,
                why: "a header holds characters this STOMP version cannot carry",
            });
        }
        put_text(dst, key, escaped, version);
        dst.put_u8(b':');
        put_text(dst, value, escaped, version);
        dst.put_u8(b'\n');
    }
    if !frame.body.is_empty() {
        // Always written: the body may hold NULs. [STOMP 1.2 §Header content-length]
        dst.put_slice(b"content-length:");
        dst.put_slice(frame.body.len().to_string().as_bytes());
        dst.put_u8(b'\n');
    }
    dst.put_u8(b'\n');
    dst.put_slice(&frame.body);
    dst.put_u8(0);
    Ok(())
}

fn put_text(dst: &mut BytesMut, text: &str, escaped: bool, version: Version) {
    if !escaped || !text.contains(['\\', '\n', ':', '\r']) {
        dst.put_slice(text.as_bytes());
        return;
    }
    for b in text.bytes() {
        match b {
            b'\\' => dst.put_slice(b"\\\\"),
            b'\n' => dst.put_slice(b"\\n"),
            b':' => dst.put_slice(b"\\c"),
            b'\r' if version >= Version::V1_2 => dst.put_slice(b"\\r"),
            other => dst.put_u8(other),
        }
    }
}
