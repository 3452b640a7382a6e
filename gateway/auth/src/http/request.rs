//! Building a request from the templates: percent-encoding into the URL and query string, JSON
//! or form bodies, and the checks that refuse a bad `url` or header at start.

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::template::{Context, Part, Template};

/// Appends `value` percent-encoded: everything but RFC 3986's unreserved characters, so a value
/// can never end a query parameter (`&`, `=`), start a fragment (`#`) or change the path.
pub(super) fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// `key=value&...`, both sides percent-encoded (a form body, or a GET query).
pub(super) fn form(fields: &[(String, Template)], cx: &Context<'_>, out: &mut String) {
    for (i, (key, template)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(key, out);
        out.push('=');
        percent_encode(&template.render_plain(cx), out);
    }
}

/// A JSON object of the fields, every value a string.
pub(super) fn json(fields: &[(String, Template)], cx: &Context<'_>) -> Vec<u8> {
    let object: Map<String, Value> = fields
        .iter()
        .map(|(key, template)| (key.clone(), Value::String(template.render_plain(cx))))
        .collect();
    // Serializing a map of strings cannot fail; an empty body would be refused by the server.
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}

/// The URL for `cx`, with `query` appended (GET).
pub(super) fn url(template: &Template, cx: &Context<'_>, query: Option<&str>) -> Result<Url, String> {
    let mut text = template.render(cx, percent_encode);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        // Before a fragment, if the configured URL has one.
        let at = text.find('#').unwrap_or(text.len());
        let joiner = if text[..at].contains('?') { "&" } else { "?" };
        text.insert_str(at, &format!("{joiner}{query}"));
    }
    Url::parse(&text).map_err(|e| e.to_string())
}

/// Refuses a `url` that cannot work whatever the client: not http(s), no host, not a URL.
/// Placeholders are tried with a plain value.
pub fn check_url(template: &Template) -> Result<(), String> {
    let mut text = String::new();
    for part in template.parts() {
        match part {
            Part::Text(t) => text.push_str(t),
            Part::Var(_) => text.push('x'),
        }
    }
    let url = Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("expected an http:// or https:// URL, not {}://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(())
}

/// Refuses a header name or value HTTP cannot carry.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    HeaderValue::from_str(value).map_err(|_| "not a valid header value".to_owned())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Var;
    use bytestring::ByteString;
    use portico_core::auth::ClientInfo;

    fn client(user: &str) -> ClientInfo {
        ClientInfo::new(
            ByteString::from_static("c 1"),
            Some(ByteString::from(user.to_owned())),
            "127.0.0.1:5".parse().expect("address"),
            "mqtt",
        )
    }

    #[test]
    fn values_cannot_escape_their_place() {
        let c = client("a&b=c d/é#");
        let cx = Context::authn(&c, Some(b"p+w"));
        let t = Template::parse("http://h/auth/${clientid}?u=${username}#frag", Var::AUTHN).expect("valid");
        let fields = vec![(
            "pw".to_owned(),
            Template::parse("${password}", Var::AUTHN).expect("valid"),
        )];
        let mut query = String::new();
        form(&fields, &cx, &mut query);
        let url = url(&t, &cx, Some(&query)).expect("url");
        assert_eq!(
            url.as_str(),
            "http://h/auth/c%201?u=a%26b%3Dc%20d%2F%C3%A9%23&pw=p%2Bw#frag"
        );
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(
            pairs,
            vec![("u".into(), "a&b=c d/é#".into()), ("pw".into(), "p+w".into())]
        );
    }

    #[test]
    fn json_bodies_are_objects_of_strings() {
        let c = client("q\"uote");
        let fields = vec![(
            "username".to_owned(),
            Template::parse("${username}", Var::AUTHN).expect("valid"),
        )];
        let body: Value = serde_json::from_slice(&json(&fields, &Context::authn(&c, None))).expect("json");
        assert_eq!(body, serde_json::json!({"username": "q\"uote"}));
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        let t = |s: &str| Template::parse(s, Var::AUTHN).expect("valid");
        assert!(check_url(&t("http://127.0.0.1:8080/auth?c=${clientid}")).is_ok());
        assert!(check_url(&t("https://${username}.example.com/")).is_ok());
        assert!(check_url(&t("ftp://h/")).is_err());
        assert!(check_url(&t("not a url")).is_err());
        assert!(check_url(&t("http://")).is_err());
        assert!(check_header("x-token", "abc").is_ok());
        assert!(check_header("bad name", "abc").is_err());
        assert!(check_header("x", "line\nbreak").is_err());
    }
}
