//! CoAP options (RFC 7252 §3.1, §5.4, §5.10; RFC 7641 Observe; RFC 7959 Block1/Block2/Size2;
//! RFC 7967 No-Response): the option numbers, what the registry says about each, and
//! [`Options`], the ordered list a message carries, with typed accessors.
//!
//! The list stores raw values (slices of the datagram when decoded), so that a message
//! re-encodes byte for byte and an option the gateway does not know survives untouched. The typed
//! accessors interpret them; [`Options::sanitized`] drops what a recipient must ignore.

use std::fmt;

use bytes::Bytes;

use crate::block::Block;
use crate::message::Message;

/// Option numbers (RFC 7252 §12.2 and the documents that registered the rest).
pub mod number {
    /// If-Match (RFC 7252 §5.10.8.1): opaque 0..8, repeatable.
    pub const IF_MATCH: u16 = 1;
    /// Uri-Host (§5.10.1): string 1..255.
    pub const URI_HOST: u16 = 3;
    /// ETag (§5.10.6): opaque 1..8, repeatable in requests.
    pub const ETAG: u16 = 4;
    /// If-None-Match (§5.10.8.2): empty.
    pub const IF_NONE_MATCH: u16 = 5;
    /// Observe (RFC 7641 §2): uint 0..3.
    pub const OBSERVE: u16 = 6;
    /// Uri-Port (§5.10.1): uint 0..2.
    pub const URI_PORT: u16 = 7;
    /// Location-Path (§5.10.7): string 0..255, repeatable.
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path (§5.10.1): string 0..255, repeatable.
    pub const URI_PATH: u16 = 11;
    /// Content-Format (§5.10.3): uint 0..2.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age (§5.10.5): uint 0..4, default 60 s.
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query (§5.10.1): string 0..255, repeatable.
    pub const URI_QUERY: u16 = 15;
    /// Accept (§5.10.4): uint 0..2.
    pub const ACCEPT: u16 = 17;
    /// Location-Query (§5.10.7): string 0..255, repeatable.
    pub const LOCATION_QUERY: u16 = 20;
    /// Block2 (RFC 7959 §2.1): uint 0..3.
    pub const BLOCK2: u16 = 23;
    /// Block1 (RFC 7959 §2.1): uint 0..3.
    pub const BLOCK1: u16 = 27;
    /// Size2 (RFC 7959 §4): uint 0..4.
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri (§5.10.2): string 1..1034.
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme (§5.10.2): string 1..255.
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1 (§5.10.9): uint 0..4.
    pub const SIZE1: u16 = 60;
    /// No-Response (RFC 7967 §2): uint 0..1.
    pub const NO_RESPONSE: u16 = 258;
}

/// Odd option numbers are critical: a recipient that does not know one must not ignore it
/// (RFC 7252 §5.4.1, §5.4.6).
pub const fn is_critical(number: u16) -> bool {
    number & 1 == 1
}

/// Options with bit 1 set are unsafe to forward for a proxy that does not know them (§5.4.2).
pub const fn is_unsafe(number: u16) -> bool {
    number & 2 == 2
}

/// A safe-to-forward option whose bits 1..4 are `1110` is not part of the cache key (§5.4.6).
pub const fn is_no_cache_key(number: u16) -> bool {
    number & 0x1e == 0x1c
}

/// How an option's value is encoded (RFC 7252 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Zero bytes.
    Empty,
    /// Any bytes.
    Opaque,
    /// A big-endian unsigned integer; minimal length when sent, leading zeros accepted.
    Uint,
    /// UTF-8 text.
    String,
}

/// What the registry says about one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// The option number.
    pub number: u16,
    /// Its registered name.
    pub name: &'static str,
    /// The value format.
    pub format: Format,
    /// The shortest value allowed.
    pub min_len: usize,
    /// The longest value allowed.
    pub max_len: usize,
    /// May occur more than once (RFC 7252 §5.4.5).
    pub repeatable: bool,
}

impl Definition {
    /// Critical (odd number).
    pub const fn is_critical(&self) -> bool {
        is_critical(self.number)
    }

    /// A value length within the table (RFC 7252 §5.4.3).
    pub const fn accepts_len(&self, len: usize) -> bool {
        self.min_len <= len && len <= self.max_len
    }
}

const fn def(number: u16, name: &'static str, format: Format, min: usize, max: usize, rep: bool) -> Definition {
    Definition {
        number,
        name,
        format,
        min_len: min,
        max_len: max,
        repeatable: rep,
    }
}

/// Every option this crate knows, by number (RFC 7252 Table 4, RFC 7641 §2, RFC 7959 §2.1 and
/// §4, RFC 7967 §2).
pub static DEFINITIONS: [Definition; 20] = [
    def(number::IF_MATCH, "If-Match", Format::Opaque, 0, 8, true),
    def(number::URI_HOST, "Uri-Host", Format::String, 1, 255, false),
    def(number::ETAG, "ETag", Format::Opaque, 1, 8, true),
    def(number::IF_NONE_MATCH, "If-None-Match", Format::Empty, 0, 0, false),
    def(number::OBSERVE, "Observe", Format::Uint, 0, 3, false),
    def(number::URI_PORT, "Uri-Port", Format::Uint, 0, 2, false),
    def(number::LOCATION_PATH, "Location-Path", Format::String, 0, 255, true),
    def(number::URI_PATH, "Uri-Path", Format::String, 0, 255, true),
    def(number::CONTENT_FORMAT, "Content-Format", Format::Uint, 0, 2, false),
    def(number::MAX_AGE, "Max-Age", Format::Uint, 0, 4, false),
    def(number::URI_QUERY, "Uri-Query", Format::String, 0, 255, true),
    def(number::ACCEPT, "Accept", Format::Uint, 0, 2, false),
    def(number::LOCATION_QUERY, "Location-Query", Format::String, 0, 255, true),
    def(number::BLOCK2, "Block2", Format::Uint, 0, 3, false),
    def(number::BLOCK1, "Block1", Format::Uint, 0, 3, false),
    def(number::SIZE2, "Size2", Format::Uint, 0, 4, false),
    def(number::PROXY_URI, "Proxy-Uri", Format::String, 1, 1034, false),
    def(number::PROXY_SCHEME, "Proxy-Scheme", Format::String, 1, 255, false),
    def(number::SIZE1, "Size1", Format::Uint, 0, 4, false),
    def(number::NO_RESPONSE, "No-Response", Format::Uint, 0, 1, false),
];

/// The definition of option `number`, if this crate knows it.
pub fn definition(number: u16) -> Option<&'static Definition> {
    DEFINITIONS
        .binary_search_by_key(&number, |d| d.number)
        .ok()
        .map(|i| &DEFINITIONS[i])
}

/// The registered name of option `number`, or "unknown".
pub fn name(number: u16) -> &'static str {
    definition(number).map_or("unknown", |d| d.name)
}

/// A string option whose value is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("option {number} ({}) occurrence {index} is not UTF-8", name(*number))]
pub struct NotUtf8 {
    /// The option number.
    pub number: u16,
    /// Which occurrence of it (0 = the first).
    pub index: usize,
}

/// The options of one message, sorted by number; occurrences of one number keep their order
/// (RFC 7252 §3.1: options are delta-encoded, so wire order is number order). The setters keep
/// the order, so a list built here always encodes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(u16, Bytes)>,
}

/// One-byte values for [`uint_value`], so that the common small integers (content formats,
/// block numbers, observe sequence numbers below 256) are sent without an allocation.
static BYTE_VALUES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

/// The minimal uint encoding of `value` (RFC 7252 §3.2): 0 is the empty value.
pub fn uint_value(value: u32) -> Bytes {
    match value {
        0 => Bytes::new(),
        1..=255 => Bytes::from_static(&BYTE_VALUES[value as usize..=value as usize]),
        _ => {
            let be = value.to_be_bytes();
            let skip = (value.leading_zeros() / 8) as usize;
            Bytes::copy_from_slice(&be[skip..])
        }
    }
}

/// A uint value of at most four bytes (leading zeros allowed), or `None` if it is longer.
pub fn decode_uint(value: &[u8]) -> Option<u32> {
    if value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fn utf8(number: u16, index: usize, value: &Bytes) -> Result<&str, NotUtf8> {
    std::str::from_utf8(value).map_err(|_| NotUtf8 { number, index })
}

impl Options {
    /// No options.
    pub const fn new() -> Options {
        Options { entries: Vec::new() }
    }

    /// From `(number, value)` pairs in any order: they are sorted by number, keeping the order of
    /// equal numbers.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u16, Bytes)>) -> Options {
        let mut entries: Vec<_> = pairs.into_iter().collect();
        entries.sort_by_key(|(number, _)| *number);
        Options { entries }
    }

    /// Appends an option known to sort last, for the decoder.
    pub(crate) fn push_in_order(&mut self, number: u16, value: Bytes) {
        debug_assert!(self.entries.last().is_none_or(|(last, _)| *last <= number));
        self.entries.push((number, value));
    }

    /// How many option instances.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No options at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(number, value)` in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u16, &Bytes)> + '_ {
        self.entries.iter().map(|(number, value)| (*number, value))
    }

    /// The first value of option `number`.
    pub fn get(&self, number: u16) -> Option<&Bytes> {
        self.get_all(number).next()
    }

    /// Every value of option `number`, in order.
    pub fn get_all(&self, number: u16) -> impl Iterator<Item = &Bytes> + '_ {
        let start = self.entries.partition_point(|(n, _)| *n < number);
        self.entries[start..]
            .iter()
            .take_while(move |(n, _)| *n == number)
            .map(|(_, value)| value)
    }

    /// Option `number` occurs at least once.
    pub fn contains(&self, number: u16) -> bool {
        self.get(number).is_some()
    }

    /// Adds an occurrence of option `number` after those already there.
    pub fn push(&mut self, number: u16, value: impl Into<Bytes>) {
        let at = self.entries.partition_point(|(n, _)| *n <= number);
        self.entries.insert(at, (number, value.into()));
    }

    /// Replaces every occurrence of option `number` with one value.
    pub fn set(&mut self, number: u16, value: impl Into<Bytes>) {
        self.remove(number);
        self.push(number, value);
    }

    /// Removes every occurrence of option `number`; returns how many there were.
    pub fn remove(&mut self, number: u16) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| *n != number);
        before - self.entries.len()
    }

    /// The options a recipient acts on (RFC 7252 §5.4.1, §5.4.3, §5.4.5): unknown elective
    /// options, elective options whose length is outside the table, and the second and later
    /// occurrences of a non-repeatable elective option are dropped. Critical ones are kept:
    /// [`crate::validate_request`] rejects those instead. Values are shared, not copied.
    pub fn sanitized(&self) -> Options {
        let mut kept = Vec::with_capacity(self.entries.len());
        let mut previous = None;
        for (number, value) in &self.entries {
            let repeat = previous == Some(*number);
            previous = Some(*number);
            if is_critical(*number) {
                kept.push((*number, value.clone()));
                continue;
            }
            let Some(def) = definition(*number) else { continue };
            // The first occurrence decides, even if its length makes it absent: a later one is
            // still supernumerary (§5.4.5).
            if (repeat && !def.repeatable) || !def.accepts_len(value.len()) {
                continue;
            }
            kept.push((*number, value.clone()));
        }
        Options { entries: kept }
    }

    /// The first value of option `number` if its length is within the table (RFC 7252 §5.4.3: a
    /// value of the wrong length counts as absent). Unknown options are returned as they are.
    fn get_checked(&self, number: u16) -> Option<&Bytes> {
        let value = self.get(number)?;
        match definition(number) {
            Some(def) if !def.accepts_len(value.len()) => None,
            _ => Some(value),
        }
    }

    /// The first value of a uint option, `None` if absent, longer than four bytes, or outside
    /// the table's lengths for a known option.
    pub fn get_uint(&self, number: u16) -> Option<u32> {
        decode_uint(self.get_checked(number)?)
    }

    /// Sets a uint option to `value` in its minimal encoding (0 is the empty value).
    pub fn set_uint(&mut self, number: u16, value: u32) {
        self.set(number, uint_value(value));
    }

    fn strings(&self, number: u16) -> impl Iterator<Item = Result<&str, NotUtf8>> + '_ {
        self.get_all(number)
            .enumerate()
            .map(move |(index, value)| utf8(number, index, value))
    }

    fn string(&self, number: u16) -> Result<Option<&str>, NotUtf8> {
        self.get_checked(number).map(|v| utf8(number, 0, v)).transpose()
    }

    /// The Uri-Path segments in order (RFC 7252 §5.10.1); each must be UTF-8.
    pub fn uri_path(&self) -> impl Iterator<Item = Result<&str, NotUtf8>> + '_ {
        self.strings(number::URI_PATH)
    }

    /// The Uri-Query entries in order, undecoded (`key=value` by convention).
    pub fn uri_query(&self) -> impl Iterator<Item = Result<&str, NotUtf8>> + '_ {
        self.strings(number::URI_QUERY)
    }

    /// The Location-Path segments (RFC 7252 §5.10.7), e.g. an LwM2M registration's `rd/<id>`.
    pub fn location_path(&self) -> impl Iterator<Item = Result<&str, NotUtf8>> + '_ {
        self.strings(number::LOCATION_PATH)
    }

    /// The Location-Query entries.
    pub fn location_query(&self) -> impl Iterator<Item = Result<&str, NotUtf8>> + '_ {
        self.strings(number::LOCATION_QUERY)
    }

    /// `key=value` pairs of the Uri-Query options, split at the first `=`. Entries without `=`
    /// and entries that are not UTF-8 are skipped. EMQX keeps only entries with exactly one `=`
    /// (gateway-semantics §2.2); we keep `a=b=c` as `("a", "b=c")` so that a base64 password
    /// with padding works. Duplicates are all yielded in order; EMQX lets the last one win.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.uri_query().filter_map(|entry| entry.ok()?.split_once('='))
    }

    /// Uri-Host, if present, of a valid length, and UTF-8.
    pub fn uri_host(&self) -> Result<Option<&str>, NotUtf8> {
        self.string(number::URI_HOST)
    }

    /// Uri-Port.
    pub fn uri_port(&self) -> Option<u16> {
        self.get_uint(number::URI_PORT).map(|v| v as u16)
    }

    /// Proxy-Uri.
    pub fn proxy_uri(&self) -> Result<Option<&str>, NotUtf8> {
        self.string(number::PROXY_URI)
    }

    /// Proxy-Scheme.
    pub fn proxy_scheme(&self) -> Result<Option<&str>, NotUtf8> {
        self.string(number::PROXY_SCHEME)
    }

    /// Content-Format (see [`crate::content_format`]).
    pub fn content_format(&self) -> Option<u16> {
        self.get_uint(number::CONTENT_FORMAT).map(|v| v as u16)
    }

    /// Accept.
    pub fn accept(&self) -> Option<u16> {
        self.get_uint(number::ACCEPT).map(|v| v as u16)
    }

    /// Observe (RFC 7641): in a request 0 registers and 1 deregisters; in a notification, a
    /// 24-bit sequence number.
    pub fn observe(&self) -> Option<u32> {
        self.get_uint(number::OBSERVE)
    }

    /// Max-Age in seconds, if present (absent means 60 s, RFC 7252 §5.10.5).
    pub fn max_age(&self) -> Option<u32> {
        self.get_uint(number::MAX_AGE)
    }

    /// Size1: the request body's total size, or in a 4.13 the largest the server accepts.
    pub fn size1(&self) -> Option<u32> {
        self.get_uint(number::SIZE1)
    }

    /// Size2: the response body's total size (RFC 7959 §4).
    pub fn size2(&self) -> Option<u32> {
        self.get_uint(number::SIZE2)
    }

    /// Block1 (RFC 7959 §2.1), `None` if absent, too long or with the reserved SZX 7.
    pub fn block1(&self) -> Option<Block> {
        Block::from_value(self.get_checked(number::BLOCK1)?).ok()
    }

    /// Block2, as [`Options::block1`].
    pub fn block2(&self) -> Option<Block> {
        Block::from_value(self.get_checked(number::BLOCK2)?).ok()
    }

    /// The first ETag (a response carries one).
    pub fn etag(&self) -> Option<&Bytes> {
        self.get_checked(number::ETAG)
    }

    /// Every If-Match value (an empty one matches any representation, RFC 7252 §5.10.8.1).
    pub fn if_match(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.get_all(number::IF_MATCH)
    }

    /// If-None-Match is present.
    pub fn if_none_match(&self) -> bool {
        self.contains(number::IF_NONE_MATCH)
    }

    /// Adds a Uri-Path segment after those already there.
    pub fn push_uri_path(&mut self, segment: &str) {
        self.push(number::URI_PATH, Bytes::copy_from_slice(segment.as_bytes()));
    }

    /// Adds a Uri-Query entry after those already there.
    pub fn push_uri_query(&mut self, entry: &str) {
        self.push(number::URI_QUERY, Bytes::copy_from_slice(entry.as_bytes()));
    }

    /// Adds a Location-Path segment after those already there.
    pub fn push_location_path(&mut self, segment: &str) {
        self.push(number::LOCATION_PATH, Bytes::copy_from_slice(segment.as_bytes()));
    }

    /// Adds a Location-Query entry after those already there.
    pub fn push_location_query(&mut self, entry: &str) {
        self.push(number::LOCATION_QUERY, Bytes::copy_from_slice(entry.as_bytes()));
    }

    /// Sets Uri-Host.
    pub fn set_uri_host(&mut self, host: &str) {
        self.set(number::URI_HOST, Bytes::copy_from_slice(host.as_bytes()));
    }

    /// Sets Uri-Port.
    pub fn set_uri_port(&mut self, port: u16) {
        self.set_uint(number::URI_PORT, u32::from(port));
    }

    /// Sets Proxy-Uri.
    pub fn set_proxy_uri(&mut self, uri: &str) {
        self.set(number::PROXY_URI, Bytes::copy_from_slice(uri.as_bytes()));
    }

    /// Sets Content-Format.
    pub fn set_content_format(&mut self, format: u16) {
        self.set_uint(number::CONTENT_FORMAT, u32::from(format));
    }

    /// Sets Accept.
    pub fn set_accept(&mut self, format: u16) {
        self.set_uint(number::ACCEPT, u32::from(format));
    }

    /// Sets Observe to `value` modulo 2^24: notification sequence numbers wrap (RFC 7641 §4.4).
    pub fn set_observe(&mut self, value: u32) {
        self.set_uint(number::OBSERVE, value & crate::observe::MAX_SEQUENCE);
    }

    /// Sets Max-Age in seconds.
    pub fn set_max_age(&mut self, seconds: u32) {
        self.set_uint(number::MAX_AGE, seconds);
    }

    /// Sets Size1.
    pub fn set_size1(&mut self, size: u32) {
        self.set_uint(number::SIZE1, size);
    }

    /// Sets Size2.
    pub fn set_size2(&mut self, size: u32) {
        self.set_uint(number::SIZE2, size);
    }

    /// Sets Block1.
    pub fn set_block1(&mut self, block: Block) {
        self.set_uint(number::BLOCK1, block.to_uint());
    }

    /// Sets Block2.
    pub fn set_block2(&mut self, block: Block) {
        self.set_uint(number::BLOCK2, block.to_uint());
    }

    /// Sets the ETag (1..8 bytes; others would make the option count as absent at the peer).
    pub fn set_etag(&mut self, etag: &[u8]) {
        self.set(number::ETAG, Bytes::copy_from_slice(etag));
    }

    /// Adds an If-Match value.
    pub fn push_if_match(&mut self, etag: &[u8]) {
        self.push(number::IF_MATCH, Bytes::copy_from_slice(etag));
    }

    /// Sets If-None-Match.
    pub fn set_if_none_match(&mut self) {
        self.set(number::IF_NONE_MATCH, Bytes::new());
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (number, value) in &self.entries {
            list.entry(&format_args!("{}({number})={value:?}", name(*number)));
        }
        list.finish()
    }
}

/// The `key=value` pairs of a message's Uri-Query options; see [`Options::query_pairs`].
pub fn query_pairs(message: &Message) -> impl Iterator<Item = (&str, &str)> + '_ {
    message.options.query_pairs()
}
