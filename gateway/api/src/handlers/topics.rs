//! `/topics`: the route table, one row per subscribed filter and node (EMQX's `emqx_route`).
//! Portico runs one node here, so every route is this node's.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, query_rejection};
use crate::paging::Page;

fn render(topic: &str, node: &str) -> Value {
    json!({"topic": topic, "node": node})
}

/// `GET /api/v5/topics` query.
#[derive(Deserialize)]
pub(crate) struct TopicsQuery {
    page: Option<usize>,
    limit: Option<usize>,
    /// Exactly this filter.
    topic: Option<String>,
    /// Only this node's routes.
    node: Option<String>,
}

/// `GET /api/v5/topics`, in filter order.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<TopicsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let node = state.broker.node_name();
    let filters = if query.node.as_deref().is_none_or(|n| n == node) {
        state.broker.route_filters()
    } else {
        Vec::new()
    };
    let wanted = filters
        .iter()
        .filter(|f| query.topic.as_deref().is_none_or(|t| t == &***f));
    Ok(Json(page.collect(wanted, |f| render(f, node))))
}

/// `GET /api/v5/topics/{topic}` (the filter URL-encoded): 404 `TOPIC_NOT_FOUND` when nobody
/// subscribes to it.
pub(crate) async fn get(State(state): State<crate::State>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    if state.broker.route_filters().iter().any(|f| **f == *topic) {
        Ok(Json(render(&topic, state.broker.node_name())))
    } else {
        Err(ApiError::not_found("TOPIC_NOT_FOUND", "topic not found"))
    }
}
