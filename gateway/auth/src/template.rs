//! EMQX's `${...}` placeholders in backend requests: URLs, headers and bodies of HTTP requests,
//! SQL queries and Redis commands.
//!
//! A template is parsed once, when the configuration is loaded, so an unknown placeholder is a
//! configuration error rather than a silently empty value. Rendering fills each placeholder from
//! the client being checked; an absent value (no user name, no certificate) renders empty, as
//! in EMQX 5. Backends decide how a value is inserted: percent-encoded in a URL, a JSON string
//! in a body, a bound parameter in SQL (never pasted into the query text).

use std::borrow::Cow;
use std::fmt;

use portico_core::auth::{Action, ClientInfo};

/// One placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `${clientid}`
    ClientId,
    /// `${username}`
    Username,
    /// `${password}` (authentication only)
    Password,
    /// `${peerhost}`: the client's IP address.
    PeerHost,
    /// `${peerport}`: the client's port.
    PeerPort,
    /// `${cert_common_name}`: the TLS client certificate's subject CN.
    CertCommonName,
    /// `${cert_subject}`: the TLS client certificate's subject DN.
    CertSubject,
    /// `${proto_name}`: the frontend (`MQTT`, `MQTT-SN`, `CoAP`, ...).
    ProtoName,
    /// `${topic}` (authorization only)
    Topic,
    /// `${action}`: `publish` or `subscribe` (authorization only)
    Action,
}

impl Var {
    /// Every placeholder with its name.
    const ALL: [(&'static str, Var); 10] = [
        ("clientid", Var::ClientId),
        ("username", Var::Username),
        ("password", Var::Password),
        ("peerhost", Var::PeerHost),
        ("peerport", Var::PeerPort),
        ("cert_common_name", Var::CertCommonName),
        ("cert_subject", Var::CertSubject),
        ("proto_name", Var::ProtoName),
        ("topic", Var::Topic),
        ("action", Var::Action),
    ];

    /// The placeholders an authentication request may use.
    pub const AUTHN: &'static [Var] = &[
        Var::ClientId,
        Var::Username,
        Var::Password,
        Var::PeerHost,
        Var::PeerPort,
        Var::CertCommonName,
        Var::CertSubject,
        Var::ProtoName,
    ];

    /// The placeholders an authorization request may use.
    pub const AUTHZ: &'static [Var] = &[
        Var::ClientId,
        Var::Username,
        Var::PeerHost,
        Var::PeerPort,
        Var::CertCommonName,
        Var::CertSubject,
        Var::ProtoName,
        Var::Topic,
        Var::Action,
    ];

    /// The placeholder's name, without `${}`.
    pub fn name(self) -> &'static str {
        Var::ALL.iter().find(|(_, v)| *v == self).map_or("?", |(name, _)| name)
    }

    fn from_name(name: &str) -> Option<Var> {
        Var::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// This placeholder's value for `cx`; empty when the client has none.
    pub fn value<'a>(self, cx: &Context<'a>) -> Cow<'a, str> {
        let client = cx.client;
        match self {
            Var::ClientId => Cow::Borrowed(&client.client_id),
            Var::Username => Cow::Borrowed(client.username.as_deref().unwrap_or("")),
            Var::Password => cx.password.map_or(Cow::Borrowed(""), String::from_utf8_lossy),
            Var::PeerHost => Cow::Owned(client.peer.ip().to_string()),
            Var::PeerPort => Cow::Owned(client.peer.port().to_string()),
            Var::CertCommonName => Cow::Borrowed(
                client
                    .cert
                    .as_ref()
                    .and_then(|c| c.common_name.as_deref())
                    .unwrap_or(""),
            ),
            Var::CertSubject => Cow::Borrowed(client.cert.as_ref().map_or("", |c| c.subject.as_str())),
            Var::ProtoName => Cow::Borrowed(proto_name(client.protocol)),
            Var::Topic => Cow::Borrowed(cx.topic.unwrap_or("")),
            Var::Action => Cow::Borrowed(match cx.action {
                Some(Action::Publish) => "publish",
                Some(Action::Subscribe) => "subscribe",
                None => "",
            }),
        }
    }
}

/// EMQX's protocol names for our frontend names.
fn proto_name(frontend: &str) -> &'static str {
    match frontend {
        "mqtt" => "MQTT",
        "mqttsn" => "MQTT-SN",
        "coap" => "CoAP",
        "lwm2m" => "LwM2M",
        "stomp" => "STOMP",
        _ => "",
    }
}

/// What a template is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The client being checked.
    pub client: &'a ClientInfo,
    /// Its password (authentication).
    pub password: Option<&'a [u8]>,
    /// The topic (authorization).
    pub topic: Option<&'a str>,
    /// The action (authorization).
    pub action: Option<Action>,
}

impl<'a> Context<'a> {
    /// For an authentication request.
    pub fn authn(client: &'a ClientInfo, password: Option<&'a [u8]>) -> Self {
        Context {
            client,
            password,
            topic: None,
            action: None,
        }
    }

    /// For an authorization request.
    pub fn authz(client: &'a ClientInfo, action: Action, topic: &'a str) -> Self {
        Context {
            client,
            password: None,
            topic: Some(topic),
            action: Some(action),
        }
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text kept as written.
    Text(String),
    /// A placeholder.
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${` without `}`.
    #[error("unterminated placeholder at byte {0}")]
    Unterminated(usize),
    /// A name EMQX does not define, or one this kind of request cannot fill.
    #[error("unknown placeholder ${{{name}}}; available here: {available}")]
    Unknown {
        /// The name as written.
        name: String,
        /// The names allowed.
        available: String,
    },
}

impl Template {
    /// Parses `text`, allowing the placeholders in `allowed`.
    pub fn parse(text: &str, allowed: &[Var]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(TemplateError::Unterminated(offset + start))?;
            let name = after[..end].trim();
            let var = Var::from_name(name)
                .filter(|v| allowed.contains(v))
                .ok_or_else(|| TemplateError::Unknown {
                    name: name.to_owned(),
                    available: allowed
                        .iter()
                        .map(|v| format!("${{{}}}", v.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            parts.push(Part::Var(var));
            let consumed = start + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The pieces, for backends that bind values instead of pasting them (SQL).
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True when the template has no placeholder.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text with every placeholder's value passed through `escape` (identity, URL or JSON
    /// encoding, as the destination needs).
    pub fn render(&self, cx: &Context<'_>, escape: impl Fn(&str, &mut String)) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => escape(&var.value(cx), &mut out),
            }
        }
        out
    }

    /// The text with the values inserted as they are.
    pub fn render_plain(&self, cx: &Context<'_>) -> String {
        self.render(cx, |value, out| out.push_str(value))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Var(var) => write!(f, "${{{}}}", var.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn client() -> ClientInfo {
        ClientInfo::new(
            ByteString::from_static("dev-1"),
            Some(ByteString::from_static("alice")),
            "10.0.0.7:4242".parse().expect("address"),
            "mqtt",
        )
    }

    #[test]
    fn fills_placeholders_and_keeps_text() {
        let t = Template::parse(
            "/auth?u=${username}&c=${clientid}&ip=${peerhost}&p=${password}",
            Var::AUTHN,
        )
        .expect("valid");
        let c = client();
        assert_eq!(
            t.render_plain(&Context::authn(&c, Some(b"pw"))),
            "/auth?u=alice&c=dev-1&ip=10.0.0.7&p=pw"
        );
        assert_eq!(
            t.to_string(),
            "/auth?u=${username}&c=${clientid}&ip=${peerhost}&p=${password}"
        );
        let absent = ClientInfo { username: None, ..c };
        assert_eq!(
            Template::parse("${username}|${cert_common_name}", Var::AUTHN)
                .expect("valid")
                .render_plain(&Context::authn(&absent, None)),
            "|"
        );
    }

    #[test]
    fn authorization_placeholders() {
        let t = Template::parse("${action} ${topic} ${proto_name}", Var::AUTHZ).expect("valid");
        let c = client();
        assert_eq!(
            t.render_plain(&Context::authz(&c, Action::Subscribe, "a/b")),
            "subscribe a/b MQTT"
        );
    }

    #[test]
    fn refuses_unknown_and_unterminated_placeholders() {
        assert!(matches!(
            Template::parse("${nope}", Var::AUTHN),
            Err(TemplateError::Unknown { name, .. }) if name == "nope"
        ));
        assert!(
            matches!(
                Template::parse("${topic}", Var::AUTHN),
                Err(TemplateError::Unknown { .. })
            ),
            "no topic when authenticating"
        );
        assert!(
            matches!(
                Template::parse("${password}", Var::AUTHZ),
                Err(TemplateError::Unknown { .. })
            ),
            "no password when authorizing"
        );
        assert_eq!(
            Template::parse("a ${clientid", Var::AUTHN),
            Err(TemplateError::Unterminated(2))
        );
    }

    #[test]
    fn values_go_through_the_escape() {
        let t = Template::parse("u=${username}", Var::AUTHN).expect("valid");
        let c = ClientInfo {
            username: Some(ByteString::from_static("a&b")),
            ..client()
        };
        let rendered = t.render(&Context::authn(&c, None), |v, out| out.push_str(&v.replace('&', "%26")));
        assert_eq!(rendered, "u=a%26b");
    }
}
