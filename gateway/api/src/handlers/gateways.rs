//! `/gateways`, `/listeners` and `/psk`: the gateways and listeners as they run, starting and
//! stopping them, each gateway's clients, and the built-in PSK database.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use portico_core::sys::format_rfc3339_utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::{ClientQuery, client_not_found, render};
use crate::control::{ControlError, GatewayInfo, GatewayStatus, ListenerInfo};
use crate::error::{ApiError, Strict, json_rejection, query_rejection};
use crate::paging::Page;

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::NotFound(why) => ApiError::not_found("NOT_FOUND", why),
            ControlError::Invalid(why) => ApiError::bad_request(why),
            ControlError::Failed(why) => ApiError::internal(why),
        }
    }
}

pub(super) fn render_listener(listener: &ListenerInfo) -> Value {
    json!({
        "id": listener.id,
        "type": listener.kind,
        "name": listener.name,
        "bind": listener.bind.to_string(),
        "running": listener.running,
        "enable": true,
    })
}

fn render_gateway(state: &crate::AppState, gateway: &GatewayInfo) -> Value {
    let connections = state
        .broker
        .clients()
        .iter()
        .filter(|c| c.connected && c.info.as_ref().is_some_and(|i| i.protocol == gateway.name))
        .count();
    json!({
        "name": gateway.name,
        "status": gateway.status.as_str(),
        "started_at": gateway.started_at_ms.map(format_rfc3339_utc),
        "stopped_at": gateway.stopped_at_ms.map(format_rfc3339_utc),
        "current_connections": connections,
        "listeners": gateway.listeners.iter().map(render_listener).collect::<Vec<_>>(),
    })
}

/// The gateway `name`, or 404.
fn gateway(state: &crate::AppState, name: &str) -> Result<GatewayInfo, ApiError> {
    state
        .control
        .gateways()
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::not_found("RESOURCE_NOT_FOUND", format!("no gateway named {name:?}")))
}

/// `GET /api/v5/gateways` query.
#[derive(Deserialize)]
pub(crate) struct GatewaysQuery {
    status: Option<String>,
}

/// `GET /api/v5/gateways[?status=running|stopped]`.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<GatewaysQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let wanted = match query.status.as_deref() {
        None => None,
        Some("running") => Some(GatewayStatus::Running),
        Some("stopped") => Some(GatewayStatus::Stopped),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status: expected running or stopped, got {other}"
            )));
        }
    };
    let gateways = state.control.gateways();
    Ok(Json(Value::Array(
        gateways
            .iter()
            .filter(|g| wanted.is_none_or(|w| g.status == w))
            .map(|g| render_gateway(&state, g))
            .collect(),
    )))
}

/// `GET /api/v5/gateways/{name}`.
pub(crate) async fn get(State(state): State<crate::State>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let gateway = gateway(&state, &name)?;
    Ok(Json(render_gateway(&state, &gateway)))
}

/// `PUT /api/v5/gateways/{name}/enable/{true|false}`.
pub(crate) async fn enable(
    State(state): State<crate::State>,
    Path((name, enable)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let enable = match enable.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(ApiError::bad_request(format!("expected true or false, got {other:?}"))),
    };
    gateway(&state, &name)?;
    state.control.set_gateway_enabled(&name, enable).await?;
    tracing::info!(gateway = %name, enable, "gateway switched through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v5/gateways/{name}/listeners`.
pub(crate) async fn listeners_of(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gateway = gateway(&state, &name)?;
    Ok(Json(Value::Array(
        gateway.listeners.iter().map(render_listener).collect(),
    )))
}

/// `GET /api/v5/gateways/{name}/clients`: the clients of that protocol, with `/clients`'
/// paging and filters.
pub(crate) async fn clients_of(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    query.check()?;
    let gateway = gateway(&state, &name)?;
    let node = state.broker.node_name();
    let clients = state.broker.clients();
    let of_gateway = clients
        .iter()
        .filter(|c| c.info.as_ref().is_some_and(|i| i.protocol == gateway.name) && query.matches(c));
    Ok(Json(page.collect(of_gateway, |c| render(node, c))))
}

/// The client `client_id` of gateway `name`, or 404.
fn client_of(
    state: &crate::AppState,
    name: &str,
    client_id: &str,
) -> Result<portico_core::broker::ClientSnapshot, ApiError> {
    let gateway = gateway(state, name)?;
    state
        .broker
        .client(client_id)
        .filter(|c| c.info.as_ref().is_some_and(|i| i.protocol == gateway.name))
        .ok_or_else(client_not_found)
}

/// `GET /api/v5/gateways/{name}/clients/{clientid}`.
pub(crate) async fn client(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let client = client_of(&state, &name, &client_id)?;
    Ok(Json(render(state.broker.node_name(), &client)))
}

/// `DELETE /api/v5/gateways/{name}/clients/{clientid}`: kick.
pub(crate) async fn kick(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    client_of(&state, &name, &client_id)?;
    if !state.broker.kick_client(&client_id) {
        return Err(client_not_found());
    }
    tracing::info!(gateway = %name, %client_id, "gateway client kicked through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v5/listeners`: every listener, MQTT's and the gateways'.
pub(crate) async fn all_listeners(State(state): State<crate::State>) -> Json<Value> {
    let mut rows: Vec<Value> = state.control.listeners().iter().map(render_listener).collect();
    for gateway in state.control.gateways() {
        rows.extend(gateway.listeners.iter().map(render_listener));
    }
    Json(Value::Array(rows))
}

/// `POST /api/v5/listeners/{id}/{start|stop|restart}` (MQTT listeners; a gateway's listeners
/// follow its gateway).
pub(crate) async fn listener_action(
    State(state): State<crate::State>,
    Path((id, action)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let control = &state.control;
    match action.as_str() {
        "start" => control.set_listener_running(&id, true).await?,
        "stop" => control.set_listener_running(&id, false).await?,
        "restart" => {
            control.set_listener_running(&id, false).await?;
            control.set_listener_running(&id, true).await?;
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "action: expected start, stop or restart, got {other:?}"
            )));
        }
    }
    tracing::info!(listener = %id, %action, "listener action through the API");
    Ok(StatusCode::OK)
}

/// `GET /api/v5/psk`: the identities (never the keys).
pub(crate) async fn psk_list(State(state): State<crate::State>) -> Result<Json<Value>, ApiError> {
    let identities = state.control.psk_identities().ok_or_else(psk_off)?;
    Ok(Json(Value::Array(
        identities
            .into_iter()
            .map(|identity| json!({"identity": identity}))
            .collect(),
    )))
}

fn psk_off() -> ApiError {
    ApiError::not_found("NOT_FOUND", "psk_authentication is not enabled")
}

/// `POST /api/v5/psk` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PskBody {
    identity: String,
    /// The key's bytes as text, as in `init_file` (no hex decoding, EMQX's format).
    key: String,
}

/// `POST /api/v5/psk`: add or replace an identity.
pub(crate) async fn psk_put(
    State(state): State<crate::State>,
    body: Result<Json<Strict<PskBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    state.control.psk_identities().ok_or_else(psk_off)?;
    state.control.psk_put(&body.identity, body.key.as_bytes())?;
    tracing::info!(identity = %body.identity, "PSK identity set through the API");
    Ok((StatusCode::CREATED, Json(json!({"identity": body.identity}))))
}

/// `DELETE /api/v5/psk/{identity}`.
pub(crate) async fn psk_delete(
    State(state): State<crate::State>,
    Path(identity): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.control.psk_identities().ok_or_else(psk_off)?;
    if state.control.psk_remove(&identity)? {
        tracing::info!(%identity, "PSK identity removed through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no PSK identity {identity:?}"),
        ))
    }
}
