//! `GET /api/v5/prometheus/stats` and `/metrics`: the Prometheus text exposition format
//! (version 0.0.4) with EMQX's names: `emqx_` + the metric or stat name with `.` turned into
//! `_` (`messages.received` → `emqx_messages_received`, `connections.count` →
//! `emqx_connections_count`). Counters are `counter`s, stats `gauge`s. Unauthenticated, as
//! EMQX's is by default (`prometheus.enable_basic_auth = false`), so that a scraper needs no
//! credentials; it shows counts, never client data. Portico's own labelled families (per
//! gateway, per listener, store latency) are in [`labelled`].

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::control::GatewayStatus;

mod labelled;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `emqx_` + `name` with every character a metric name may not hold turned into `_`.
pub(crate) fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 5);
    out.push_str("emqx_");
    out.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }),
    );
    out
}

/// The whole exposition text.
pub(crate) fn render(stats: &[(&'static str, u64)], metrics: &[(&'static str, u64)]) -> String {
    let mut out = String::with_capacity(64 * (stats.len() + metrics.len()));
    let mut seen = std::collections::HashSet::new();
    for (kind, rows) in [("gauge", stats), ("counter", metrics)] {
        for (name, value) in rows {
            let name = metric_name(name);
            // One family per name: a name met twice would make the text invalid.
            if !seen.insert(name.clone()) {
                continue;
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

/// Portico's labelled gauges (no EMQX equivalent): per gateway, its state and connected
/// clients; per listener, whether it accepts.
pub(crate) fn render_labelled(gateways: &[(&str, bool, usize)], listeners: &[(String, bool)], out: &mut String) {
    let _ = writeln!(out, "# TYPE portico_gateway_running gauge");
    for (name, running, _) in gateways {
        let _ = writeln!(
            out,
            "portico_gateway_running{{gateway=\"{name}\"}} {}",
            u8::from(*running)
        );
    }
    let _ = writeln!(out, "# TYPE portico_gateway_connections gauge");
    for (name, _, connections) in gateways {
        let _ = writeln!(out, "portico_gateway_connections{{gateway=\"{name}\"}} {connections}");
    }
    let _ = writeln!(out, "# TYPE portico_listener_running gauge");
    for (id, running) in listeners {
        // Listener ids are `kind:name` (config keys): no quote or backslash to escape.
        let _ = writeln!(
            out,
            "portico_listener_running{{listener=\"{id}\"}} {}",
            u8::from(*running)
        );
    }
}

/// `GET /api/v5/prometheus/stats`, `GET /metrics`.
pub(crate) async fn stats(State(state): State<crate::State>) -> impl IntoResponse {
    let mut text = render(&state.broker.stats(), &state.broker.metrics_snapshot());
    let clients = state.broker.clients();
    let gateways = state.control.gateways();
    let per_gateway: Vec<(&str, bool, usize)> = gateways
        .iter()
        .map(|g| {
            let connected = clients
                .iter()
                .filter(|c| c.connected && c.info.as_ref().is_some_and(|i| i.protocol == g.name))
                .count();
            (g.name, g.status == GatewayStatus::Running, connected)
        })
        .collect();
    let listeners: Vec<(String, bool)> = state
        .control
        .listeners()
        .into_iter()
        .chain(gateways.iter().flat_map(|g| g.listeners.clone()))
        .map(|l| (l.id, l.running))
        .collect();
    render_labelled(&per_gateway, &listeners, &mut text);
    let frontends = state.broker.frontend_metrics_snapshot();
    // Listeners that ran, then configured ones that never did (zeros), so that every
    // listener has its samples.
    let mut counted = state.broker.listener_metrics_snapshot();
    for (id, _) in &listeners {
        if !counted.iter().any(|(known, _)| known == id) {
            counted.push((id.clone(), Default::default()));
        }
    }
    let inputs = labelled::Inputs {
        gateways: gateways
            .iter()
            .map(|g| {
                let counters = frontends
                    .iter()
                    .find(|(name, _)| *name == g.name)
                    .map(|(_, snapshot)| *snapshot)
                    .unwrap_or_default();
                (g.name, counters)
            })
            .collect(),
        listeners: counted,
        store_commits: state.broker.store_commit_latency(),
        store_size: state.broker.store_size_bytes(),
    };
    labelled::render(&inputs, &mut text);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emqx_names_and_types() {
        let text = render(
            &[("connections.count", 3), ("connections.max", 5)],
            &[("messages.received", 7), ("messages.dropped.no_subscribers", 1)],
        );
        assert!(text.contains("# TYPE emqx_connections_count gauge\nemqx_connections_count 3\n"));
        assert!(text.contains("# TYPE emqx_messages_received counter\nemqx_messages_received 7\n"));
        assert!(text.contains("emqx_messages_dropped_no_subscribers 1\n"));
    }

    #[test]
    fn gateways_and_listeners_are_labelled_gauges() {
        let mut text = String::new();
        render_labelled(
            &[("stomp", true, 2), ("coap", false, 0)],
            &[
                ("tcp:default".to_owned(), true),
                ("stomp:tcp:default".to_owned(), false),
            ],
            &mut text,
        );
        assert!(
            text.contains("portico_gateway_running{gateway=\"stomp\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("portico_gateway_running{gateway=\"coap\"} 0\n"), "{text}");
        assert!(
            text.contains("portico_gateway_connections{gateway=\"stomp\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("portico_listener_running{listener=\"stomp:tcp:default\"} 0\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 3, "one family each");
    }

    #[test]
    fn a_repeated_name_is_written_once() {
        let text = render(&[("a.b", 1)], &[("a_b", 2)]);
        assert_eq!(text.matches("# TYPE emqx_a_b").count(), 1);
    }
}
