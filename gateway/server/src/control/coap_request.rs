//! The CoAP request helper's server side: the API's request handed to the connected client's
//! channel through the running CoAP gateway's [`DeviceRequests`], and its response awaited.

use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use portico_api::{CoapReply, CoapRequest, CoapRequestError};
use portico_coap::channel::{DeviceRequest, DeviceRequestError};
use portico_coap::{Code, Token};

use super::ServerControl;

/// A fresh 8-character token (ASCII hex, so the API can show it as text), from the standard
/// library's per-process random hash keys: no extra dependency for a value that only has to
/// differ from the client's other tokens in flight.
fn fresh_token() -> Vec<u8> {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", hasher.finish() as u32).into_bytes()
}

impl ServerControl {
    /// See [`portico_api::Control::coap_request`].
    pub(super) async fn send_coap_request(
        &self,
        client_id: &str,
        request: CoapRequest,
    ) -> Result<CoapReply, CoapRequestError> {
        let table = self
            .handles
            .coap
            .lock()
            .clone()
            .ok_or_else(|| CoapRequestError::NotFound("the coap gateway is not running".to_owned()))?;
        let method = match request.method.as_str() {
            "get" => Code::GET,
            "post" => Code::POST,
            "put" => Code::PUT,
            "delete" => Code::DELETE,
            other => return Err(CoapRequestError::Invalid(format!("method: unknown method {other:?}"))),
        };
        let token_bytes = if request.token.is_empty() {
            fresh_token()
        } else {
            request.token
        };
        let token = Token::new(&token_bytes).map_err(|e| CoapRequestError::Invalid(format!("token: {e}")))?;
        let (answer, response) = tokio::sync::oneshot::channel();
        let device_request = DeviceRequest {
            method,
            uri_path: request.uri_path,
            content_format: Some(request.content_format),
            payload: Bytes::from(request.payload),
            token,
        };
        table
            .send(
                client_id,
                device_request,
                Box::new(move |reply| {
                    // The caller may have timed out already: nobody to tell then.
                    let _ = answer.send(reply);
                }),
            )
            .map_err(|error| match error {
                DeviceRequestError::ClientNotFound => CoapRequestError::NotFound(error.to_string()),
                DeviceRequestError::QueueFull => CoapRequestError::Busy(error.to_string()),
            })?;
        match tokio::time::timeout(request.timeout, response).await {
            Ok(Ok(reply)) => Ok(CoapReply {
                id: reply.message_id,
                token: reply.token.as_bytes().to_vec(),
                code: reply.code.to_string(),
                content_format: reply.content_format,
                payload: reply.payload.to_vec(),
            }),
            // Timed out, or the client's channel closed first.
            Ok(Err(_)) | Err(_) => Err(CoapRequestError::Timeout),
        }
    }
}
