//! The control socket's client: one HTTP/1.1 request per call over the Unix socket, and
//! the helpers that turn the API's JSON into text.

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Rows asked for per page when a command lists everything.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CtlError {
    #[error("cannot reach the node at {}: {source} (is it running? is the socket path right?)", path.display())]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("{method} {uri} over {}: {why}", path.display())]
    Http {
        method: Method,
        uri: String,
        path: PathBuf,
        why: String,
    },
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    #[error("{0}")]
    Config(String),
}

pub(crate) struct Ctl {
    pub(crate) socket: PathBuf,
    pub(crate) json: bool,
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

impl Ctl {
    /// The output of a command whose answer has no body.
    pub(crate) fn done(&self, what: &str) -> String {
        if self.json {
            format!("{}\n", json!({"ok": true}))
        } else {
            format!("{what}\n")
        }
    }

    pub(crate) fn render(&self, value: Value, human: impl Fn(&Value) -> String) -> Result<String, CtlError> {
        if self.json {
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            Ok(format!("{pretty}\n"))
        } else {
            Ok(human(&value))
        }
    }

    pub(crate) fn render_rows(&self, rows: Vec<Value>, line: impl Fn(&Value) -> String) -> Result<String, CtlError> {
        self.render(Value::Array(rows), |rows| lines(rows, &line))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None).await
    }

    /// Every row of a paged list.
    pub(crate) async fn list_all(&self, path: &str, filters: &[(&str, &str)]) -> Result<Vec<Value>, CtlError> {
        let mut rows = Vec::new();
        for page in 1.. {
            let mut uri = format!("{path}?page={page}&limit={PAGE}");
            for (key, value) in filters {
                let _ = write!(uri, "&{key}={}", encode(value));
            }
            let answer = self.get(&uri).await?;
            if let Some(data) = answer["data"].as_array() {
                rows.extend(data.iter().cloned());
            }
            if answer["meta"]["hasnext"].as_bool() != Some(true) {
                break;
            }
        }
        Ok(rows)
    }

    /// One request over the control socket; a 2xx answer's JSON (`null` when empty), or the
    /// API's error.
    pub(crate) async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Result<Value, CtlError> {
        let body = body.map(|body| ("application/json", Bytes::from(body.to_string())));
        let (status, bytes) = self.send(method.clone(), uri, body).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| self.http_error(&method, uri, format!("{status}, not JSON ({e})")))?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(api_error(status, &value))
        }
    }

    /// One request over the control socket with a body of any type (`content type`, bytes);
    /// the answer's status and body as they are.
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), CtlError> {
        let http = |why: String| self.http_error(&method, uri, why);
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| CtlError::Unreachable {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(format!("handshake: {e}")))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::HOST, "localhost");
        let body = match body {
            Some((content_type, body)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                body
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| http(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(format!("no answer: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(format!("cannot read the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    }

    fn http_error(&self, method: &Method, uri: &str, why: String) -> CtlError {
        CtlError::Http {
            method: method.clone(),
            uri: uri.to_owned(),
            path: self.socket.clone(),
            why,
        }
    }
}

pub(crate) fn api_error(status: StatusCode, value: &Value) -> CtlError {
    match (value["code"].as_str(), value["message"].as_str()) {
        (Some(code), message) => CtlError::Api {
            code: code.to_owned(),
            message: message.unwrap_or_default().to_owned(),
        },
        _ => CtlError::Api {
            code: status.as_u16().to_string(),
            message: status.canonical_reason().unwrap_or("error").to_owned(),
        },
    }
}

/// A JSON value as text: strings without quotes, `null` as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Every field of an object, `name: value` per line, in the API's order.
pub(crate) fn fields(value: &Value) -> String {
    let mut out = String::new();
    if let Some(object) = value.as_object() {
        let width = object.keys().map(String::len).max().unwrap_or(0);
        for (key, value) in object {
            let _ = writeln!(out, "{key:<width$} : {}", text(value));
        }
    }
    out
}

/// One line per element of an array.
pub(crate) fn lines(rows: &Value, line: impl Fn(&Value) -> String) -> String {
    let mut out = String::new();
    for row in rows.as_array().into_iter().flatten() {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// Seconds as `1d 2h 3m 4s` (leading zero units left out).
pub(crate) fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (value, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if value > 0 || !out.is_empty() {
            let _ = write!(out, "{value}{unit} ");
        }
    }
    let _ = write!(out, "{s}s");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_topics_for_paths() {
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("+/#"), "%2B%2F%23");
        assert_eq!(encode("c-1_x.y~"), "c-1_x.y~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn formats_uptime() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(3600), "1h 0m 0s");
        assert_eq!(duration(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn api_errors_carry_code_and_message() {
        let error = api_error(
            StatusCode::NOT_FOUND,
            &json!({"code": "CLIENTID_NOT_FOUND", "message": "no client x"}),
        );
        assert_eq!(error.to_string(), "CLIENTID_NOT_FOUND: no client x");
        let error = api_error(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(error.to_string(), "502: Bad Gateway");
    }
}
