//! The result of a run: JSON for machines, a table for people.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// End-to-end latency percentiles in microseconds (all `None` without samples).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_ns_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| Some((ns as f64 / 1000.0 * 10.0).round() / 10.0);
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// One run's results; fields that do not apply to the scenario are `None` (JSON `null`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// `p2p`, `fanout`, `fanin` or `conns`.
    pub scenario: String,
    /// `3.1.1` or `5`.
    pub version: String,
    /// `tcp`, `tls`, `ws` or `wss` (of the MQTT clients).
    pub transport: String,
    /// What the publishers speak: `mqtt`, `mqtt-sn` or `coap` (subscribers are MQTT).
    pub pub_protocol: String,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload bytes.
    pub size: Option<usize>,
    /// Publishing clients.
    pub publishers: Option<u32>,
    /// Subscribing clients.
    pub subscribers: Option<u32>,
    /// Measured seconds: publishing time after warm-up (conns: time to open all connections).
    pub duration_s: Option<f64>,
    /// Messages published, warm-up included.
    pub sent: Option<u64>,
    /// Deliveries expected (sent × subscribers per message).
    pub expected: Option<u64>,
    /// Deliveries received, duplicates included.
    pub received: Option<u64>,
    /// Expected deliveries that never arrived.
    pub lost: Option<u64>,
    /// Extra deliveries of a message already received.
    pub duplicates: Option<u64>,
    /// Deliveries that arrived after a later message of the same publisher.
    pub reordered: Option<u64>,
    /// Messages sent per second during the measured window.
    pub throughput_sent_per_s: Option<f64>,
    /// Deliveries received per second during the measured window.
    pub throughput_received_per_s: Option<f64>,
    /// End-to-end latency of messages sent in the measured window.
    pub latency_us: Latency,
    /// Connections opened (conns).
    pub connections: Option<u64>,
    /// Connections that failed (conns).
    pub connect_failures: Option<u64>,
    /// Connections opened per second (conns).
    pub connect_rate_per_s: Option<f64>,
    /// Broker RSS growth per open connection (conns with `--broker-pid`).
    pub rss_per_conn_bytes: Option<f64>,
    /// MQTT-SN and CoAP QoS 1: messages sent again because no acknowledgement came in time
    /// (MQTT-SN: PUBLISH with DUP; CoAP: the same CON).
    pub retransmits: Option<u64>,
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("version", self.version.clone()),
            ("transport", self.transport.clone()),
            ("publishers speak", self.pub_protocol.clone()),
            ("qos", self.qos.to_string()),
        ];
        let int = |v: Option<u64>| v.map(|v| v.to_string());
        let num = |v: Option<f64>| v.map(|v| format!("{v:.1}"));
        let mut push = |name: &'static str, v: Option<String>| {
            if let Some(v) = v {
                rows.push((name, v));
            }
        };
        push("payload bytes", self.size.map(|v| v.to_string()));
        push("publishers", self.publishers.map(|v| v.to_string()));
        push("subscribers", self.subscribers.map(|v| v.to_string()));
        push("duration s", num(self.duration_s));
        push("sent", int(self.sent));
        push("expected", int(self.expected));
        push("received", int(self.received));
        push("lost", int(self.lost));
        push("duplicates", int(self.duplicates));
        push("reordered", int(self.reordered));
        push("sent msg/s", num(self.throughput_sent_per_s));
        push("received msg/s", num(self.throughput_received_per_s));
        let l = &self.latency_us;
        for (name, v) in [
            ("latency p50 us", l.p50),
            ("latency p90 us", l.p90),
            ("latency p99 us", l.p99),
            ("latency p99.9 us", l.p999),
            ("latency max us", l.max),
        ] {
            push(name, num(v));
        }
        push("connections", int(self.connections));
        push("connect failures", int(self.connect_failures));
        push("connect rate /s", num(self.connect_rate_per_s));
        push("RSS per conn bytes", num(self.rss_per_conn_bytes));
        push("retransmits", int(self.retransmits));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }
}
