//! `/alarms`: the node's active alarms and the history of deactivated ones (EMQX 5's
//! `emqx_mgmt_api_alarms`). The alarms themselves are raised and cleared by the monitors (see
//! `docs/alarms.md`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use portico_core::alarms::{Alarm, now_micros};
use portico_core::sys::format_rfc3339_utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, query_rejection};
use crate::paging::Page;

/// EMQX 5's fields: `node`, `name`, `message`, `details`, `duration` (ms active so far, or in
/// all), `activate_at` and `deactivate_at` (RFC 3339; `"infinity"` while active).
fn render(node: &str, alarm: &Alarm, now_us: u64) -> Value {
    json!({
        "node": node,
        "name": alarm.name,
        "message": alarm.message,
        "details": alarm.details,
        "duration": alarm.duration_ms(now_us),
        "activate_at": format_rfc3339_utc(alarm.activate_at_us / 1000),
        "deactivate_at": alarm
            .deactivate_at_us
            .map_or_else(|| "infinity".to_owned(), |at| format_rfc3339_utc(at / 1000)),
    })
}

/// `GET /api/v5/alarms` query.
#[derive(Deserialize)]
pub(crate) struct AlarmsQuery {
    page: Option<usize>,
    limit: Option<usize>,
    /// `true`: the active alarms; `false`: the history; absent: both, active first.
    activated: Option<bool>,
}

/// `GET /api/v5/alarms`: active ones by name, then the history newest first.
pub(crate) async fn list(
    State(state): State<crate::State>,
    query: Result<Query<AlarmsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let alarms = state.broker.alarms();
    let mut list = Vec::new();
    if query.activated != Some(false) {
        list.extend(alarms.active());
    }
    if query.activated != Some(true) {
        list.extend(alarms.history());
    }
    let node = state.broker.node_name();
    let now_us = now_micros();
    Ok(Json(page.collect(list.iter(), |alarm| render(node, alarm, now_us))))
}

/// `DELETE /api/v5/alarms`: forgets the deactivated alarms (active ones stay) → 204.
pub(crate) async fn clear(State(state): State<crate::State>) -> StatusCode {
    let cleared = state.broker.alarms().clear_history();
    tracing::info!(cleared, "alarm history cleared through the API");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn renders_emqx_fields() {
        let mut alarm = Alarm {
            name: "high_cpu_usage".to_owned(),
            message: "CPU usage is higher than 80%".to_owned(),
            details: Map::new(),
            activate_at_us: 1_795_348_800_000_000,
            deactivate_at_us: None,
        };
        let active = render("n@h", &alarm, 1_795_348_801_500_000);
        assert_eq!(
            active,
            json!({
                "node": "n@h",
                "name": "high_cpu_usage",
                "message": "CPU usage is higher than 80%",
                "details": {},
                "duration": 1500,
                "activate_at": "2026-11-22T12:00:00Z",
                "deactivate_at": "infinity",
            })
        );
        alarm.deactivate_at_us = Some(1_795_348_860_000_000);
        let gone = render("n@h", &alarm, u64::MAX);
        assert_eq!(gone["duration"], json!(60_000));
        assert_eq!(gone["deactivate_at"], json!("2026-11-22T12:01:00Z"));
    }
}
