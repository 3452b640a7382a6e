//! The `conns` scenario: open many idle subscribed connections, hold them, close them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::task::JoinSet;

use crate::client::{self, Conn};
use crate::report::{Latency, Report};
use crate::transport::Dialer;
use crate::{Config, version_name};

/// Failures printed in full; the rest are only counted.
const SHOWN_FAILURES: u64 = 5;

pub(crate) async fn run(cfg: &Config) -> Result<Report> {
    let rss_before = cfg.broker_pid.map(read_rss).transpose()?;
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let progress = cfg.progress.then(|| {
        let (opened, failed) = (opened.clone(), failed.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "[{:6.1}s] open {}  failed {}",
                    start.elapsed().as_secs_f64(),
                    opened.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed)
                );
            }
        })
    });

    let dialer = Arc::new(Dialer::new(cfg.addr, &cfg.transport)?);
    let start = tokio::time::Instant::now();
    let interval_ns = 1_000_000_000 / cfg.connect_rate.max(1);
    let mut tasks = JoinSet::new();
    for i in 0..cfg.connections as usize {
        tokio::time::sleep_until(start + Duration::from_nanos(interval_ns.saturating_mul(i as u64))).await;
        let (dialer, source, version, qos) = (dialer.clone(), cfg.source_ip(i), cfg.version, cfg.qos);
        let id = cfg.client_id("conn", i);
        let topic = format!("{}/{i}", cfg.topic_prefix);
        let (opened, failed) = (opened.clone(), failed.clone());
        tasks.spawn(async move {
            let result = async {
                let mut conn = client::connect(
                    &dialer,
                    source,
                    version,
                    &id,
                    &format!("connection {i}"),
                    client::SessionKind::Clean,
                )
                .await?;
                conn.subscribe(&topic, qos).await?;
                Ok::<Conn, anyhow::Error>(conn)
            }
            .await;
            match &result {
                Ok(_) => opened.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
            (result, Instant::now())
        });
    }
    let mut conns = Vec::with_capacity(cfg.connections as usize);
    let mut failures = 0u64;
    let mut last_done = Instant::now();
    while let Some(joined) = tasks.join_next().await {
        let (result, done) = joined.map_err(|e| anyhow!("a connection task panicked: {e}"))?;
        match result {
            Ok(conn) => {
                conns.push(conn);
                last_done = last_done.max(done);
            }
            Err(e) => {
                failures += 1;
                if failures <= SHOWN_FAILURES {
                    eprintln!("connection failed: {e:#}");
                }
            }
        }
    }
    if failures > SHOWN_FAILURES {
        eprintln!("... and {} more connection failures", failures - SHOWN_FAILURES);
    }
    let connect_secs = last_done
        .saturating_duration_since(start.into_std())
        .as_secs_f64()
        .max(1e-9);
    let opened_n = conns.len() as u64;
    eprintln!(
        "{opened_n} connections open ({failures} failed) in {connect_secs:.2} s; holding for {:?}",
        cfg.hold
    );
    tokio::time::sleep(cfg.hold).await;
    let rss_after = cfg.broker_pid.map(read_rss).transpose()?;
    if let Some(p) = progress {
        p.abort();
    }
    let mut closing = JoinSet::new();
    for conn in conns {
        closing.spawn(conn.disconnect());
    }
    while closing.join_next().await.is_some() {}

    let rss_per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened_n > 0 => Some((after as f64 - before as f64) / opened_n as f64),
        _ => None,
    };
    Ok(Report {
        scenario: cfg.scenario.name().to_owned(),
        version: version_name(cfg.version).to_owned(),
        transport: cfg.transport.transport.name().to_owned(),
        qos: cfg.qos as u8,
        size: None,
        publishers: None,
        subscribers: None,
        duration_s: Some(connect_secs),
        sent: None,
        expected: None,
        received: None,
        lost: None,
        duplicates: None,
        reordered: None,
        throughput_sent_per_s: None,
        throughput_received_per_s: None,
        latency_us: Latency::default(),
        connections: Some(opened_n),
        connect_failures: Some(failures),
        connect_rate_per_s: Some(opened_n as f64 / connect_secs),
        rss_per_conn_bytes: rss_per_conn,
        pub_protocol: cfg.pub_protocol.name().to_owned(),
        retransmits: None,
    })
}

/// VmRSS of a process in bytes, from `/proc/<pid>/status`.
fn read_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("--broker-pid {pid}: cannot read {path}"))?;
    parse_vmrss(&status).ok_or_else(|| anyhow!("--broker-pid {pid}: no VmRSS line in {path}"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_parsing() {
        let status = "Name:\tportico\nVmPeak:\t  10 kB\nVmRSS:\t   12345 kB\nThreads:\t2\n";
        assert_eq!(parse_vmrss(status), Some(12345 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert_eq!(parse_vmrss("VmRSS: lots kB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() -> Result<()> {
        assert!(read_rss(std::process::id())? > 0);
        assert!(read_rss(u32::MAX).is_err());
        Ok(())
    }
}
