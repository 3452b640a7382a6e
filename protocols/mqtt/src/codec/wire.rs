//! Wire primitives: the bounded reader used by the decoder and the byte sink used by the encoder
//! (a real buffer, or a counter for `encoded_len`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use portico_core::channel::EncodeError;

use crate::error::DecodeError;

/// Largest value of a Variable Byte Integer (MQTT 5.0 §1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Number of bytes the Variable Byte Integer encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reads a Variable Byte Integer from the front of `src` without consuming it.
/// `Ok(None)`: more bytes needed. `Ok(Some((value, length)))` otherwise.
pub(crate) fn peek_varint(src: &[u8], packet: &'static str) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = src.get(i) else { return Ok(None) };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::malformed(
        packet,
        "Variable Byte Integer longer than four bytes (§1.5.5) [MQTT-1.5.5-1]",
    ))
}

/// A cursor over one packet's body (or a property block); every read is bounds-checked
/// against the Remaining Length and fails as Malformed.
pub(crate) struct Reader {
    buf: Bytes,
    pub(crate) packet: &'static str,
}

const SHORT: &str = "Remaining Length is too short for the packet's fields";

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: &'static str) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::malformed(self.packet, SHORT))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match peek_varint(&self.buf, self.packet)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::malformed(self.packet, SHORT)),
        }
    }

    /// The next `n` bytes, zero-copy.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Everything that is left, zero-copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    /// Binary Data: two-byte length, then bytes (§1.5.6).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (§1.5.4): valid UTF-8 [MQTT-1.5.4-1] without U+0000 [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::malformed(
                self.packet,
                "UTF-8 string contains U+0000 [MQTT-1.5.4-2]",
            ));
        }
        ByteString::try_from(raw)
            .map_err(|_| DecodeError::malformed(self.packet, "UTF-8 string is not valid UTF-8 [MQTT-1.5.4-1]"))
    }

    /// A sub-reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        self.need(n)
            .map_err(|_| DecodeError::malformed(self.packet, "Property Length exceeds the Remaining Length"))?;
        Ok(Reader {
            buf: self.buf.split_to(n),
            packet: self.packet,
        })
    }

    /// Fails if bytes are left after the packet's defined fields.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::malformed(
                self.packet,
                "bytes left after the packet's fields (Remaining Length too long)",
            ))
        }
    }
}

/// Where encoded bytes go: a buffer, or a counter that only measures.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_slice(&mut self, v: &[u8]);

    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }

    fn put_varint(&mut self, mut v: usize) {
        loop {
            let mut byte = (v % 128) as u8;
            v /= 128;
            if v > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if v == 0 {
                break;
            }
        }
    }

    /// Binary Data or the bytes of a UTF-8 string, with its two-byte length.
    fn put_binary(&mut self, frame: &'static str, v: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(v.len()).map_err(|_| EncodeError {
            frame,
            why: "string or binary field over 65,535 bytes",
        })?;
        self.put_u16(len);
        self.put_slice(v);
        Ok(())
    }

    fn put_str(&mut self, frame: &'static str, v: &ByteString) -> Result<(), EncodeError> {
        self.put_binary(frame, v.as_bytes())
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }

    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

/// Counts bytes instead of writing them.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }

    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }

    fn put_varint(&mut self, v: usize) {
        self.0 += varint_len(v);
    }
}
