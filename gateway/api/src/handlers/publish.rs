//! `POST /publish` and `/publish/bulk`: an operator publishes as the broker itself. The message
//! goes through the same routing as a client's (retained store, delayed publish, `$SYS` rules)
//! but not through a client's authorization.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use bytestring::ByteString;
use portico_core::broker::Published;
use portico_core::message::{Message, MessageProperties, Origin, QoS};
use portico_core::topic::TopicName;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Strict, json_rejection, strict_all};

/// Most messages in one bulk request.
const MAX_BULK: usize = 1000;

/// The `from` of API publications (EMQX shows `http_api` as the publisher).
const PROTOCOL: &str = "http_api";

/// MQTT 5 "no matching subscribers" (EMQX answers it with 202).
const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    properties: Option<Strict<PublishProperties>>,
    /// EMQX 4 had it; accepted and ignored so that old scripts still work.
    #[serde(default)]
    #[allow(dead_code)]
    clientid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishProperties {
    payload_format_indicator: Option<Value>,
    message_expiry_interval: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<String>,
    #[serde(default)]
    user_properties: Map<String, Value>,
}

/// Turns a request into a message, or says what is wrong with it.
fn message(node: u16, body: PublishBody) -> Result<Message, ApiError> {
    let topic = TopicName::new(body.topic.as_str())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_TOPIC", format!("topic: {e}")))?;
    let qos = QoS::from_u8(body.qos).ok_or_else(|| ApiError::bad_request("qos: must be 0, 1 or 2"))?;
    let payload = match body.encoding.as_deref().unwrap_or("plain") {
        "plain" => Bytes::from(body.payload.into_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(body.payload.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("payload: not base64: {e}")))?,
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "encoding: expected plain or base64, got {other}"
            )));
        }
    };
    let from = Origin {
        client_id: ByteString::new(),
        protocol: PROTOCOL,
    };
    let mut message = Message::new(node, topic, payload, qos, body.retain, from);
    if let Some(Strict(properties)) = body.properties {
        message.properties = properties_of(properties)?;
    }
    Ok(message)
}

fn properties_of(p: PublishProperties) -> Result<MessageProperties, ApiError> {
    let payload_format_indicator = match p.payload_format_indicator {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(u8::from(b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => n.as_u64().map(|n| n as u8),
        Some(_) => {
            return Err(ApiError::bad_request(
                "properties.payload_format_indicator: 0, 1, true or false",
            ));
        }
    };
    // MQTT 5 (3.3.2.3.5): a response topic is a topic name, wildcards not allowed.
    let response_topic = match p.response_topic {
        Some(topic) => {
            TopicName::new(topic.as_str())
                .map_err(|e| ApiError::bad_request(format!("properties.response_topic: {e}")))?;
            Some(ByteString::from(topic))
        }
        None => None,
    };
    let mut user_properties = Vec::with_capacity(p.user_properties.len());
    for (key, value) in p.user_properties {
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        user_properties.push((ByteString::from(key), ByteString::from(value)));
    }
    Ok(MessageProperties {
        payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.map(ByteString::from),
        response_topic,
        correlation_data: p.correlation_data.map(|c| Bytes::from(c.into_bytes())),
        user_properties,
    })
}

/// Publishes; `(accepted by a subscriber or delayed, answer body)`.
fn publish_one(state: &crate::AppState, message: Message) -> (bool, Value) {
    let id = format!("{}", message.id);
    match state.broker.publish(message) {
        Ok(Published::Routed(0)) => (
            false,
            json!({"id": id, "message": "no_matched_subscribers", "reason_code": NO_MATCHING_SUBSCRIBERS}),
        ),
        Ok(Published::Routed(_) | Published::Delayed) => (true, json!({"id": id})),
        Err(error) => (
            false,
            json!({"id": id, "message": error.to_string(), "reason_code": 0x80}),
        ),
    }
}

/// `POST /api/v5/publish`.
pub(crate) async fn publish(
    State(state): State<crate::State>,
    body: Result<Json<Strict<PublishBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    let message = message(state.broker.node_id(), body)?;
    let (routed, answer) = publish_one(&state, message);
    let status = if routed || answer.get("reason_code").is_none() {
        StatusCode::OK
    } else if answer["reason_code"] == json!(NO_MATCHING_SUBSCRIBERS) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(answer)).into_response())
}

/// `POST /api/v5/publish/bulk`: every message is checked before any is published.
pub(crate) async fn publish_bulk(
    State(state): State<crate::State>,
    body: Result<Json<Vec<Strict<PublishBody>>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(bodies) = body.map_err(json_rejection)?;
    let bodies = strict_all(bodies);
    if bodies.is_empty() || bodies.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!("1..={MAX_BULK} messages per request")));
    }
    let node = state.broker.node_id();
    let messages = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| message(node, b).map_err(|e| e.at_index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let answers: Vec<Value> = messages.into_iter().map(|m| publish_one(&state, m).1).collect();
    Ok(Json(answers).into_response())
}
