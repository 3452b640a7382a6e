//! `POST /gateways/coap/clients/{clientid}/request`: EMQX's CoAP request helper. The gateway
//! sends a CON request to a client connected in connection mode and answers with the client's
//! response, or 504 `CLIENT_NOT_RESPONSE` when none comes in time.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::{CoapRequest, CoapRequestError};
use crate::error::{ApiError, json_rejection};

/// The longest wait for a device: the API request holds a connection meanwhile.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The wait when the body gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Uri-Path segments at most.
const MAX_SEGMENTS: usize = 16;

/// The body, EMQX's fields (`uri_path` is Portico's: EMQX's helper has none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    token: Option<String>,
    method: Option<String>,
    uri_path: Option<String>,
    timeout: Option<Value>,
    content_type: Option<String>,
    payload: Option<String>,
}

/// `"5s"`, `"500ms"`, `"1m"`, or an integer of milliseconds (EMQX's `timeout_duration_ms`).
fn timeout(value: Option<&Value>) -> Result<Duration, ApiError> {
    let bad = || ApiError::bad_request("timeout: expected a duration such as \"5s\" or \"500ms\", at most 60s");
    let duration = match value {
        None => return Ok(DEFAULT_TIMEOUT),
        Some(Value::Number(n)) => Duration::from_millis(n.as_u64().ok_or_else(bad)?),
        Some(Value::String(text)) => {
            let text = text.trim();
            let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let n: u64 = text.get(..digits).and_then(|d| d.parse().ok()).ok_or_else(bad)?;
            match text.get(digits..).unwrap_or_default() {
                "" | "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Some(_) => return Err(bad()),
    };
    if duration.is_zero() || duration > MAX_TIMEOUT {
        return Err(bad());
    }
    Ok(duration)
}

/// The CoAP Content-Format number of EMQX's three content types.
fn content_format(content_type: &str) -> Result<u16, ApiError> {
    match content_type {
        "text/plain" => Ok(0),
        "application/octet-stream" => Ok(42),
        "application/json" => Ok(50),
        other => Err(ApiError::bad_request(format!(
            "content_type: expected text/plain, application/json or application/octet-stream, got {other:?}"
        ))),
    }
}

fn parse(body: RequestBody) -> Result<(CoapRequest, bool), ApiError> {
    let method = body.method.unwrap_or_else(|| "get".to_owned());
    if !["get", "put", "post", "delete"].contains(&method.as_str()) {
        return Err(ApiError::bad_request(format!(
            "method: expected get, put, post or delete, got {method:?}"
        )));
    }
    let content_type = body.content_type.as_deref().unwrap_or("text/plain");
    let binary = content_type == "application/octet-stream";
    let format = content_format(content_type)?;
    let payload = body.payload.unwrap_or_default();
    let payload = if binary {
        base64::engine::general_purpose::STANDARD
            .decode(payload.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("payload: application/octet-stream takes base64: {e}")))?
    } else {
        payload.into_bytes()
    };
    let token = body.token.unwrap_or_default().into_bytes();
    if token.len() > 8 {
        return Err(ApiError::bad_request(format!(
            "token: {} bytes; CoAP tokens are at most 8",
            token.len()
        )));
    }
    let uri_path: Vec<String> = body
        .uri_path
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if uri_path.len() > MAX_SEGMENTS || uri_path.iter().any(|s| s.len() > 255) {
        return Err(ApiError::bad_request(format!(
            "uri_path: at most {MAX_SEGMENTS} segments of at most 255 bytes"
        )));
    }
    let request = CoapRequest {
        method,
        uri_path,
        content_format: format,
        payload,
        token,
        timeout: timeout(body.timeout.as_ref())?,
    };
    Ok((request, binary))
}

/// A token as text: itself when it is UTF-8 (EMQX shows it as given), else hex.
fn token_text(token: &[u8]) -> String {
    match std::str::from_utf8(token) {
        Ok(text) => text.to_owned(),
        Err(_) => token.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `POST /api/v5/gateways/{name}/clients/{clientid}/request` (`name` must be `coap`).
pub(crate) async fn request(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    if name != "coap" {
        return Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no request helper for gateway {name:?} (CoAP only)"),
        ));
    }
    let Json(body) = body.map_err(json_rejection)?;
    let (request, binary) = parse(body)?;
    let reply = state
        .control
        .coap_request(&client_id, request)
        .await
        .map_err(|error| match error {
            CoapRequestError::NotFound(why) => ApiError::not_found("CLIENT_NOT_FOUND", why),
            CoapRequestError::Invalid(why) => ApiError::bad_request(why),
            CoapRequestError::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "CLIENT_NOT_RESPONSE",
                "the client did not answer in time",
            ),
            CoapRequestError::Busy(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", why),
        })?;
    // As EMQX: the payload is shown by the request's content type (base64 for octet-stream).
    let payload = if binary {
        base64::engine::general_purpose::STANDARD.encode(&reply.payload)
    } else {
        String::from_utf8_lossy(&reply.payload).into_owned()
    };
    Ok(Json(json!({
        "id": reply.id,
        "token": token_text(&reply.token),
        "method": reply.code,
        "content_format": reply.content_format,
        "payload": payload,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_bounded_durations() {
        assert_eq!(timeout(None).ok(), Some(DEFAULT_TIMEOUT));
        assert_eq!(timeout(Some(&json!("500ms"))).ok(), Some(Duration::from_millis(500)));
        assert_eq!(timeout(Some(&json!("2s"))).ok(), Some(Duration::from_secs(2)));
        assert_eq!(timeout(Some(&json!(1500))).ok(), Some(Duration::from_millis(1500)));
        for bad in [
            json!("0s"),
            json!("2h"),
            json!("soon"),
            json!(-1),
            json!("61s"),
            json!(true),
        ] {
            assert!(timeout(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_show_as_text_or_hex() {
        assert_eq!(token_text(b"abc"), "abc");
        assert_eq!(token_text(&[0xff, 0x01]), "ff01");
    }
}
