//! LwM2M paths: `/{object}`, `/{object}/{instance}`, `/{object}/{instance}/{resource}` and
//! `/{object}/{instance}/{resource}/{resource instance}` (LwM2M Core §6.1, §7.1).
//!
//! Every id is a 16-bit unsigned integer and 65535 is reserved (LwM2M Core §6.1), at every
//! level. Parsing is strict: a leading `/`, one to four decimal segments, no empty segment (so no trailing `/`),
//! no sign, no leading zero. Display gives the same text back.

use std::fmt;
use std::str::FromStr;

/// The id every level reserves: 65535 (LwM2M Core §6.1). No path segment may use it.
pub const RESERVED_ID: u16 = u16::MAX;

/// How deep a path reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `/o`
    Object,
    /// `/o/i`
    ObjectInstance,
    /// `/o/i/r`
    Resource,
    /// `/o/i/r/ri`
    ResourceInstance,
}

/// An LwM2M path of one to four ids, none of them 65535.
///
/// Ordering is lexicographic by id, so a sorted list of paths lists each object instance's
/// resources together, in id order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    ids: [u16; 4],
    len: u8,
}

/// What is wrong with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathErrorKind {
    /// The text is empty.
    #[error("the path is empty")]
    Empty,
    /// The text does not start with `/`.
    #[error("a path starts with '/'")]
    NoLeadingSlash,
    /// Two slashes in a row, or a slash at the end.
    #[error("empty segment")]
    EmptySegment,
    /// A segment has a character other than a decimal digit.
    #[error("a segment is a decimal number, found {0:?}")]
    NotADigit(char),
    /// A segment of more than one digit starts with 0.
    #[error("leading zero in a segment")]
    LeadingZero,
    /// A segment is larger than 65535.
    #[error("a segment is at most 65534")]
    TooLarge,
    /// A segment is 65535, the reserved id.
    #[error("65535 is a reserved id")]
    Reserved,
    /// More than four segments, or no segment (`/`), or a child of a resource instance.
    #[error("a path has one to four segments")]
    Depth,
}

/// Why a text or a list of ids is not an LwM2M path: what, and at which byte of the text
/// (or which index of the id list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid LwM2M path: {kind} (at {offset})")]
pub struct PathError {
    /// What is wrong.
    pub kind: PathErrorKind,
    /// The byte offset in the text, or the index in the id list.
    pub offset: usize,
}

impl Path {
    /// A path from one to four ids.
    pub fn new(ids: &[u16]) -> Result<Path, PathError> {
        if ids.is_empty() || ids.len() > 4 {
            return Err(PathError {
                kind: PathErrorKind::Depth,
                offset: ids.len().min(4),
            });
        }
        let mut out = [0; 4];
        for (index, &id) in ids.iter().enumerate() {
            if id == RESERVED_ID {
                return Err(PathError {
                    kind: PathErrorKind::Reserved,
                    offset: index,
                });
            }
            out[index] = id;
        }
        Ok(Path {
            ids: out,
            len: ids.len() as u8,
        })
    }

    /// `/object`.
    pub fn object(object: u16) -> Result<Path, PathError> {
        Path::new(&[object])
    }

    /// `/object/instance`.
    pub fn instance(object: u16, instance: u16) -> Result<Path, PathError> {
        Path::new(&[object, instance])
    }

    /// `/object/instance/resource`.
    pub fn resource(object: u16, instance: u16, resource: u16) -> Result<Path, PathError> {
        Path::new(&[object, instance, resource])
    }

    /// `/object/instance/resource/resource_instance`.
    pub fn resource_instance(object: u16, instance: u16, resource: u16, ri: u16) -> Result<Path, PathError> {
        Path::new(&[object, instance, resource, ri])
    }

    /// The ids, one to four.
    pub fn ids(&self) -> &[u16] {
        &self.ids[..self.len as usize]
    }

    /// The number of ids (1..=4).
    pub fn depth(&self) -> usize {
        self.len as usize
    }

    /// How deep the path reaches.
    pub fn level(&self) -> Level {
        match self.len {
            1 => Level::Object,
            2 => Level::ObjectInstance,
            3 => Level::Resource,
            _ => Level::ResourceInstance,
        }
    }

    /// The object id.
    pub fn object_id(&self) -> u16 {
        self.ids[0]
    }

    /// The object instance id, if the path reaches it.
    pub fn instance_id(&self) -> Option<u16> {
        (self.len >= 2).then_some(self.ids[1])
    }

    /// The resource id, if the path reaches it.
    pub fn resource_id(&self) -> Option<u16> {
        (self.len >= 3).then_some(self.ids[2])
    }

    /// The resource instance id, if the path reaches it.
    pub fn resource_instance_id(&self) -> Option<u16> {
        (self.len >= 4).then_some(self.ids[3])
    }

    /// The path one level deeper.
    pub fn child(&self, id: u16) -> Result<Path, PathError> {
        if self.len == 4 {
            return Err(PathError {
                kind: PathErrorKind::Depth,
                offset: 4,
            });
        }
        let mut ids = self.ids;
        ids[self.len as usize] = id;
        Path::new(&ids[..self.len as usize + 1])
    }

    /// The path one level up, or `None` for an object path.
    pub fn parent(&self) -> Option<Path> {
        (self.len > 1).then(|| Path {
            ids: {
                let mut ids = self.ids;
                ids[self.len as usize - 1] = 0;
                ids
            },
            len: self.len - 1,
        })
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.len >= prefix.len && self.ids[..prefix.len as usize] == prefix.ids[..prefix.len as usize]
    }

    /// The resource path of a resource or resource instance path (`/o/i/r`), `None` above
    /// the resource level.
    pub fn resource_path(&self) -> Option<Path> {
        (self.len >= 3).then(|| Path {
            ids: [self.ids[0], self.ids[1], self.ids[2], 0],
            len: 3,
        })
    }

    /// Parses a path (module docs give the rules).
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let err = |kind, offset| Err(PathError { kind, offset });
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return err(PathErrorKind::Empty, 0);
        }
        if bytes[0] != b'/' {
            return err(PathErrorKind::NoLeadingSlash, 0);
        }
        let mut ids = [0u16; 4];
        let mut len = 0usize;
        let mut pos = 1;
        loop {
            let start = pos;
            if pos >= bytes.len() || bytes[pos] == b'/' {
                // "/" alone has no segment at all; anything else has an empty one here.
                let kind = if len == 0 && bytes.len() == 1 {
                    PathErrorKind::Depth
                } else {
                    PathErrorKind::EmptySegment
                };
                return err(kind, pos);
            }
            if len == 4 {
                return err(PathErrorKind::Depth, start);
            }
            let mut value: u32 = 0;
            while pos < bytes.len() && bytes[pos] != b'/' {
                let b = bytes[pos];
                if !b.is_ascii_digit() {
                    let c = text[pos..].chars().next().unwrap_or('\u{fffd}');
                    return err(PathErrorKind::NotADigit(c), pos);
                }
                if pos > start && bytes[start] == b'0' {
                    return err(PathErrorKind::LeadingZero, start);
                }
                value = value * 10 + u32::from(b - b'0');
                if value > u32::from(u16::MAX) {
                    return err(PathErrorKind::TooLarge, start);
                }
                pos += 1;
            }
            if value == u32::from(RESERVED_ID) {
                return err(PathErrorKind::Reserved, start);
            }
            ids[len] = value as u16;
            len += 1;
            if pos >= bytes.len() {
                break;
            }
            pos += 1; // the '/'
        }
        Ok(Path { ids, len: len as u8 })
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Path, PathError> {
        Path::parse(s)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in self.ids() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn parses_every_depth_and_prints_it_back() {
        for text in [
            "/3",
            "/3/0",
            "/3/0/1",
            "/3/0/6/1",
            "/0/0/0/0",
            "/65534/65534/65534/65534",
        ] {
            let path: Path = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(path.to_string(), text);
        }
        let p = Path::parse("/3303/1/5700").unwrap();
        assert_eq!(p.ids(), &[3303, 1, 5700]);
        assert_eq!(p.level(), Level::Resource);
        assert_eq!(
            (p.object_id(), p.instance_id(), p.resource_id()),
            (3303, Some(1), Some(5700))
        );
        assert_eq!(p.resource_instance_id(), None);
        assert_eq!(p.parent(), Some(Path::parse("/3303/1").unwrap()));
        assert_eq!(p.child(7).unwrap().to_string(), "/3303/1/5700/7");
        assert!(p.starts_with(&Path::object(3303).unwrap()));
        assert!(!p.starts_with(&Path::object(3304).unwrap()));
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn refuses_malformed_paths_with_a_position() {
        let cases = [
            ("", PathErrorKind::Empty, 0),
            ("3/0", PathErrorKind::NoLeadingSlash, 0),
            ("/", PathErrorKind::Depth, 1),
            ("/3/", PathErrorKind::EmptySegment, 3),
            ("/3//1", PathErrorKind::EmptySegment, 3),
            ("/3/x", PathErrorKind::NotADigit('x'), 3),
            ("/3/-1", PathErrorKind::NotADigit('-'), 3),
            ("/3/01", PathErrorKind::LeadingZero, 3),
            ("/65536", PathErrorKind::TooLarge, 1),
            ("/99999999999", PathErrorKind::TooLarge, 1),
            ("/65535", PathErrorKind::Reserved, 1),
            ("/1/2/3/4/5", PathErrorKind::Depth, 9),
            ("/3/0/é", PathErrorKind::NotADigit('é'), 5),
        ];
        for (text, kind, offset) in cases {
            assert_eq!(Path::parse(text), Err(PathError { kind, offset }), "{text:?}");
        }
        assert_eq!(Path::new(&[]).unwrap_err().kind, PathErrorKind::Depth);
        assert_eq!(
            Path::new(&[1, 65535]).unwrap_err(),
            PathError {
                kind: PathErrorKind::Reserved,
                offset: 1
            }
        );
        assert_eq!(
            Path::parse("/1/2/3/4").unwrap().child(5).unwrap_err().kind,
            PathErrorKind::Depth
        );
    }
}
