//! CoRE link format (RFC 6690) for LwM2M registration payloads and discover responses.
//!
//! `</1/0>,</3/0>;ver=1.1,</3303/0>;rt="oma.lwm2m sensor";obs` — a comma-separated list of
//! `<target>` links, each with `;`-separated attributes that are a bare name or
//! `name=token` or `name="quoted string"` (RFC 6690 §2; `\` escapes inside quotes).
//! Whitespace around `,` and `;` is skipped (devices send `</1/0>, </2/0>`); nothing else the
//! grammar does not allow is: an unterminated `<` or quote, an empty target, an attribute
//! without a name or with `=` and nothing after it, a stray character. Each error names the
//! byte where it was found. Parsing is bounded ([`Limits`]: input length and number of links).
//!
//! [`ObjectLinks`] is the registration reading EMQX makes (gateway-semantics §3.2): the link
//! whose `rt` names `oma.lwm2m` gives the alternate path (default `/`) and leaves the list;
//! the other targets lose that prefix. EMQX crashes on a malformed attribute (no reply); here
//! it is a [`LinkError`] for the caller to answer with 4.00.

use std::fmt;
use std::ops::Range;

use crate::path::Path;

/// The resource type that marks an LwM2M client's alternate path (LwM2M Core §6.2.1).
pub const OMA_LWM2M_RT: &str = "oma.lwm2m";

/// How much a parse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest input, in bytes.
    pub max_len: usize,
    /// The most links.
    pub max_links: usize,
}

impl Default for Limits {
    /// 64 KiB and 4096 links: a registration of every object instance a constrained device
    /// can hold fits many times over.
    fn default() -> Limits {
        Limits {
            max_len: 64 * 1024,
            max_links: 4096,
        }
    }
}

/// What is wrong with a link-format text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkErrorKind {
    /// Longer than [`Limits::max_len`].
    #[error("the link format is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// The input's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More links than [`Limits::max_links`].
    #[error("more than {0} links")]
    TooManyLinks(usize),
    /// The payload is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// A link does not start with `<`.
    #[error("expected '<' to start a link, found {0}")]
    ExpectedLink(String),
    /// No `>` closes the target.
    #[error("the target is not closed by '>'")]
    UnclosedTarget,
    /// `<>`.
    #[error("empty target")]
    EmptyTarget,
    /// A control character or space in the target.
    #[error("a control character or space in the target")]
    BadTargetChar,
    /// An attribute with no name (`;=5`, `;;`, a trailing `;`).
    #[error("an attribute without a name")]
    EmptyAttributeName,
    /// A character that cannot be in an attribute name.
    #[error("{0:?} cannot be in an attribute name")]
    BadNameChar(char),
    /// `name=` with no value.
    #[error("attribute {0:?} has '=' and no value")]
    EmptyAttributeValue(String),
    /// A quoted value with no closing quote.
    #[error("a quoted value is not closed")]
    UnclosedQuote,
    /// Something other than `,` or `;` after a link or attribute.
    #[error("expected ',' or ';', found {0}")]
    ExpectedSeparator(String),
    /// A trailing `,`, or `,,`.
    #[error("an empty link")]
    EmptyLink,
    /// Two links carry `rt="oma.lwm2m"`.
    #[error("a second link with rt=\"oma.lwm2m\"")]
    SecondAlternatePath,
    /// The `rt="oma.lwm2m"` link's target is not an absolute path.
    #[error("the oma.lwm2m link target {0:?} is not an absolute path")]
    BadAlternatePath(String),
}

/// Why a link-format text was refused: what, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("link format: {kind} (at byte {offset})")]
pub struct LinkError {
    /// What.
    pub kind: LinkErrorKind,
    /// Where, in bytes from the start of the text.
    pub offset: usize,
}

/// One attribute of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The name, as written (RFC 6690 leaves case to each attribute; LwM2M's are lower case).
    pub name: String,
    /// The value, unquoted and unescaped; `None` for a bare name.
    pub value: Option<String>,
    /// Whether the value was quoted.
    pub quoted: bool,
}

/// One link: the target between `<` and `>`, its attributes, and where it was in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target, as written.
    pub target: String,
    /// The attributes, in order.
    pub attributes: Vec<Attribute>,
    /// The link's bytes in the parsed text (from `<` to the end of its last attribute), so
    /// that a caller can pass the link on as the device wrote it (EMQX's discover content).
    pub span: Range<usize>,
}

impl Link {
    /// A link with no attributes.
    pub fn new(target: impl Into<String>) -> Link {
        Link {
            target: target.into(),
            attributes: Vec::new(),
            span: 0..0,
        }
    }

    /// The first attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The value of the first attribute called `name`, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(|a| a.value.as_deref())
    }

    /// Whether the link's `rt` lists `oma.lwm2m` (a space-separated list, RFC 6690 §3.1).
    pub fn is_lwm2m_root(&self) -> bool {
        self.attributes
            .iter()
            .filter(|a| a.name == "rt")
            .filter_map(|a| a.value.as_deref())
            .any(|v| v.split_ascii_whitespace().any(|t| t == OMA_LWM2M_RT))
    }

    /// The target as an LwM2M path, if it is one.
    pub fn path(&self) -> Option<Path> {
        Path::parse(&self.target).ok()
    }
}

/// Writes the link in link format: `<target>;name=value;name="quoted"`. A value is quoted if
/// it was, or if it holds a character a token cannot.
impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.target)?;
        for attribute in &self.attributes {
            write!(f, ";{}", attribute.name)?;
            if let Some(value) = &attribute.value {
                if attribute.quoted || value.is_empty() || !value.chars().all(is_ptoken_char) {
                    f.write_str("=\"")?;
                    for c in value.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                } else {
                    write!(f, "={value}")?;
                }
            }
        }
        Ok(())
    }
}

/// Writes links separated by `,`.
pub fn format_links(links: &[Link]) -> String {
    links.iter().map(Link::to_string).collect::<Vec<_>>().join(",")
}

/// RFC 6690 `ptokenchar`.
fn is_ptoken_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(c)
}

/// RFC 5987 `parmname` characters (`attr-char`).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&+-.^_`|~".contains(c)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_space(&mut self) {
        while self.pos < self.text.len() && is_space(self.text.as_bytes()[self.pos]) {
            self.pos += 1;
        }
    }

    fn error(&self, kind: LinkErrorKind) -> LinkError {
        LinkError { kind, offset: self.pos }
    }

    fn found(&self) -> String {
        self.peek().map_or_else(|| "the end".to_owned(), |c| format!("{c:?}"))
    }
}

/// Parses link format with the default [`Limits`].
pub fn parse(text: &str) -> Result<Vec<Link>, LinkError> {
    parse_with(text, &Limits::default())
}

/// Parses link format (module docs). An empty (or all-space) text is no links.
pub fn parse_with(text: &str, limits: &Limits) -> Result<Vec<Link>, LinkError> {
    if text.len() > limits.max_len {
        return Err(LinkError {
            kind: LinkErrorKind::TooLong {
                len: text.len(),
                max: limits.max_len,
            },
            offset: limits.max_len,
        });
    }
    let mut c = Cursor { text, pos: 0 };
    let mut links = Vec::new();
    c.skip_space();
    if c.pos == text.len() {
        return Ok(links);
    }
    loop {
        c.skip_space();
        if links.len() == limits.max_links {
            return Err(c.error(LinkErrorKind::TooManyLinks(limits.max_links)));
        }
        match c.peek() {
            Some('<') => {}
            Some(',') | None => return Err(c.error(LinkErrorKind::EmptyLink)),
            Some(_) => return Err(c.error(LinkErrorKind::ExpectedLink(c.found()))),
        }
        links.push(link(&mut c)?);
        c.skip_space();
        match c.peek() {
            None => return Ok(links),
            Some(',') => c.pos += 1,
            Some(_) => return Err(c.error(LinkErrorKind::ExpectedSeparator(c.found()))),
        }
    }
}

fn link(c: &mut Cursor<'_>) -> Result<Link, LinkError> {
    let start = c.pos;
    c.pos += 1; // '<'
    let close = c.text[c.pos..]
        .find('>')
        .ok_or_else(|| c.error(LinkErrorKind::UnclosedTarget))?;
    let target = &c.text[c.pos..c.pos + close];
    if target.is_empty() {
        return Err(c.error(LinkErrorKind::EmptyTarget));
    }
    if let Some(bad) = target.bytes().position(|b| b <= b' ' || b == 0x7F) {
        return Err(LinkError {
            kind: LinkErrorKind::BadTargetChar,
            offset: c.pos + bad,
        });
    }
    c.pos += close + 1;
    let mut end = c.pos;
    let mut attributes = Vec::new();
    loop {
        c.skip_space();
        if c.peek() != Some(';') {
            break;
        }
        c.pos += 1;
        c.skip_space();
        attributes.push(attribute(c)?);
        end = c.pos;
    }
    Ok(Link {
        target: target.to_owned(),
        attributes,
        span: start..end,
    })
}

fn attribute(c: &mut Cursor<'_>) -> Result<Attribute, LinkError> {
    let start = c.pos;
    while let Some(ch) = c.peek() {
        if !is_name_char(ch) {
            break;
        }
        c.pos += ch.len_utf8();
    }
    let name = &c.text[start..c.pos];
    if name.is_empty() {
        return Err(match c.peek() {
            None | Some('=' | ';' | ',') => c.error(LinkErrorKind::EmptyAttributeName),
            Some(ch) if ch.is_ascii() && is_space(ch as u8) => c.error(LinkErrorKind::EmptyAttributeName),
            Some(ch) => c.error(LinkErrorKind::BadNameChar(ch)),
        });
    }
    match c.peek() {
        Some('=') => c.pos += 1,
        None | Some(';' | ',') => {
            return Ok(Attribute {
                name: name.to_owned(),
                value: None,
                quoted: false,
            });
        }
        Some(ch) if ch.is_ascii() && is_space(ch as u8) => {
            return Ok(Attribute {
                name: name.to_owned(),
                value: None,
                quoted: false,
            });
        }
        Some(ch) => return Err(c.error(LinkErrorKind::BadNameChar(ch))),
    }
    if c.peek() == Some('"') {
        c.pos += 1;
        let mut value = String::new();
        loop {
            match c.peek() {
                None => {
                    return Err(LinkError {
                        kind: LinkErrorKind::UnclosedQuote,
                        offset: c.pos,
                    });
                }
                Some('"') => {
                    c.pos += 1;
                    break;
                }
                Some('\\') => {
                    c.pos += 1;
                    let escaped = c.peek().ok_or_else(|| c.error(LinkErrorKind::UnclosedQuote))?;
                    value.push(escaped);
                    c.pos += escaped.len_utf8();
                }
                Some(ch) => {
                    value.push(ch);
                    c.pos += ch.len_utf8();
                }
            }
        }
        return Ok(Attribute {
            name: name.to_owned(),
            value: Some(value),
            quoted: true,
        });
    }
    let value_start = c.pos;
    while let Some(ch) = c.peek() {
        if !is_ptoken_char(ch) {
            break;
        }
        c.pos += ch.len_utf8();
    }
    if c.pos == value_start {
        return Err(c.error(LinkErrorKind::EmptyAttributeValue(name.to_owned())));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value: Some(c.text[value_start..c.pos].to_owned()),
        quoted: false,
    })
}

/// A registration payload as EMQX reads it (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLinks {
    /// The alternate path: the `rt="oma.lwm2m"` link's target, `/` by default. Never ends in
    /// `/` unless it is `/`.
    pub alternate_path: String,
    /// The other links, in order, each target with the alternate path taken off.
    pub links: Vec<Link>,
}

impl ObjectLinks {
    /// Parses a registration or update payload with the default [`Limits`].
    pub fn parse(payload: &[u8]) -> Result<ObjectLinks, LinkError> {
        ObjectLinks::parse_with(payload, &Limits::default())
    }

    /// Parses a registration or update payload.
    pub fn parse_with(payload: &[u8], limits: &Limits) -> Result<ObjectLinks, LinkError> {
        let text = std::str::from_utf8(payload).map_err(|e| LinkError {
            kind: LinkErrorKind::NotUtf8,
            offset: e.valid_up_to(),
        })?;
        let mut alternate: Option<String> = None;
        let mut links = Vec::new();
        for link in parse_with(text, limits)? {
            if !link.is_lwm2m_root() {
                links.push(link);
                continue;
            }
            if alternate.is_some() {
                return Err(LinkError {
                    kind: LinkErrorKind::SecondAlternatePath,
                    offset: link.span.start,
                });
            }
            if !link.target.starts_with('/') {
                return Err(LinkError {
                    kind: LinkErrorKind::BadAlternatePath(link.target.clone()),
                    offset: link.span.start + 1,
                });
            }
            let trimmed = link.target.trim_end_matches('/');
            alternate = Some(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            });
        }
        let alternate_path = alternate.unwrap_or_else(|| "/".to_owned());
        if alternate_path != "/" {
            for link in &mut links {
                if let Some(rest) = link.target.strip_prefix(alternate_path.as_str())
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    link.target = if rest.is_empty() {
                        "/".to_owned()
                    } else {
                        rest.to_owned()
                    };
                }
            }
        }
        Ok(ObjectLinks { alternate_path, links })
    }

    /// The targets, in order: EMQX's `objectList` (`["/1/0", "/3/0"]`).
    pub fn object_list(&self) -> Vec<String> {
        self.links.iter().map(|l| l.target.clone()).collect()
    }

    /// The targets that are LwM2M paths, in order.
    pub fn paths(&self) -> Vec<Path> {
        self.links.iter().filter_map(Link::path).collect()
    }
}
