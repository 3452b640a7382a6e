//! `clientinfo_override` templates: literal text with `${Packet.headers.<name>}` placeholders,
//! EMQX's syntax, filled in from the CONNECT frame's headers.

use crate::frame::Frame;

/// The only placeholder family a STOMP CONNECT can fill.
const HEADER_PREFIX: &str = "Packet.headers.";

/// A parsed template. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Header(String),
}

impl Template {
    /// Parses `text`, or says what is wrong with it and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "unclosed placeholder at byte {} of {text:?}",
                    text.len() - rest.len() + start
                ));
            };
            let name = &after[..end];
            match name.strip_prefix(HEADER_PREFIX) {
                Some(header) if !header.is_empty() => parts.push(Part::Header(header.to_owned())),
                _ => {
                    return Err(format!(
                        "unknown placeholder ${{{name}}} in {text:?}: a STOMP template can use ${{Packet.headers.<name>}} only"
                    ));
                }
            }
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// `${Packet.headers.<name>}`: the value of one header.
    pub fn header(name: &str) -> Template {
        Template {
            parts: vec![Part::Header(name.to_owned())],
        }
    }

    /// A template that always renders to nothing.
    pub fn empty() -> Template {
        Template { parts: Vec::new() }
    }

    /// True when the template has no parts (it renders to nothing).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The template filled in from `frame`'s headers (the first of repeated ones; a missing
    /// header is empty), or `None` when the result is empty.
    pub fn render(&self, frame: &Frame) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Header(name) => out.push_str(frame.header(name).unwrap_or_default()),
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Command;

    fn connect() -> Frame {
        Frame::new(Command::Connect)
            .with("login", "alice")
            .with("client-id", "dev-1")
    }

    #[test]
    fn placeholders_are_filled_from_headers_and_text_is_kept() {
        let t = Template::parse("site-a/${Packet.headers.client-id}:${Packet.headers.login}").expect("valid");
        assert_eq!(t.render(&connect()).as_deref(), Some("site-a/dev-1:alice"));
        assert_eq!(
            Template::header("login"),
            Template::parse("${Packet.headers.login}").expect("valid")
        );
        let plain = Template::parse("fixed").expect("valid");
        assert_eq!(plain.render(&connect()).as_deref(), Some("fixed"));
    }

    #[test]
    fn a_missing_header_renders_empty_and_an_empty_result_is_none() {
        let t = Template::parse("${Packet.headers.passcode}").expect("valid");
        assert_eq!(t.render(&connect()), None);
        assert_eq!(Template::parse("").expect("valid").render(&connect()), None);
        assert!(Template::parse("").expect("valid").is_empty());
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let unclosed = Template::parse("a${Packet.headers.login").expect_err("refused");
        assert!(unclosed.contains("unclosed placeholder at byte 1"), "{unclosed}");
        let unknown = Template::parse("${ClientInfo.clientid}").expect_err("refused");
        assert!(unknown.contains("${ClientInfo.clientid}"), "{unknown}");
        assert!(Template::parse("${Packet.headers.}").is_err());
    }
}
