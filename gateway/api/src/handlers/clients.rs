//! `/clients` and `/subscriptions`: the sessions the broker holds, their connections and
//! subscriptions; kicking a client.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytestring::ByteString;
use portico_core::broker::ClientSnapshot;
use portico_core::message::now_millis;
use portico_core::session::SubOptions;
use portico_core::sys::format_rfc3339_utc;
use portico_core::topic::{TopicName, matches};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, query_rejection};
use crate::paging::Page;

/// `GET /api/v5/clients` query: paging and the filters that map onto what the broker knows.
#[derive(Deserialize)]
pub(crate) struct ClientQuery {
    pub(crate) page: Option<usize>,
    pub(crate) limit: Option<usize>,
    clientid: Option<String>,
    username: Option<String>,
    ip_address: Option<String>,
    conn_state: Option<String>,
    proto_name: Option<String>,
    proto_ver: Option<u8>,
    clean_start: Option<bool>,
    like_clientid: Option<String>,
    like_username: Option<String>,
}

impl ClientQuery {
    pub(crate) fn matches(&self, client: &ClientSnapshot) -> bool {
        let info = client.info.as_deref();
        let username = info.and_then(|i| i.username.as_deref());
        let exact = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        let like = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have.is_some_and(|h| h.contains(w)))
        };
        exact(&self.clientid, Some(&client.client_id))
            && exact(&self.username, username)
            && like(&self.like_clientid, Some(&client.client_id))
            && like(&self.like_username, username)
            && self
                .ip_address
                .as_deref()
                .is_none_or(|want| info.and_then(|i| i.peer).is_some_and(|ip| ip.to_string() == want))
            && self.conn_state.as_deref().is_none_or(|state| match state {
                "connected" => client.connected,
                "disconnected" => !client.connected,
                _ => false,
            })
            && self
                .proto_name
                .as_deref()
                .is_none_or(|want| info.is_some_and(|i| i.proto_name.eq_ignore_ascii_case(want)))
            && self
                .proto_ver
                .is_none_or(|want| info.is_some_and(|i| i.proto_ver == want))
            && self
                .clean_start
                .is_none_or(|want| info.is_some_and(|i| i.clean_start == want))
    }
}

impl ClientQuery {
    /// Refuses filter values that can match nothing by mistake.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        match self.conn_state.as_deref() {
            None | Some("connected") | Some("disconnected") => Ok(()),
            Some(other) => Err(ApiError::bad_request(format!(
                "conn_state: expected connected or disconnected, got {other}"
            ))),
        }
    }
}

/// A client in EMQX 5's shape; what Portico does not track is left out (see `docs/api.md`).
pub(crate) fn render(node: &str, client: &ClientSnapshot) -> Value {
    let info = client.info.as_deref();
    let now = now_millis();
    let connected_at = info.map(|i| format_rfc3339_utc(i.connected_at_ms));
    let disconnected_at = client
        .disconnected_for
        .map(|ago| format_rfc3339_utc(now.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX))));
    json!({
        "node": node,
        "clientid": &*client.client_id,
        "username": info.and_then(|i| i.username.as_deref()),
        "proto_name": info.map(|i| i.proto_name.as_str()),
        "proto_ver": info.map(|i| i.proto_ver),
        "protocol": info.map(|i| i.protocol),
        "ip_address": info.and_then(|i| i.peer).map(|ip| ip.to_string()),
        "sockport": info.map(|i| i.sockport),
        "is_bridge": false,
        "connected": client.connected,
        "connected_at": connected_at,
        "created_at": connected_at,
        "disconnected_at": disconnected_at,
        "keepalive": info.map(|i| i.keepalive),
        "clean_start": info.map(|i| i.clean_start),
        "expiry_interval": client.expiry_interval,
        "is_persistent": client.expiry_interval > 0,
        "subscriptions_cnt": client.subscriptions,
        "inflight_cnt": client.inflight,
        "mqueue_len": client.mqueue_len,
        "mqueue_max": client.max_mqueue,
        "mqueue_dropped": client.mqueue_dropped,
        "awaiting_rel_cnt": client.awaiting_rel,
    })
}

/// `GET /api/v5/clients`.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    query.check()?;
    let node = state.broker.node_name();
    let clients = state.broker.clients();
    Ok(Json(page.collect(clients.iter().filter(|c| query.matches(c)), |c| {
        render(node, c)
    })))
}

pub(crate) fn client_not_found() -> ApiError {
    ApiError::not_found("CLIENTID_NOT_FOUND", "client id not found")
}

/// `GET /api/v5/clients/{clientid}`.
pub(crate) async fn get(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.broker.client(&client_id).ok_or_else(client_not_found)?;
    Ok(Json(render(state.broker.node_name(), &client)))
}

/// `DELETE /api/v5/clients/{clientid}`: kick (the connection closes and the session ends).
pub(crate) async fn kick(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.broker.kick_client(&client_id) {
        tracing::info!(%client_id, "client kicked through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(client_not_found())
    }
}

fn render_subscription(node: &str, client_id: &str, filter: &ByteString, options: &SubOptions) -> Value {
    json!({
        "node": node,
        "clientid": client_id,
        "topic": &**filter,
        "qos": options.qos as u8,
        "nl": u8::from(options.no_local),
        "rap": u8::from(options.retain_as_published),
    })
}

/// `GET /api/v5/clients/{clientid}/subscriptions`.
pub(crate) async fn subscriptions_of(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscriptions = state
        .broker
        .client_subscriptions(&client_id)
        .ok_or_else(client_not_found)?;
    let node = state.broker.node_name();
    Ok(Json(Value::Array(
        subscriptions
            .iter()
            .map(|(f, o)| render_subscription(node, &client_id, f, o))
            .collect(),
    )))
}

/// `GET /api/v5/subscriptions` query.
#[derive(Deserialize)]
pub(crate) struct SubscriptionQuery {
    page: Option<usize>,
    limit: Option<usize>,
    clientid: Option<String>,
    topic: Option<String>,
    qos: Option<u8>,
    share_group: Option<String>,
    match_topic: Option<String>,
}

/// The group of a `$share/{group}/{filter}` subscription, and the filter without it.
fn split_share(filter: &str) -> (Option<&str>, &str) {
    if let Some(rest) = filter.strip_prefix("$share/")
        && let Some((group, real)) = rest.split_once('/')
    {
        return (Some(group), real);
    }
    if let Some(real) = filter.strip_prefix("$queue/") {
        return (Some("$queue"), real);
    }
    (None, filter)
}

/// `GET /api/v5/subscriptions`.
pub(crate) async fn list_all(
    State(state): State<crate::State>,
    query: Result<Query<SubscriptionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let match_topic = match &query.match_topic {
        Some(topic) => {
            Some(TopicName::new(topic.as_str()).map_err(|e| ApiError::bad_request(format!("match_topic: {e}")))?)
        }
        None => None,
    };
    let broker = &state.broker;
    let node = broker.node_name();
    let clients: Vec<ByteString> = match &query.clientid {
        Some(id) => vec![ByteString::from(id.as_str())],
        None => broker.clients().into_iter().map(|c| c.client_id).collect(),
    };
    let rows = clients.into_iter().flat_map(|client_id| {
        broker
            .client_subscriptions(&client_id)
            .unwrap_or_default()
            .into_iter()
            .map(move |(filter, options)| (client_id.clone(), filter, options))
    });
    let wanted = rows.filter(|(_, filter, options)| {
        let (group, real) = split_share(filter);
        query.topic.as_deref().is_none_or(|t| t == real)
            && query.qos.is_none_or(|q| q == options.qos as u8)
            && query.share_group.as_deref().is_none_or(|g| group == Some(g))
            && match_topic.as_ref().is_none_or(|t| matches(real, t))
    });
    Ok(Json(page.collect(wanted, |(client_id, filter, options)| {
        render_subscription(node, &client_id, &filter, &options)
    })))
}

/// `DELETE /api/v5/clients/{clientid}/authorization/cache`: the client's cached authorization
/// results are dropped, so its next PUBLISH or SUBSCRIBE is checked again. 404 when the client
/// is not connected (a disconnected client has no cache).
pub(crate) async fn clear_authz_cache(
    State(state): State<crate::State>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.broker.clear_authz_caches(Some(&client_id)) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(client_not_found())
    }
}
