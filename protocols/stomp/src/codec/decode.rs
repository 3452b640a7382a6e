//! Decoding: one frame (or one run of heart-beat EOLs) from the front of a buffer.

use bytes::{Bytes, BytesMut};

use super::Limits;
use crate::error::DecodeError;
use crate::frame::{Command, Frame, Version};

/// The longest command (`UNSUBSCRIBE`, `DISCONNECT`) plus CRLF: a longer first line cannot
/// be a command, so it is refused without waiting for its end.
const MAX_COMMAND_LINE: usize = 13;

/// Decodes one frame from the front of `src`, consuming it. `Ok(None)` leaves `src` untouched.
pub(super) fn decode(src: &mut BytesMut, limits: &Limits, version: Version) -> Result<Option<Frame>, DecodeError> {
    // Heart-beats: every EOL before a command, taken in one go. [STOMP 1.2 §Heart-beating]
    let eols = leading_eols(src)?;
    if eols > 0 {
        let _ = src.split_to(eols);
        return Ok(Some(Frame::heart_beat()));
    }
    if src.is_empty() {
        return Ok(None);
    }

    let Some(command_end) = find_eol(src, 0, MAX_COMMAND_LINE) else {
        if src.len() >= MAX_COMMAND_LINE {
            return Err(unknown_command(&src[..MAX_COMMAND_LINE.min(src.len())]));
        }
        return Ok(None);
    };
    let name = strip_cr(&src[..command_end]);
    let command = Command::parse(name).ok_or_else(|| unknown_command(name))?;
    let escaped = version >= Version::V1_1 && !command.is_unescaped();

    let mut pos = command_end + 1;
    let mut headers = Vec::new();
    let mut lines = 0usize;
    let mut content_length: Option<usize> = None;
    // Escaping at most doubles a header, and the colon and CRLF add three bytes: a longer line
    // is over the limit whatever it holds.
    let max_line = limits.max_header_length.saturating_mul(2).saturating_add(3);
    loop {
        if pos >= src.len() {
            return Ok(None);
        }
        if src[pos] == b'\n' {
            pos += 1;
            break;
        }
        if src[pos] == b'\r' {
            match src.get(pos + 1) {
                None => return Ok(None),
                Some(b'\n') => {
                    pos += 2;
                    break;
                }
                Some(_) => return Err(malformed(command, lines + 1, "bare CR")),
            }
        }
        lines += 1;
        // One line more than the limit may be the `content-length` (framing, not a header: a
        // frame we encode with `max_headers` headers and a body must decode); the check below
        // makes sure it was.
        if lines > limits.max_headers + 1 {
            return Err(DecodeError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let Some(end) = find_eol(src, pos, max_line) else {
            if src.len() - pos >= max_line {
                return Err(too_long(&src[pos..], limits.max_header_length));
            }
            return Ok(None);
        };
        let line = strip_cr(&src[pos..end]);
        pos = end + 1;
        if line.contains(&b'\r') {
            return Err(malformed(command, lines, "bare CR"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(malformed(command, lines, "no ':' between name and value"));
        };
        if colon == 0 {
            return Err(malformed(command, lines, "empty header name"));
        }
        let name = text(&line[..colon], escaped, command, lines, version)?;
        let value = text(&line[colon + 1..], escaped, command, lines, version)?;
        if name.len() + value.len() > limits.max_header_length {
            return Err(too_long(name.as_bytes(), limits.max_header_length));
        }
        let framing = name == "content-length" && content_length.is_none();
        if lines - usize::from(content_length.is_some() || framing) > limits.max_headers {
            return Err(DecodeError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        if name == "content-length" {
            // The first one counts; later ones are dropped with it. [STOMP 1.2 §Repeated
            // Header Entries]
            if framing {
                let length = parse_length(&value)?;
                if length > limits.max_body_length {
                    return Err(DecodeError::BodyTooLong {
                        max: limits.max_body_length,
                    });
                }
                content_length = Some(length);
            }
            continue;
        }
        headers.push((name, value));
    }

    let body_start = pos;
    let body_end = match content_length {
        Some(length) => {
            let nul = body_start + length;
            match src.get(nul) {
                None => return Ok(None),
                Some(0) => nul,
                Some(_) => return Err(DecodeError::MissingNul(command.as_str())),
            }
        }
        None => {
            let window = &src[body_start..];
            let limit = limits.max_body_length.saturating_add(1).min(window.len());
            match window[..limit].iter().position(|&b| b == 0) {
                Some(offset) => body_start + offset,
                None if window.len() > limits.max_body_length => {
                    return Err(DecodeError::BodyTooLong {
                        max: limits.max_body_length,
                    });
                }
                None => return Ok(None),
            }
        }
    };
    let mut whole: Bytes = src.split_to(body_end + 1).freeze();
    let body = whole.split_off(body_start).slice(..body_end - body_start);
    Ok(Some(Frame { command, headers, body }))
}

/// Bytes of EOLs (`\n` or `\r\n`) at the front of `src`; an error for a CR that is not
/// followed by LF. A trailing lone CR is left for the next call.
fn leading_eols(src: &[u8]) -> Result<usize, DecodeError> {
    let mut i = 0;
    loop {
        match src.get(i) {
            Some(b'\n') => i += 1,
            Some(b'\r') => match src.get(i + 1) {
                Some(b'\n') => i += 2,
                None => return Ok(i),
                Some(_) => return Err(DecodeError::BadLineEnding),
            },
            _ => return Ok(i),
        }
    }
}

/// The index of the first `\n` in `src[from..]` within `max` bytes.
fn find_eol(src: &[u8], from: usize, max: usize) -> Option<usize> {
    let window = &src[from..];
    let window = &window[..max.min(window.len())];
    window.iter().position(|&b| b == b'\n').map(|i| from + i)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn unknown_command(name: &[u8]) -> DecodeError {
    DecodeError::UnknownCommand(String::from_utf8_lossy(name).into_owned())
}

fn malformed(command: Command, line: usize, why: &'static str) -> DecodeError {
    DecodeError::MalformedHeader {
        command: command.as_str(),
        line,
        why,
    }
}

fn too_long(line: &[u8], max: usize) -> DecodeError {
    let name = line.split(|&b| b == b':').next().unwrap_or_default();
    let name = &name[..name.len().min(64)];
    DecodeError::HeaderTooLong {
        name: String::from_utf8_lossy(name).into_owned(),
        max,
    }
}

/// A header name or value as text, unescaped when the frame is escaped.
fn text(raw: &[u8], escaped: bool, command: Command, line: usize, version: Version) -> Result<String, DecodeError> {
    let not_utf8 = || DecodeError::NotUtf8 {
        command: command.as_str(),
        line,
    };
    if !escaped || !raw.contains(&b'\\') {
        return String::from_utf8(raw.to_vec()).map_err(|_| not_utf8());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escape = bytes.next().copied();
        out.push(match escape {
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'\\') => b'\\',
            Some(b'r') if version >= Version::V1_2 => b'\r',
            // [STOMP 1.2 §Value Encoding] undefined escapes are a fatal protocol error.
            other => {
                return Err(DecodeError::BadEscape {
                    command: command.as_str(),
                    line,
                    escape: other.map_or_else(|| "end".to_owned(), |c| String::from_utf8_lossy(&[c]).into_owned()),
                    version: version.as_str(),
                });
            }
        });
    }
    String::from_utf8(out).map_err(|_| not_utf8())
}

fn parse_length(value: &str) -> Result<usize, DecodeError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::BadContentLength(value.chars().take(32).collect()));
    }
    value
        .parse()
        .map_err(|_| DecodeError::BadContentLength(value.to_owned()))
}
