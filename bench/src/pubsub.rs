//! The publish/subscribe scenarios: p2p, fanout and fanin. Publishers speak MQTT (here),
//! MQTT-SN (`sn`) or CoAP (`coap`), those two over [`datagram`], or STOMP over TCP (`stomp`);
//! subscribers always speak MQTT.

pub(crate) mod coap;
mod datagram;
pub(crate) mod dtls;
mod pacing;
pub(crate) mod sn;
pub(crate) mod stomp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use portico_mqtt::{Packet, QoS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Conn, PublishEncoder, ack, put_ack};
use crate::payload::{Header, from_ns, now_ns};
use crate::report::{Latency, Report};
use crate::schedule::Schedule;
use crate::tracker::{Seen, SeqSet, Tally};
use crate::transport::Dialer;
use crate::{Config, PubProtocol, Scenario, version_name};
use pacing::{Pacing, SEQ_LIMIT, Timeline, wait_until};

/// At most this many messages go into one write.
const MAX_BATCH_MSGS: usize = 1024;
/// A batch is closed once it reaches this many bytes.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Highest latency the histograms track (larger values are clamped).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Who publishes where and who receives what.
struct Topology {
    /// Topic of each publisher.
    pub_topics: Vec<String>,
    /// Filter of each subscriber and the publishers it should hear.
    subs: Vec<(String, Vec<usize>)>,
    /// Groups of subscribers that together receive each message once.
    groups: Vec<Vec<usize>>,
    /// Deliveries per published message.
    factor: u64,
}

fn topology(cfg: &Config) -> Topology {
    let prefix = &cfg.topic_prefix;
    let p = cfg.publishers as usize;
    let s = cfg.subscribers as usize;
    match cfg.scenario {
        Scenario::P2p => Topology {
            pub_topics: (0..p).map(|i| format!("{prefix}/{i}")).collect(),
            subs: (0..p).map(|i| (format!("{prefix}/{i}"), vec![i])).collect(),
            groups: (0..p).map(|i| vec![i]).collect(),
            factor: 1,
        },
        Scenario::Fanout => Topology {
            pub_topics: vec![format!("{prefix}/0")],
            subs: (0..s).map(|_| (format!("{prefix}/0"), vec![0])).collect(),
            groups: (0..s).map(|i| vec![i]).collect(),
            factor: s as u64,
        },
        Scenario::Fanin | Scenario::Conns => Topology {
            pub_topics: (0..p).map(|i| format!("{prefix}/{i}")).collect(),
            subs: (0..s)
                .map(|_| (format!("$share/bench/{prefix}/#"), (0..p).collect()))
                .collect(),
            groups: vec![(0..s).collect()],
            factor: 1,
        },
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| anyhow!("latency histogram: {e}"))
}

/// What one subscriber has seen.
struct SubStats {
    hist: Histogram<u64>,
    /// One per publisher index.
    streams: Vec<SeqSet>,
    /// Deliveries received during the measured window.
    in_window: u64,
    /// Publishes whose payload was not ours.
    invalid: u64,
}

/// Counters shared by all tasks.
struct Shared {
    sent: Vec<AtomicU64>,
    measured_sent: AtomicU64,
    unique: AtomicU64,
    deliveries: AtomicU64,
    rejected: AtomicU64,
    /// Datagram publishers (MQTT-SN, CoAP): QoS 1 messages sent again.
    retransmits: AtomicU64,
    /// Open loop: how late publishes of the measured window were written (ns after due).
    send_lag: Mutex<Histogram<u64>>,
    subs: Vec<Arc<Mutex<SubStats>>>,
}

impl Shared {
    fn new(publishers: usize, subs: Vec<Arc<Mutex<SubStats>>>) -> Result<Shared> {
        Ok(Shared {
            sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            measured_sent: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retransmits: AtomicU64::new(0),
            send_lag: Mutex::new(new_histogram()?),
            subs,
        })
    }

    fn total_sent(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    fn merged_histogram(&self) -> Result<Histogram<u64>> {
        let mut all = new_histogram()?;
        for s in &self.subs {
            all.add(&s.lock().hist)
                .map_err(|e| anyhow!("merging histograms: {e}"))?;
        }
        Ok(all)
    }
}

/// A connected publisher of any protocol.
enum PubConn {
    Mqtt(Conn),
    Sn(sn::SnConn),
    Coap(coap::CoapConn),
    Stomp(stomp::StompConn),
}

/// Starts connecting publisher `i` (MQTT: CONNECT; MQTT-SN: CONNECT and REGISTER of its topic;
/// CoAP: a discovery request; STOMP: CONNECT).
fn connect_publisher(
    cfg: &Config,
    dialer: Arc<Dialer>,
    source: Option<std::net::IpAddr>,
    i: usize,
    topic: &str,
) -> Result<JoinHandle<Result<PubConn>>> {
    let role = format!("publisher {i}");
    if cfg.pub_protocol == PubProtocol::Stomp {
        let Some(gateway) = cfg.stomp_addr else {
            bail!("STOMP publishers need the gateway's address (--stomp-port)")
        };
        let (id, topic) = (cfg.client_id("stomppub", i), topic.to_owned());
        return Ok(tokio::spawn(async move {
            stomp::connect(gateway, source, &id, &role, &topic)
                .await
                .map(PubConn::Stomp)
        }));
    }
    Ok(match (cfg.pub_protocol, cfg.sn_addr, cfg.coap_addr) {
        (PubProtocol::MqttSn, Some(gateway), _) => {
            let (id, topic) = (cfg.client_id("snpub", i), topic.to_owned());
            tokio::spawn(async move { sn::connect(gateway, source, &id, &role, &topic).await.map(PubConn::Sn) })
        }
        (PubProtocol::MqttSn, None, _) => bail!("MQTT-SN publishers need the gateway's address (--sn-port)"),
        (PubProtocol::Coap, _, Some(gateway)) => {
            let (id, topic, qos, size) = (cfg.client_id("coappub", i), topic.to_owned(), cfg.qos, cfg.size);
            let psk = cfg.coap_psk.clone();
            tokio::spawn(async move {
                coap::connect(gateway, source, &id, &role, (&topic, qos, size), psk.as_ref())
                    .await
                    .map(PubConn::Coap)
            })
        }
        (PubProtocol::Coap, _, None) => bail!("CoAP publishers need the gateway's address (--coap-port)"),
        (PubProtocol::Mqtt | PubProtocol::Stomp, ..) => {
            let (id, version) = (cfg.client_id("pub", i), cfg.version);
            tokio::spawn(async move {
                client::connect(&dialer, source, version, &id, &role, client::SessionKind::Clean)
                    .await
                    .map(PubConn::Mqtt)
            })
        }
    })
}

pub(crate) async fn run(cfg: &Config) -> Result<Report> {
    let topo = topology(cfg);
    let qos = cfg.qos;
    let npub = topo.pub_topics.len();
    let mut client_n = 0usize;
    let dialer = Arc::new(Dialer::new(cfg.addr, &cfg.transport)?);

    // Subscribers first: every SUBACK must be in before the first publish.
    let mut connecting = Vec::new();
    for (i, (filter, _)) in topo.subs.iter().enumerate() {
        let (dialer, source, version) = (dialer.clone(), cfg.source_ip(client_n), cfg.version);
        client_n += 1;
        let id = cfg.client_id("sub", i);
        let filter = filter.clone();
        let kind = if cfg.persistent_subscribers {
            client::SessionKind::Persistent
        } else {
            client::SessionKind::Clean
        };
        connecting.push(tokio::spawn(async move {
            let mut conn = client::connect(&dialer, source, version, &id, &format!("subscriber {i}"), kind).await?;
            conn.subscribe(&filter, qos).await?;
            Ok::<_, anyhow::Error>(conn)
        }));
    }
    let sub_conns = join_all(connecting).await?;
    let mut connecting = Vec::new();
    for (i, topic) in topo.pub_topics.iter().enumerate() {
        connecting.push(connect_publisher(
            cfg,
            dialer.clone(),
            cfg.source_ip(client_n),
            i,
            topic,
        )?);
        client_n += 1;
    }
    let pub_conns = join_all(connecting).await?;

    let mut subs = Vec::new();
    for _ in &topo.subs {
        subs.push(Arc::new(Mutex::new(SubStats {
            hist: new_histogram()?,
            streams: vec![SeqSet::default(); npub],
            in_window: 0,
            invalid: 0,
        })));
    }
    let shared = Arc::new(Shared::new(npub, subs)?);

    let start = now_ns() + 5_000_000;
    let warmup_end = start + duration_ns(cfg.warmup);
    let tl = Timeline {
        start,
        warmup_end,
        end: warmup_end + duration_ns(cfg.duration),
    };
    let stop_subs = CancellationToken::new();
    // Any client failing ends the run early instead of after the full duration.
    let abort = CancellationToken::new();
    let mut sub_tasks = Vec::new();
    for (i, conn) in sub_conns.into_iter().enumerate() {
        let (shared, stop) = (shared.clone(), stop_subs.clone());
        sub_tasks.push(spawn_client(&abort, subscriber(conn, i, shared, tl, stop)));
    }
    let mut pub_tasks = Vec::new();
    for (i, conn) in pub_conns.into_iter().enumerate() {
        let schedule = cfg.rate.map(|r| Schedule::new(tl.start, i as u32, npub as u32, r));
        let shared = shared.clone();
        let datagram_params = datagram::Params {
            idx: i,
            qos,
            size: cfg.size,
            schedule,
            tl,
            drain: cfg.drain,
        };
        let task = match conn {
            PubConn::Mqtt(conn) => {
                let window = usize::from(cfg.inflight.min(conn.receive_maximum));
                let params = PubParams {
                    idx: i,
                    enc: PublishEncoder::new(&topo.pub_topics[i], qos, cfg.version, cfg.size)?,
                    qos,
                    window,
                    schedule,
                    tl,
                    drain: cfg.drain,
                };
                spawn_client(&abort, publisher(conn, params, shared, abort.clone()))
            }
            PubConn::Sn(conn) => spawn_client(&abort, sn::publisher(conn, datagram_params, shared, abort.clone())),
            PubConn::Coap(conn) => spawn_client(&abort, coap::publisher(conn, datagram_params, shared, abort.clone())),
            PubConn::Stomp(conn) => {
                let params = stomp::Params {
                    idx: i,
                    qos,
                    size: cfg.size,
                    window: usize::from(cfg.inflight),
                    schedule,
                    tl,
                    drain: cfg.drain,
                };
                spawn_client(&abort, stomp::publisher(conn, params, shared, abort.clone()))
            }
        };
        pub_tasks.push(task);
    }
    let stop_progress = CancellationToken::new();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(progress(shared.clone(), tl, stop_progress.clone())));

    let published = join_all(pub_tasks).await;
    // Drain: wait until everything expected arrived or the drain time is over.
    let expected_total = shared.total_sent() * topo.factor;
    let drain_end = tokio::time::Instant::now() + cfg.drain;
    while !abort.is_cancelled()
        && shared.unique.load(Ordering::Relaxed) < expected_total
        && tokio::time::Instant::now() < drain_end
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_subs.cancel();
    let subscribed = join_all(sub_tasks).await;
    stop_progress.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    published?;
    subscribed?;

    let retransmits = shared.retransmits.load(Ordering::Relaxed);
    if retransmits > 0 {
        eprintln!(
            "warning: {retransmits} {} QoS 1 messages were sent again (not acknowledged in time)",
            cfg.pub_protocol.name()
        );
    }
    let rejected = shared.rejected.load(Ordering::Relaxed);
    if rejected > 0 {
        eprintln!("warning: the broker rejected {rejected} publishes with an error reason code");
    }
    let lag = shared.send_lag.lock();
    if !lag.is_empty() {
        eprintln!(
            "open-loop send lag (write start - scheduled time): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            lag.value_at_quantile(0.5) as f64 / 1e3,
            lag.value_at_quantile(0.99) as f64 / 1e3,
            lag.max() as f64 / 1e3
        );
    }
    drop(lag);
    build_report(cfg, &topo, &shared, tl)
}

fn build_report(cfg: &Config, topo: &Topology, shared: &Shared, tl: Timeline) -> Result<Report> {
    let sent: Vec<u64> = shared.sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    let mut tally = Tally::default();
    let mut in_window = 0;
    let mut invalid = 0;
    for group in &topo.groups {
        let Some(&first) = group.first() else { continue };
        for &p in &topo.subs[first].1 {
            let mut merged = SeqSet::default();
            for &s in group {
                merged.merge(&shared.subs[s].lock().streams[p]);
            }
            tally.add(&merged, sent[p]);
        }
    }
    for s in &shared.subs {
        let s = s.lock();
        in_window += s.in_window;
        invalid += s.invalid;
    }
    if invalid > 0 {
        eprintln!("warning: {invalid} received publishes did not carry a portico-bench payload of this run");
    }
    let hist = shared.merged_histogram()?;
    let secs = (tl.end - tl.warmup_end) as f64 / 1e9;
    Ok(Report {
        scenario: cfg.scenario.name().to_owned(),
        version: version_name(cfg.version).to_owned(),
        transport: cfg.transport.transport.name().to_owned(),
        qos: cfg.qos as u8,
        size: Some(cfg.size),
        publishers: Some(topo.pub_topics.len() as u32),
        subscribers: Some(topo.subs.len() as u32),
        duration_s: Some(secs),
        sent: Some(sent.iter().sum()),
        expected: Some(tally.expected),
        received: Some(tally.received),
        lost: Some(tally.lost),
        duplicates: Some(tally.duplicates),
        reordered: Some(tally.reordered),
        throughput_sent_per_s: Some(shared.measured_sent.load(Ordering::Relaxed) as f64 / secs),
        throughput_received_per_s: Some(in_window as f64 / secs),
        latency_us: Latency::from_ns_histogram(&hist),
        connections: None,
        connect_failures: None,
        connect_rate_per_s: None,
        rss_per_conn_bytes: None,
        pub_protocol: cfg.pub_protocol_label().to_owned(),
        retransmits: matches!(cfg.pub_protocol, PubProtocol::MqttSn | PubProtocol::Coap)
            .then(|| shared.retransmits.load(Ordering::Relaxed)),
    })
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}

/// Spawns a client's task; its failure cancels `abort`, which ends the run early.
fn spawn_client(
    abort: &CancellationToken,
    task: impl Future<Output = Result<()>> + Send + 'static,
) -> JoinHandle<Result<()>> {
    let abort = abort.clone();
    tokio::spawn(async move {
        let result = task.await;
        if result.is_err() {
            abort.cancel();
        }
        result
    })
}

/// Awaits every task; the first error (or panic) wins, after all have finished.
async fn join_all<T>(tasks: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow!("a client task panicked: {e}"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Packet ids of unacknowledged publishes, at most `window` at a time.
struct IdPool {
    used: Vec<bool>,
    in_use: usize,
    window: usize,
    next: u16,
}

impl IdPool {
    fn new(window: usize) -> IdPool {
        IdPool {
            used: vec![false; 65_536],
            in_use: 0,
            window: window.clamp(1, 65_535),
            next: 0,
        }
    }

    fn has_free(&self) -> bool {
        self.in_use < self.window
    }

    /// A free id; only call when [`IdPool::has_free`].
    fn alloc(&mut self) -> u16 {
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.used[usize::from(self.next)] {
                self.used[usize::from(self.next)] = true;
                self.in_use += 1;
                return self.next;
            }
        }
    }

    fn release(&mut self, id: u16) {
        if std::mem::replace(&mut self.used[usize::from(id)], false) {
            self.in_use -= 1;
        }
    }
}

struct PubParams {
    idx: usize,
    enc: PublishEncoder,
    qos: QoS,
    window: usize,
    schedule: Option<Schedule>,
    tl: Timeline,
    drain: Duration,
}

/// Handles the acknowledgements in the read buffer.
fn process_acks(conn: &mut Conn, ids: &mut IdPool, pending_rel: &mut Vec<u16>, shared: &Shared) -> Result<()> {
    while let Some(packet) = conn.try_decode()? {
        match packet {
            Packet::PubAck(r) | Packet::PubComp(r) => {
                if r.reason_code.is_error() {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                }
                ids.release(r.packet_id.get());
            }
            Packet::PubRec(r) if r.reason_code.is_error() => {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                ids.release(r.packet_id.get());
            }
            Packet::PubRec(r) => pending_rel.push(r.packet_id.get()),
            Packet::Disconnect(d) => bail!(
                "{}: the broker sent DISCONNECT {:?} (0x{:02X})",
                conn.name,
                d.reason_code,
                d.reason_code.as_u8()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Reads whatever is already there without waiting.
fn try_fill(conn: &mut Conn) -> Result<()> {
    loop {
        if conn.rbuf.capacity() - conn.rbuf.len() < client::READ_CHUNK / 4 {
            conn.rbuf.reserve(client::READ_CHUNK);
        }
        match conn.stream.try_read_buf(&mut conn.rbuf) {
            Ok(0) => bail!("{}: the broker closed the connection", conn.name),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("{}: read failed", conn.name)),
        }
    }
}

async fn publisher(mut conn: Conn, p: PubParams, shared: Arc<Shared>, abort: CancellationToken) -> Result<()> {
    let acked = p.qos != QoS::AtMostOnce;
    let mut ids = IdPool::new(p.window);
    let mut pending_rel: Vec<u16> = Vec::new();
    let mut wbuf = BytesMut::with_capacity(MAX_BATCH_BYTES + p.enc.packet_len());
    let mut seq: u64 = 0;
    let mut pacing = Pacing::new(p.idx, p.schedule, p.tl)?;
    tokio::time::sleep_until(from_ns(p.tl.start).into()).await;
    loop {
        if abort.is_cancelled() {
            break;
        }
        let now = now_ns();
        let Some(due) = pacing.sendable(seq, now) else { break };
        let mut measured = 0;
        let mut n = 0;
        while seq < due && n < MAX_BATCH_MSGS && wbuf.len() < MAX_BATCH_BYTES && (!acked || ids.has_free()) {
            let id = if acked { ids.alloc() } else { 0 };
            let (header, in_window) = pacing.header(seq, now);
            p.enc.put(&mut wbuf, id, header);
            measured += u64::from(in_window);
            seq += 1;
            n += 1;
        }
        for id in pending_rel.drain(..) {
            put_ack(&mut wbuf, ack::PUBREL, id);
        }
        if !wbuf.is_empty() {
            conn.stream
                .write_all(&wbuf)
                .await
                .with_context(|| format!("{}: write failed", conn.name))?;
            wbuf.clear();
            shared.sent[p.idx].store(seq, Ordering::Relaxed);
            shared.measured_sent.fetch_add(measured, Ordering::Relaxed);
        }
        if seq >= SEQ_LIMIT {
            break;
        }
        let caught_up = seq >= due;
        if acked {
            try_fill(&mut conn)?;
            process_acks(&mut conn, &mut ids, &mut pending_rel, &shared)?;
            if !pending_rel.is_empty() {
                continue;
            }
            if !ids.has_free() {
                // Window full: wait for acks (but not past the end of the run).
                tokio::select! {
                    r = conn.fill() => r?,
                    _ = tokio::time::sleep_until(from_ns(p.tl.end).into()) => {}
                }
                process_acks(&mut conn, &mut ids, &mut pending_rel, &shared)?;
                continue;
            }
        }
        if caught_up && let Some(s) = p.schedule {
            let next = s.due_ns(seq);
            if acked {
                tokio::select! {
                    r = conn.fill() => r?,
                    _ = wait_until(next) => {}
                }
            } else {
                wait_until(next).await;
            }
        }
    }
    if acked {
        let deadline = tokio::time::Instant::now() + p.drain;
        loop {
            process_acks(&mut conn, &mut ids, &mut pending_rel, &shared)?;
            if !pending_rel.is_empty() {
                for id in pending_rel.drain(..) {
                    put_ack(&mut wbuf, ack::PUBREL, id);
                }
                conn.stream
                    .write_all(&wbuf)
                    .await
                    .with_context(|| format!("{}: write failed", conn.name))?;
                wbuf.clear();
            }
            if ids.in_use == 0 {
                break;
            }
            tokio::select! {
                r = conn.fill() => r?,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    let _ = shared.send_lag.lock().add(&pacing.lag);
    conn.disconnect().await;
    Ok(())
}

async fn subscriber(
    mut conn: Conn,
    idx: usize,
    shared: Arc<Shared>,
    tl: Timeline,
    stop: CancellationToken,
) -> Result<()> {
    let stats = shared.subs[idx].clone();
    let mut wbuf = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = conn.fill() => r?,
        }
        let now = now_ns();
        let in_window = now >= tl.warmup_end && now < tl.end;
        let (mut new, mut deliveries) = (0u64, 0u64);
        {
            let mut st = stats.lock();
            let st = &mut *st;
            while let Some(packet) = conn.try_decode()? {
                match packet {
                    Packet::Publish(p) => {
                        deliveries += 1;
                        if let Some(id) = p.packet_id {
                            let first = if p.qos == QoS::ExactlyOnce {
                                ack::PUBREC
                            } else {
                                ack::PUBACK
                            };
                            put_ack(&mut wbuf, first, id.get());
                        }
                        let header = Header::read(&p.payload);
                        let Some(stream) = header.and_then(|h| st.streams.get_mut(h.publisher as usize)) else {
                            st.invalid += 1;
                            continue;
                        };
                        let Some(h) = header else { continue };
                        if stream.record(h.seq) != Seen::Duplicate {
                            new += 1;
                        }
                        if h.timestamp_ns >= tl.warmup_end && h.timestamp_ns < tl.end {
                            st.hist.saturating_record(now.saturating_sub(h.timestamp_ns).max(1));
                        }
                        st.in_window += u64::from(in_window);
                    }
                    Packet::PubRel(r) => put_ack(&mut wbuf, ack::PUBCOMP, r.packet_id.get()),
                    Packet::Disconnect(d) => bail!(
                        "{}: the broker sent DISCONNECT {:?} (0x{:02X})",
                        conn.name,
                        d.reason_code,
                        d.reason_code.as_u8()
                    ),
                    _ => {}
                }
            }
        }
        shared.unique.fetch_add(new, Ordering::Relaxed);
        shared.deliveries.fetch_add(deliveries, Ordering::Relaxed);
        if !wbuf.is_empty() {
            conn.stream
                .write_all(&wbuf)
                .await
                .with_context(|| format!("{}: write failed", conn.name))?;
            wbuf.clear();
        }
    }
    conn.disconnect().await;
    Ok(())
}

/// One stderr line per second: elapsed, sent/s, received/s, p99 so far.
async fn progress(shared: Arc<Shared>, tl: Timeline, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_sent, mut last_recv) = (0u64, 0u64);
    let mut last_t = now_ns();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = now_ns();
        let dt = (now - last_t) as f64 / 1e9;
        let sent = shared.total_sent();
        let recv = shared.deliveries.load(Ordering::Relaxed);
        let phase = if now < tl.warmup_end {
            "warmup"
        } else if now < tl.end {
            "measure"
        } else {
            "drain"
        };
        let p99 = match shared.merged_histogram() {
            Ok(h) if !h.is_empty() => format!("{:.1} us", h.value_at_quantile(0.99) as f64 / 1000.0),
            _ => "-".to_owned(),
        };
        eprintln!(
            "[{:6.1}s {phase:>7}] sent/s {:>10.0}  received/s {:>10.0}  p99 {p99}",
            now.saturating_sub(tl.start) as f64 / 1e9,
            (sent - last_sent) as f64 / dt,
            (recv - last_recv) as f64 / dt,
        );
        (last_sent, last_recv, last_t) = (sent, recv, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_pool_respects_window_and_skips_used_ids() {
        let mut ids = IdPool::new(3);
        let a = ids.alloc();
        let b = ids.alloc();
        let c = ids.alloc();
        assert_eq!((a, b, c), (1, 2, 3));
        assert!(!ids.has_free());
        ids.release(b);
        ids.release(b); // a second release of the same id is ignored
        assert!(ids.has_free());
        assert_eq!(ids.in_use, 2);
        // Wrap around: 0 is never handed out, ids in use are skipped.
        ids.next = u16::MAX - 1;
        assert_eq!(ids.alloc(), u16::MAX);
        ids.release(u16::MAX);
        ids.next = u16::MAX;
        assert_eq!(ids.alloc(), 2);
    }
}
