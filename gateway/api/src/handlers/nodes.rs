//! `/nodes`, `/stats`, `/metrics`: the node and its counters. One node until the cluster
//! exists; the shapes are EMQX's per-node lists so that cluster-aware scripts already work.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, query_rejection};

fn node_info(state: &crate::AppState) -> Value {
    let broker = &state.broker;
    let connections = broker.connection_count();
    json!({
        "node": broker.node_name(),
        "node_status": "running",
        "version": env!("CARGO_PKG_VERSION"),
        "edition": "Opensource",
        "role": "core",
        "uptime": u64::try_from(broker.uptime().as_millis()).unwrap_or(u64::MAX),
        "connections": connections,
        "live_connections": connections,
        "sys_path": Value::Null,
    })
}

/// `GET /api/v5/nodes`.
pub(crate) async fn list(State(state): State<crate::State>) -> Json<Value> {
    Json(json!([node_info(&state)]))
}

/// `GET /api/v5/nodes/{node}`.
pub(crate) async fn get(State(state): State<crate::State>, Path(node): Path<String>) -> Result<Json<Value>, ApiError> {
    if node != state.broker.node_name() {
        return Err(ApiError::not_found("NOT_FOUND", format!("no node {node}")));
    }
    Ok(Json(node_info(&state)))
}

#[derive(Deserialize)]
pub(crate) struct Aggregate {
    #[serde(default)]
    aggregate: bool,
}

/// `{"node": ..., name: value, ...}` or, aggregated, the counters alone.
fn per_node(state: &crate::AppState, counters: Vec<(&'static str, u64)>, aggregate: bool) -> Value {
    let mut object = Map::new();
    if !aggregate {
        object.insert("node".to_owned(), Value::String(state.broker.node_name().to_owned()));
    }
    for (name, value) in counters {
        object.insert(name.to_owned(), json!(value));
    }
    if aggregate {
        Value::Object(object)
    } else {
        Value::Array(vec![Value::Object(object)])
    }
}

/// `GET /api/v5/stats[?aggregate=true]`.
pub(crate) async fn stats(
    State(state): State<crate::State>,
    query: Result<Query<Aggregate>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    Ok(Json(per_node(&state, state.broker.stats(), query.aggregate)))
}

/// `GET /api/v5/metrics[?aggregate=true]`.
pub(crate) async fn metrics(
    State(state): State<crate::State>,
    query: Result<Query<Aggregate>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    Ok(Json(per_node(&state, state.broker.metrics_snapshot(), query.aggregate)))
}
