//! Portico's labelled counter families (no EMQX equivalent in the Prometheus text; EMQX keeps
//! per-gateway and per-listener counters in its own API): per gateway its messages, bytes and
//! packets; per listener its connections, refusals, bytes and packets; the durable store's
//! commit latency histogram and size.

use std::fmt::Write as _;

use portico_core::metrics::{FrontendSnapshot, HistogramSnapshot, ListenerSnapshot};

/// What the families are made from, read from the broker at one scrape.
pub(crate) struct Inputs<'a> {
    /// Every configured gateway by name, with its frontend's message counters.
    pub gateways: Vec<(&'a str, FrontendSnapshot)>,
    /// Every listener by id (`tcp:default`, `coap:udp:default`), configured or that ran.
    pub listeners: Vec<(String, ListenerSnapshot)>,
    /// The store's commit latency; `None` without a durable store.
    pub store_commits: Option<HistogramSnapshot>,
    /// The store's size on disk.
    pub store_size: Option<u64>,
}

/// `value` as a label value: backslash, double quote and line feed escaped (text format 0.0.4).
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One family: its `# TYPE` line, then one sample per `(label value, value)`.
fn family(out: &mut String, name: &str, kind: &str, label: &str, samples: impl IntoIterator<Item = (String, u64)>) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (value_of_label, value) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape_label(&value_of_label));
    }
}

/// A gateway's listeners are those whose id starts with `<gateway>:`.
fn gateway_listeners<'a>(
    gateway: &'a str,
    listeners: &'a [(String, ListenerSnapshot)],
) -> impl Iterator<Item = &'a ListenerSnapshot> + 'a {
    listeners
        .iter()
        .filter(move |(id, _)| id.strip_prefix(gateway).is_some_and(|rest| rest.starts_with(':')))
        .map(|(_, snapshot)| snapshot)
}

/// Appends every family to `out`.
pub(crate) fn render(inputs: &Inputs<'_>, out: &mut String) {
    let gateways = &inputs.gateways;
    let listeners = &inputs.listeners;
    type Pick<T> = fn(&T) -> u64;
    let per_gateway_messages: [(&str, Pick<FrontendSnapshot>); 3] = [
        ("portico_gateway_messages_received", |s| s.messages_received),
        ("portico_gateway_messages_sent", |s| s.messages_sent),
        ("portico_gateway_messages_dropped", |s| s.messages_dropped),
    ];
    for (name, pick) in per_gateway_messages {
        family(
            out,
            name,
            "counter",
            "gateway",
            gateways.iter().map(|(g, s)| (g.to_string(), pick(s))),
        );
    }
    let per_gateway_io: [(&str, Pick<ListenerSnapshot>); 4] = [
        ("portico_gateway_bytes_received", |s| s.bytes_received),
        ("portico_gateway_bytes_sent", |s| s.bytes_sent),
        ("portico_gateway_packets_received", |s| s.packets_received),
        ("portico_gateway_packets_sent", |s| s.packets_sent),
    ];
    for (name, pick) in per_gateway_io {
        let samples = gateways
            .iter()
            .map(|(g, _)| (g.to_string(), gateway_listeners(g, listeners).map(pick).sum()));
        family(out, name, "counter", "gateway", samples);
    }

    let per_listener: [(&str, &str, Pick<ListenerSnapshot>); 6] = [
        ("portico_listener_connections_total", "counter", |s| s.accepted),
        ("portico_listener_connections", "gauge", |s| s.current),
        ("portico_listener_bytes_received_total", "counter", |s| s.bytes_received),
        ("portico_listener_bytes_sent_total", "counter", |s| s.bytes_sent),
        ("portico_listener_packets_received_total", "counter", |s| {
            s.packets_received
        }),
        ("portico_listener_packets_sent_total", "counter", |s| s.packets_sent),
    ];
    for (name, kind, pick) in per_listener {
        family(
            out,
            name,
            kind,
            "listener",
            listeners.iter().map(|(id, s)| (id.clone(), pick(s))),
        );
    }
    let _ = writeln!(out, "# TYPE portico_listener_refused_total counter");
    let reasons: [(&str, Pick<ListenerSnapshot>); 3] = [
        ("max_connections", |s| s.refused_max_connections),
        ("access_rules", |s| s.refused_access_rules),
        ("handshake", |s| s.refused_handshake),
    ];
    for (id, snapshot) in listeners {
        for (reason, pick) in reasons {
            let _ = writeln!(
                out,
                "portico_listener_refused_total{{listener=\"{}\",reason=\"{reason}\"}} {}",
                escape_label(id),
                pick(snapshot)
            );
        }
    }

    if let Some(commits) = &inputs.store_commits {
        let name = "portico_store_commit_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in &commits.buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", commits.count);
        let _ = writeln!(out, "{name}_sum {}", commits.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", commits.count);
    }
    if let Some(size) = inputs.store_size {
        let _ = writeln!(out, "# TYPE portico_store_size_bytes gauge");
        let _ = writeln!(out, "portico_store_size_bytes {size}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs<'static> {
        let coap_udp = ListenerSnapshot {
            accepted: 3,
            current: 1,
            bytes_received: 100,
            bytes_sent: 40,
            packets_received: 5,
            packets_sent: 4,
            ..Default::default()
        };
        let coap_dtls = ListenerSnapshot {
            bytes_received: 11,
            refused_max_connections: 2,
            ..Default::default()
        };
        Inputs {
            gateways: vec![
                (
                    "coap",
                    FrontendSnapshot {
                        messages_received: 7,
                        messages_sent: 6,
                        messages_dropped: 1,
                    },
                ),
                ("stomp", FrontendSnapshot::default()),
            ],
            listeners: vec![
                ("tcp:default".to_owned(), ListenerSnapshot::default()),
                ("coap:udp:default".to_owned(), coap_udp),
                ("coap:dtls:default".to_owned(), coap_dtls),
                ("coapx:udp:\"odd\"".to_owned(), ListenerSnapshot::default()),
            ],
            store_commits: Some(HistogramSnapshot {
                buckets: vec![(0.001, 2), (0.01, 5)],
                count: 6,
                sum_seconds: 0.25,
            }),
            store_size: Some(4096),
        }
    }

    #[test]
    fn gateway_samples_sum_their_listeners() {
        let mut text = String::new();
        render(&inputs(), &mut text);
        for line in [
            "portico_gateway_messages_received{gateway=\"coap\"} 7\n",
            "portico_gateway_messages_sent{gateway=\"coap\"} 6\n",
            "portico_gateway_messages_dropped{gateway=\"coap\"} 1\n",
            "portico_gateway_bytes_received{gateway=\"coap\"} 111\n",
            "portico_gateway_bytes_sent{gateway=\"coap\"} 40\n",
            "portico_gateway_packets_received{gateway=\"stomp\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn listener_families_are_labelled_and_typed() {
        let mut text = String::new();
        render(&inputs(), &mut text);
        for line in [
            "# TYPE portico_listener_connections_total counter\n",
            "# TYPE portico_listener_connections gauge\n",
            "portico_listener_connections_total{listener=\"coap:udp:default\"} 3\n",
            "portico_listener_connections{listener=\"coap:udp:default\"} 1\n",
            "portico_listener_refused_total{listener=\"coap:dtls:default\",reason=\"max_connections\"} 2\n",
            "portico_listener_bytes_sent_total{listener=\"coap:udp:default\"} 40\n",
            // Quotes in a label value are escaped.
            "portico_listener_connections{listener=\"coapx:udp:\\\"odd\\\"\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn store_histogram_has_cumulative_buckets_sum_and_count() {
        let mut text = String::new();
        render(&inputs(), &mut text);
        let expected = "# TYPE portico_store_commit_seconds histogram\n\
            portico_store_commit_seconds_bucket{le=\"0.001\"} 2\n\
            portico_store_commit_seconds_bucket{le=\"0.01\"} 5\n\
            portico_store_commit_seconds_bucket{le=\"+Inf\"} 6\n\
            portico_store_commit_seconds_sum 0.25\n\
            portico_store_commit_seconds_count 6\n";
        assert!(text.contains(expected), "{text}");
        assert!(text.contains("# TYPE portico_store_size_bytes gauge\nportico_store_size_bytes 4096\n"));
    }

    #[test]
    fn every_family_has_one_type_line() {
        let mut text = String::new();
        render(&inputs(), &mut text);
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        let total = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), total, "a family declared twice");
        // Every sample belongs to a declared family.
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|f| families.contains(f))
                .unwrap_or(name);
            assert!(families.contains(&family), "{sample} has no # TYPE");
        }
    }

    #[test]
    fn no_store_families_without_a_store() {
        let mut text = String::new();
        let mut bare = inputs();
        bare.store_commits = None;
        bare.store_size = None;
        render(&bare, &mut text);
        assert!(!text.contains("portico_store"));
    }
}
