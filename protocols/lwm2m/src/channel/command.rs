//! Downlink command JSON → CoAP request, and CoAP response → uplink JSON (gateway-semantics
//! §3.5, §3.6). Pure functions: the channel decides when to send and where to publish.

use bytes::Bytes;
use portico_coap::message::{Code, Message, Token, Type};
use portico_coap::observe;
use serde_json::{Map, Value as Json};

use crate::content::{self, LINK_FORMAT, LWM2M_TLV, TEXT_PLAIN};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{Item, ResourceType, Value};

/// The command kinds (`msgType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `read`: GET.
    Read,
    /// `discover`: GET, Accept 40.
    Discover,
    /// `write`: PUT (or POST for a batch on an object instance), TLV.
    Write,
    /// `write-attr`: PUT with attributes as Uri-Query.
    WriteAttr,
    /// `execute`: POST.
    Execute,
    /// `create`: POST to the object, TLV.
    Create,
    /// `delete`: DELETE.
    Delete,
    /// `observe`: GET Observe 0.
    Observe,
    /// `cancel-observe`: GET Observe 1.
    CancelObserve,
}

impl Kind {
    /// The kind named by `msgType`.
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "read" => Kind::Read,
            "discover" => Kind::Discover,
            "write" => Kind::Write,
            "write-attr" => Kind::WriteAttr,
            "execute" => Kind::Execute,
            "create" => Kind::Create,
            "delete" => Kind::Delete,
            "observe" => Kind::Observe,
            "cancel-observe" => Kind::CancelObserve,
            _ => return None,
        })
    }
}

/// A downlink command, parsed and translated.
#[derive(Debug, Clone)]
pub struct Command {
    /// The command object as received (echoed in every uplink about it).
    pub original: Map<String, Json>,
    /// What it asks.
    pub kind: Kind,
    /// The request path without the query (`reqPath`).
    pub req_path: String,
    /// The LwM2M path of the request.
    pub path: Path,
    /// The CoAP request (message id and token are set when it is sent).
    pub request: Message,
}

/// Why a command could not be made into a request: answered on the response topic with
/// `4.00 bad_request`, echoing the command.
#[derive(Debug)]
pub struct Refused {
    /// The command object.
    pub original: Map<String, Json>,
    /// The path it named, if any.
    pub req_path: String,
    /// What was wrong (logged).
    pub why: String,
}

/// Reads a command payload: `Ok(None)` for a payload that is not a JSON object (dropped with
/// a log line, as EMQX drops invalid JSON).
pub fn parse(payload: &[u8], alternate_path: &str) -> Result<Option<Command>, Refused> {
    let original = match serde_json::from_slice::<Json>(payload) {
        Ok(Json::Object(map)) => map,
        Ok(_) | Err(_) => return Ok(None),
    };
    let data = original
        .get("data")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let raw_path = data
        .get("path")
        .or_else(|| data.get("basePath"))
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    let (req_path, query) = match raw_path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (raw_path.clone(), None),
    };
    let refuse = |why: String| Refused {
        original: original.clone(),
        req_path: req_path.clone(),
        why,
    };
    let Some(kind) = original.get("msgType").and_then(Json::as_str).and_then(Kind::parse) else {
        return Err(refuse("unknown msgType".to_owned()));
    };
    let path = Path::parse(&command_path(&req_path)).map_err(|e| refuse(format!("path {req_path:?}: {e}")))?;
    let hex = original.get("encoding").and_then(Json::as_str) == Some("hex");
    let (code, observe_value) = match kind {
        Kind::Read | Kind::Discover => (Code::GET, None),
        Kind::Observe => (Code::GET, Some(observe::REGISTER)),
        Kind::CancelObserve => (Code::GET, Some(observe::DEREGISTER)),
        Kind::Write | Kind::WriteAttr => (Code::PUT, None),
        Kind::Execute | Kind::Create => (Code::POST, None),
        Kind::Delete => (Code::DELETE, None),
    };
    let mut request = Message::new(Type::Con, code, 0);
    if alternate_path != "/" {
        for segment in alternate_path.split('/').filter(|s| !s.is_empty()) {
            request.options.push_uri_path(segment);
        }
    }
    for &id in path.ids() {
        request.options.push_uri_path(&id.to_string());
    }
    if let Some(query) = &query {
        for entry in query.split('&').filter(|e| !e.is_empty()) {
            request.options.push_uri_query(entry);
        }
    }
    if let Some(value) = observe_value {
        request.options.set_observe(value);
    }
    match kind {
        Kind::Discover => request.options.set_accept(LINK_FORMAT),
        Kind::Write | Kind::Create => {
            let items = if data.contains_key("content") || kind == Kind::Create {
                let content = data
                    .get("content")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut items = Vec::with_capacity(content.len());
                for entry in &content {
                    items.push(item_of(entry, Some(&path), hex).map_err(refuse)?);
                }
                if kind == Kind::Write && path.depth() == 2 {
                    // A batch on an object instance is a partial update.
                    request.code = Code::POST;
                }
                items
            } else {
                vec![item_of(&Json::Object(data.clone()), None, hex).map_err(refuse)?]
            };
            let payload = content::encode(LWM2M_TLV, &path, &items).map_err(|e| refuse(e.to_string()))?;
            request.options.set_content_format(LWM2M_TLV);
            request.payload = Bytes::from(payload);
        }
        Kind::WriteAttr => {
            for key in ["pmin", "pmax", "gt", "lt", "st"] {
                match data.get(key) {
                    None | Some(Json::Null) => {}
                    Some(Json::String(s)) => request.options.push_uri_query(&format!("{key}={s}")),
                    Some(other) => request.options.push_uri_query(&format!("{key}={other}")),
                }
            }
        }
        Kind::Execute => {
            let args = match data.get("args") {
                Some(Json::String(s)) if s != "undefined" => s.clone(),
                Some(Json::Null) | None | Some(Json::String(_)) => String::new(),
                Some(other) => other.to_string(),
            };
            request.options.set_content_format(TEXT_PLAIN);
            request.payload = Bytes::from(args);
        }
        _ => {}
    }
    Ok(Some(Command {
        original,
        kind,
        req_path,
        path,
        request,
    }))
}

/// A command's `path` or `basePath` in the data layer's strict form: the leading `/` is
/// optional and one trailing `/` is dropped. emqxlwm2m writes a batch with `"basePath":
/// "3/0/"`, which EMQX takes; `reqPath` still echoes the text as sent.
fn command_path(text: &str) -> String {
    let trimmed = text.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(text);
    if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// One write/create value: `{"path","type","value"}`, the path relative to `base` when given.
fn item_of(entry: &Json, base: Option<&Path>, hex: bool) -> Result<Item, String> {
    let path_text = entry
        .get("path")
        .and_then(Json::as_str)
        .ok_or("a value without a path")?;
    let path = match base {
        Some(base) => {
            let rel = path_text.trim_start_matches('/');
            Path::parse(&format!("{base}/{rel}")).map_err(|e| format!("path {path_text:?}: {e}"))?
        }
        None => Path::parse(path_text).map_err(|e| format!("path {path_text:?}: {e}"))?,
    };
    let ty_name = entry
        .get("type")
        .and_then(Json::as_str)
        .ok_or("a value without a type")?;
    let ty = ResourceType::from_command_name(ty_name).ok_or_else(|| format!("unknown type {ty_name:?}"))?;
    let json = entry.get("value").ok_or("a value without a value")?;
    let value = match (hex, json) {
        (true, Json::String(text)) => Value::from_command_hex(ty, text),
        _ => Value::from_command_json(ty, json),
    }
    .map_err(|e| format!("{path}: {e}"))?;
    Ok(Item::new(path, value))
}

/// A random non-empty token (EMQX sends commands with an empty one).
pub fn random_token() -> Token {
    Token::from_u64(rand::random_range(1..=u64::MAX))
}

/// EMQX's name of a response code (`codeMsg`).
pub fn code_name(code: Code) -> &'static str {
    match (code.class(), code.detail()) {
        (2, 1) => "created",
        (2, 2) => "deleted",
        (2, 3) => "valid",
        (2, 4) => "changed",
        (2, 5) => "content",
        (2, 31) => "continue",
        (4, 0) => "bad_request",
        (4, 1) => "unauthorized",
        (4, 2) => "bad_option",
        (4, 3) => "forbidden",
        (4, 4) => "not_found",
        (4, 5) => "method_not_allowed",
        (4, 6) => "not_acceptable",
        (4, 8) => "request_entity_incomplete",
        (4, 12) => "precondition_failed",
        (4, 13) => "request_entity_too_large",
        (4, 15) => "unsupported_content_format",
        (5, 0) => "internal_server_error",
        (5, 1) => "not_implemented",
        (5, 2) => "bad_gateway",
        (5, 3) => "service_unavailable",
        (5, 4) => "gateway_timeout",
        (5, 5) => "proxying_not_supported",
        _ => "unknown",
    }
}

/// `"2.05"`.
pub fn code_text(code: Code) -> String {
    format!("{}.{:02}", code.class(), code.detail())
}

/// `{reqPath, code, codeMsg}`.
pub fn result_data(req_path: &str, code: Code) -> Map<String, Json> {
    let mut data = Map::new();
    data.insert("reqPath".to_owned(), Json::String(req_path.to_owned()));
    data.insert("code".to_owned(), Json::String(code_text(code)));
    data.insert("codeMsg".to_owned(), Json::String(code_name(code).to_owned()));
    data
}

/// The command object with `data` replaced by `data` (and `msgType` set to `msg_type`).
pub fn uplink(
    original: &Map<String, Json>,
    msg_type: Option<&str>,
    data: Option<Map<String, Json>>,
) -> Map<String, Json> {
    let mut out = original.clone();
    if let Some(msg_type) = msg_type {
        out.insert("msgType".to_owned(), Json::String(msg_type.to_owned()));
    }
    if let Some(data) = data {
        out.insert("data".to_owned(), Json::Object(data));
    }
    out
}

/// The `data` of the reply to `command` from the device's `response` (§3.6).
pub fn response_data(command: &Command, response: &Message, registry: &Registry) -> Map<String, Json> {
    let mut code = response.code;
    if command.kind == Kind::Write && code == Code::CONTENT {
        code = Code::CHANGED;
    }
    let with_content = matches!(
        command.kind,
        Kind::Read | Kind::Observe | Kind::CancelObserve | Kind::Discover
    );
    if !with_content || !code.is_success() {
        return result_data(&command.req_path, code);
    }
    let content = match command.kind {
        Kind::Discover => Json::Array(
            String::from_utf8_lossy(&response.payload)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Json::String(s.to_owned()))
                .collect(),
        ),
        _ => {
            let format = response.options.content_format().unwrap_or(TEXT_PLAIN);
            match content::decode(format, &response.payload, &command.path, registry) {
                Ok(records) => Json::Array(records.iter().map(|r| r.to_json()).collect()),
                Err(error) => {
                    tracing::debug!(path = %command.path, %error, "LwM2M response content not decoded");
                    return result_data(&command.req_path, Code::BAD_REQUEST);
                }
            }
        }
    };
    let mut data = result_data(&command.req_path, code);
    data.insert("content".to_owned(), content);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: Json) -> Command {
        match parse(json.to_string().as_bytes(), "/") {
            Ok(Some(command)) => command,
            other => panic!("{json}: {other:?}"),
        }
    }

    fn uri_path(m: &Message) -> Vec<&str> {
        m.options.uri_path().map(|s| s.unwrap_or("?")).collect()
    }

    #[test]
    fn emqxlwm2m_batch_base_path_without_leading_and_with_trailing_slash() {
        // What emqxlwm2m 0.6.0 publishes for a write of two resources.
        let c = parsed(serde_json::json!({"reqID": 1, "msgType": "write", "data": {
            "basePath": "3/0/", "content": [
                {"path": "14", "type": "String", "value": "+04:00"},
                {"path": "15", "type": "String", "value": "Asia/Dubai"}]}}));
        assert_eq!((c.path.to_string(), c.req_path.as_str()), ("/3/0".to_owned(), "3/0/"));
        assert_eq!((c.request.code, uri_path(&c.request)), (Code::POST, vec!["3", "0"]));
        let ids: Vec<u16> = match crate::tlv::decode(&c.request.payload) {
            Ok(crate::tlv::TlvPayload::Resources(resources)) => resources.iter().map(|r| r.id()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ids, [14, 15]);
        // A single path may drop its leading slash too; a bare "/" or "//" stays invalid.
        assert_eq!(
            parsed(serde_json::json!({"msgType": "read", "data": {"path": "3/0/1"}}))
                .path
                .to_string(),
            "/3/0/1"
        );
        for bad in ["/", "//", "/3//", ""] {
            let refused = parse(
                serde_json::json!({"msgType": "read", "data": {"path": bad}})
                    .to_string()
                    .as_bytes(),
                "/",
            );
            assert!(refused.is_err(), "{bad:?}");
        }
    }
}
