//! `/clients/{clientid}/subscribe` and `/unsubscribe` (and their `/bulk` forms): an operator
//! subscribes or unsubscribes a client as if it had sent SUBSCRIBE or UNSUBSCRIBE. The
//! subscription is the session's own: later publications reach the client, it is listed with
//! the client's, and a persistent session keeps it.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portico_core::broker::{ManageError, RetainedOnSubscribe};
use portico_core::message::QoS;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Strict, json_rejection, strict_all};

/// Most subscriptions in one bulk request.
const MAX_BULK: usize = 1000;

/// One subscription request (EMQX's fields; `nl`, `rap` 0 or 1, `rh` 0..=2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeBody {
    topic: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    nl: u8,
    #[serde(default)]
    rap: u8,
    #[serde(default)]
    rh: u8,
}

/// A checked request.
struct Subscription {
    topic: String,
    options: SubOptions,
    rh: u8,
}

fn flag(name: &str, value: u8) -> Result<bool, ApiError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ApiError::bad_request(format!("{name}: must be 0 or 1"))),
    }
}

impl SubscribeBody {
    fn check(self) -> Result<Subscription, ApiError> {
        SubscriptionTopic::parse(self.topic.as_str())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_TOPIC", format!("topic: {e}")))?;
        let qos = QoS::from_u8(self.qos).ok_or_else(|| ApiError::bad_request("qos: must be 0, 1 or 2"))?;
        if self.rh > 2 {
            return Err(ApiError::bad_request("rh: must be 0, 1 or 2"));
        }
        Ok(Subscription {
            topic: self.topic,
            options: SubOptions {
                qos,
                no_local: flag("nl", self.nl)?,
                retain_as_published: flag("rap", self.rap)?,
                subscription_id: 0,
            },
            rh: self.rh,
        })
    }
}

fn retained_on_subscribe(rh: u8) -> RetainedOnSubscribe {
    match rh {
        0 => RetainedOnSubscribe::Send,
        1 => RetainedOnSubscribe::SendIfNew,
        _ => RetainedOnSubscribe::DoNotSend,
    }
}

fn client_not_found() -> ApiError {
    ApiError::not_found("CLIENTID_NOT_FOUND", "client id not found")
}

fn subscribe_one(state: &crate::AppState, client_id: &str, sub: &Subscription) -> Result<Value, ApiError> {
    let broker = &state.broker;
    match broker.subscribe_client(client_id, &sub.topic, sub.options, retained_on_subscribe(sub.rh)) {
        Ok(_) => Ok(json!({
            "clientid": client_id,
            "topic": sub.topic,
            "qos": sub.options.qos as u8,
            "nl": u8::from(sub.options.no_local),
            "rap": u8::from(sub.options.retain_as_published),
            "rh": sub.rh,
            "node": broker.node_name(),
        })),
        Err(ManageError::ClientNotFound) => Err(client_not_found()),
        Err(ManageError::BadTopic(error)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_TOPIC",
            format!("topic: {error}"),
        )),
    }
}

/// `POST /api/v5/clients/{clientid}/subscribe`.
pub(crate) async fn subscribe(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
    body: Result<Json<Strict<SubscribeBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    let sub = body.check()?;
    let answer = subscribe_one(&state, &client_id, &sub)?;
    tracing::info!(%client_id, topic = %sub.topic, "subscribed through the API");
    Ok(Json(answer))
}

fn check_bulk_len(len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "expected 1..={MAX_BULK} subscriptions, got {len}"
        )));
    }
    Ok(())
}

/// `POST /api/v5/clients/{clientid}/subscribe/bulk`: every item is checked before any is
/// subscribed.
pub(crate) async fn subscribe_bulk(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
    body: Result<Json<Vec<Strict<SubscribeBody>>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(bodies) = body.map_err(json_rejection)?;
    let bodies = strict_all(bodies);
    check_bulk_len(bodies.len())?;
    let subs = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.check().map_err(|e| e.at_index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    if state.broker.client(&client_id).is_none() {
        return Err(client_not_found());
    }
    let answers = subs
        .iter()
        .map(|sub| subscribe_one(&state, &client_id, sub))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(%client_id, count = answers.len(), "subscribed through the API");
    Ok(Json(Value::Array(answers)))
}

/// One unsubscribe request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnsubscribeBody {
    topic: String,
}

fn check_filter(topic: &str) -> Result<(), ApiError> {
    SubscriptionTopic::parse(topic)
        .map(|_| ())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_TOPIC", format!("topic: {e}")))
}

/// `POST /api/v5/clients/{clientid}/unsubscribe`: 204, whether or not the client had that
/// subscription (as EMQX).
pub(crate) async fn unsubscribe(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
    body: Result<Json<Strict<UnsubscribeBody>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    check_filter(&body.topic)?;
    state
        .broker
        .unsubscribe_client(&client_id, &body.topic)
        .ok_or_else(client_not_found)?;
    tracing::info!(%client_id, topic = %body.topic, "unsubscribed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/clients/{clientid}/unsubscribe/bulk`.
pub(crate) async fn unsubscribe_bulk(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
    body: Result<Json<Vec<Strict<UnsubscribeBody>>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(bodies) = body.map_err(json_rejection)?;
    let bodies = strict_all(bodies);
    check_bulk_len(bodies.len())?;
    for (i, body) in bodies.iter().enumerate() {
        check_filter(&body.topic).map_err(|e| e.at_index(i))?;
    }
    for body in &bodies {
        state
            .broker
            .unsubscribe_client(&client_id, &body.topic)
            .ok_or_else(client_not_found)?;
    }
    tracing::info!(%client_id, count = bodies.len(), "unsubscribed through the API");
    Ok(StatusCode::NO_CONTENT)
}
