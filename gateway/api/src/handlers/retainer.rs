//! `/mqtt/retainer/messages` and `/mqtt/retainer/message/{topic}`: the retained messages.
//! Deleting one goes through the broker's retained-store path (as a retained publish with an
//! empty payload would), so the durable store records it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use portico_core::Message;
use portico_core::sys::format_rfc3339_utc;
use portico_core::topic::TopicFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, query_rejection};
use crate::paging::Page;

/// The summary EMQX lists. Portico does not keep the publisher's user name with a message, so
/// `from_username` is absent.
fn summary(message: &Message) -> Value {
    json!({
        "msgid": message.id.to_string(),
        "topic": message.topic.as_str(),
        "qos": message.qos as u8,
        "publish_at": format_rfc3339_utc(message.timestamp_ms),
        "from_clientid": &*message.from.client_id,
    })
}

/// `GET /api/v5/mqtt/retainer/messages` query.
#[derive(Deserialize)]
pub(crate) struct RetainedQuery {
    page: Option<usize>,
    limit: Option<usize>,
    /// A topic filter: only the messages whose topic it matches.
    topic: Option<String>,
}

/// `GET /api/v5/mqtt/retainer/messages`.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<RetainedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let filter = match query.topic {
        Some(topic) => Some(
            TopicFilter::new(topic)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_TOPIC", format!("topic: {e}")))?,
        ),
        None => None,
    };
    let messages = state.broker.retained_messages();
    let wanted = messages
        .iter()
        .filter(|m| filter.as_ref().is_none_or(|f| f.matches(&m.topic)));
    Ok(Json(page.collect(wanted, |m| summary(m))))
}

/// `DELETE /api/v5/mqtt/retainer/messages`: every retained message clients published (the
/// broker's own `$SYS` ones are kept; it makes them again anyway).
pub(crate) async fn clear(State(state): State<crate::State>) -> StatusCode {
    let deleted = state.broker.clear_retained();
    tracing::info!(deleted, "retained messages cleared through the API");
    StatusCode::NO_CONTENT
}

fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "no retained message on this topic")
}

/// `GET /api/v5/mqtt/retainer/message/{topic}` (the topic URL-encoded): the message with its
/// payload in base64.
pub(crate) async fn get(State(state): State<crate::State>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    let message = state.broker.retained_message(&topic).ok_or_else(not_found)?;
    let mut body = summary(&message);
    body["payload"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&message.payload));
    Ok(Json(body))
}

/// `DELETE /api/v5/mqtt/retainer/message/{topic}`.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Path(topic): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.broker.delete_retained(&topic) {
        tracing::info!(%topic, "retained message deleted through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
