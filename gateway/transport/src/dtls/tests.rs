//! The DTLS adapter: sans-I/O with an in-memory client on a fake clock (`memory`), over real
//! loopback sockets with the `rtc-dtls` client (`network`), with OpenSSL's `s_client`
//! (`openssl`), and the settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use portico_core::datagram::DatagramChannel;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::endpoint::EndpointEvent;

use crate::fuzzing::dtls::{IDENTITY, KEY, Pair, psk_client, psk_frontend};

#[path = "tests/network.rs"]
mod network;
#[path = "tests/openssl.rs"]
mod openssl;
#[path = "tests/psk_table.rs"]
mod psk_table;
#[path = "tests/settings.rs"]
mod settings;

const CCM8: CipherSuiteId = CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8;

fn pair(
    identity: &str,
    key: &[u8],
    timeout: Duration,
) -> (crate::dtls::DtlsFrontend<crate::fuzzing::dtls::Echo>, Pair) {
    let frontend = psk_frontend(timeout);
    let server = std::net::SocketAddr::from(([192, 0, 2, 2], 5684));
    let pair = Pair::new(&frontend, psk_client(identity, key, CCM8, server), Instant::now());
    (frontend, pair)
}

/// A record of `content_type` in `epoch` with sequence number `seq` and `body` (not
/// encrypted: a forgery).
fn forged(content_type: u8, epoch: u16, seq: u64, body: &[u8]) -> Bytes {
    let mut out = vec![content_type, 0xFE, 0xFD];
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes()[2..]);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[test]
fn memory_psk_handshake_echoes_and_names_the_identity() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.server.inner().is_none(), "no inner channel before the handshake");
    assert!(pair.handshake(), "the handshake completes");
    assert!(pair.server.is_established());
    assert_eq!(pair.exchange(b"hello"), vec![b"hello".to_vec()]);
    assert_eq!(pair.exchange(b"who"), vec![b"psk=dev1;cn=\n".to_vec()]);
    let infos = frontend.inner().infos.lock().clone();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].psk_identity.as_deref(), Some(IDENTITY));
    assert_eq!(infos[0].peer, pair.client_addr);
    assert_eq!(frontend.stats().snapshot().handshakes_completed, 1);
}

#[test]
fn memory_wrong_key_or_unknown_identity_fails_the_handshake() {
    for (identity, key) in [(IDENTITY, &b"wrong"[..]), ("nobody", KEY)] {
        let (frontend, mut pair) = pair(identity, key, Duration::from_secs(15));
        assert!(!pair.handshake(), "{identity}: no handshake");
        assert!(pair.server_closed, "{identity}: the server closed the peer");
        assert!(frontend.inner().infos.lock().is_empty(), "{identity}: no inner channel");
        assert_eq!(frontend.stats().snapshot().handshakes_failed, 1, "{identity}");
    }
}

#[test]
fn memory_a_silent_peer_is_closed_at_the_handshake_deadline() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(5));
    let hello = pair.client_datagrams();
    for datagram in hello {
        let sent = pair.deliver_to_server(datagram);
        assert!(!sent.is_empty(), "a HelloVerifyRequest");
    }
    // Nothing more from the client: the engine's retransmission timer runs, then the deadline.
    let deadline = pair.now + Duration::from_secs(5);
    while !pair.server_closed {
        let next = pair.server.poll_timeout().expect("a deadline while handshaking");
        assert!(next <= deadline, "never later than the handshake deadline");
        pair.now = next;
        pair.server_timeout();
    }
    assert!(pair.now >= deadline);
    assert_eq!(frontend.stats().snapshot().handshake_timeouts, 1);
    assert!(frontend.inner().infos.lock().is_empty());
}

#[test]
fn memory_kick_before_the_handshake_closes_and_closed_tells_nobody() {
    use portico_core::channel::Outbox;
    use portico_core::conn::KickReason;

    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    let mut out = Outbox::new();
    pair.server.handle_kick(KickReason::ServerShutdown, pair.now, &mut out);
    assert!(out.is_closing());
    pair.server.handle_closed(pair.now);
    assert!(frontend.inner().closed.lock().is_empty(), "no inner channel to tell");
}

#[test]
fn memory_after_the_handshake_every_call_reaches_the_inner_channel() {
    use portico_core::channel::{Outbox, Output};
    use portico_core::conn::KickReason;

    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    // A kick: the inner channel's last words go out encrypted, then close_notify, then the close.
    let mut out = Outbox::new();
    pair.server.handle_kick(KickReason::Administrative, pair.now, &mut out);
    let outputs: Vec<_> = out.drain().collect();
    assert!(matches!(outputs.last(), Some(Output::Close(_))));
    let sent: Vec<Bytes> = outputs
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(d) => Some(d),
            Output::Close(_) => None,
        })
        .collect();
    let events = pair.deliver_to_client(sent);
    assert!(
        matches!(&events[..], [EndpointEvent::ApplicationData(d), EndpointEvent::PeerClosed] if d.as_ref() == b"kicked\n"),
        "the kick reply, then close_notify"
    );
    pair.server.handle_closed(pair.now);
    assert_eq!(frontend.inner().closed.lock().as_slice(), &[pair.client_addr]);
}

#[test]
fn memory_the_inner_close_is_sent_as_close_notify() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    pair.client.write(pair.now, pair.server_addr, b"close").unwrap();
    let mut sent = Vec::new();
    for datagram in pair.client_datagrams() {
        sent.extend(pair.deliver_to_server(datagram));
    }
    assert!(pair.server_closed);
    let events = pair.deliver_to_client(sent);
    assert!(
        matches!(&events[..], [EndpointEvent::ApplicationData(d), EndpointEvent::PeerClosed] if d.as_ref() == b"bye\n"),
        "bye, then close_notify"
    );
    assert!(
        frontend.inner().closed.lock().is_empty(),
        "handle_closed is the driver's call"
    );
}

#[test]
fn memory_the_peer_close_notify_closes_the_channel() {
    let (_frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    let _ = pair.client.stop(pair.now, pair.server_addr);
    let mut sent = Vec::new();
    for datagram in pair.client_datagrams() {
        sent.extend(pair.deliver_to_server(datagram));
    }
    assert!(pair.server_closed, "close_notify closes");
    assert!(!sent.is_empty(), "and is answered");
}

#[test]
fn memory_garbage_after_the_handshake_is_dropped_and_the_association_goes_on() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    let garbage = [
        Bytes::from_static(b"not dtls at all"),
        // Truncated record.
        forged(23, 1, 5, b"abc").slice(..14),
        // Epoch 1 application data that does not authenticate: with a PSK suite the engine
        // would answer it with a fatal alert and fail.
        forged(23, 1, 100, &[0u8; 40]),
        // Epoch 1 alert that does not authenticate.
        forged(21, 1, 101, &[0u8; 24]),
        // Plaintext alerts in epoch 0 (the engine ignores them once established).
        forged(21, 0, 102, &[2, 40]),
        forged(21, 0, 103, &[1, 0]),
        // A future epoch.
        forged(23, 7, 1, &[0u8; 30]),
    ];
    for datagram in garbage {
        let sent = pair.deliver_to_server(datagram.clone());
        assert!(sent.is_empty(), "nothing answers {datagram:02x?}");
        assert!(!pair.server_closed, "{datagram:02x?} closed the association");
    }
    assert_eq!(pair.exchange(b"still here"), vec![b"still here".to_vec()]);
    assert!(frontend.stats().snapshot().records_dropped >= 4);
}

/// Found by fuzzing: rtc-dtls takes a ChangeCipherSpec record in epoch 1 without
/// authenticating it and moves to epoch 2, after which the real peer's records are all dropped.
#[test]
fn memory_a_forged_change_cipher_spec_cannot_move_the_epoch() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    for epoch in [1, 2, 7] {
        let sent = pair.deliver_to_server(forged(20, epoch, 9, &[1]));
        assert!(sent.is_empty() && !pair.server_closed, "epoch {epoch}");
    }
    assert_eq!(pair.exchange(b"still heard"), vec![b"still heard".to_vec()]);
    assert_eq!(frontend.stats().snapshot().records_dropped, 3);
}

/// A handshake fragment (epoch 0) of message `seq` that never completes.
fn stray_fragment(record_seq: u64, message_seq: u16, size: u16) -> Bytes {
    let mut body = vec![11, 0, 0x40, 0]; // Certificate, 16 KiB long
    body.extend_from_slice(&message_seq.to_be_bytes());
    body.extend_from_slice(&[0, 0x10, 0]); // at offset 4096
    body.push(0);
    body.extend_from_slice(&size.to_be_bytes()); // `size` bytes of it
    body.extend(std::iter::repeat_n(0xAB, usize::from(size)));
    forged(22, 0, record_seq, &body)
}

/// rtc-dtls buffers handshake fragments (up to 2 MB) and then fails every record: forged
/// epoch-0 fragments to an established association must not get it there.
#[test]
fn memory_stray_handshake_fragments_cannot_fill_the_engine() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    // 2 MB of 1000-byte fragments, then topped off byte by byte: without a bound the engine's
    // buffer ends up too full for even the smallest record, and the peer goes unheard.
    let sizes = std::iter::repeat_n(1000, 2_000).chain((1..1000).rev());
    for (i, size) in (0u64..).zip(sizes) {
        // The engine may take one for a repeat of the client's last flight and answer with
        // its own (a few times at most); it must not close.
        pair.deliver_to_server(stray_fragment(10_000 + i, 50 + (i % 1000) as u16, size));
        assert!(!pair.server_closed);
    }
    let message = [b'x'; 100];
    assert_eq!(pair.exchange(&message), vec![message.to_vec()], "still heard");
    assert!(frontend.stats().snapshot().records_dropped > 1_000);
}

/// The same during a handshake: the handshake fails once the budget is spent.
#[test]
fn memory_a_handshake_that_sends_too_much_fails() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    for datagram in pair.client_datagrams() {
        pair.deliver_to_server(datagram);
    }
    // Handshake fragments and records of the next epoch (which the engine would queue).
    let mut i = 0;
    while !pair.server_closed {
        assert!(i < 200, "the handshake input is bounded");
        let datagram = if i % 2 == 0 {
            stray_fragment(1_000 + i, 50, 1000)
        } else {
            forged(23, 1, 1_000 + i, &[0xCD; 1000])
        };
        pair.deliver_to_server(datagram);
        i += 1;
    }
    assert_eq!(frontend.stats().snapshot().handshakes_failed, 1);
}

#[test]
fn memory_a_replayed_record_is_ignored() {
    let (_frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    pair.client.write(pair.now, pair.server_addr, b"once").unwrap();
    let datagrams = pair.client_datagrams();
    let first = datagrams
        .iter()
        .flat_map(|d| pair.deliver_to_server(d.clone()))
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 1, "echoed once");
    let again = datagrams
        .iter()
        .flat_map(|d| pair.deliver_to_server(d.clone()))
        .collect::<Vec<_>>();
    assert!(again.is_empty(), "a replay is dropped (RFC 6347 §4.1.2.6)");
    assert!(!pair.server_closed);
}

/// A client endpoint on the pair's client address, with its ClientHello queued.
fn another_client(pair: &Pair, identity: &str, key: &[u8]) -> rtc_dtls::endpoint::Endpoint {
    let mut client = rtc_dtls::endpoint::Endpoint::new(pair.client_addr, rtc_shared::TransportProtocol::UDP, None);
    client
        .connect(
            pair.now,
            pair.server_addr,
            psk_client(identity, key, CCM8, pair.server_addr),
            None,
        )
        .unwrap();
    client
}

#[test]
fn memory_a_client_restarting_on_the_same_address_replaces_its_association() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    assert!(pair.handshake());
    assert_eq!(pair.exchange(b"old"), vec![b"old".to_vec()]);
    // The device restarts: same address, new handshake.
    let restarted = another_client(&pair, IDENTITY, KEY);
    let old = std::mem::replace(&mut pair.client, restarted);
    let hello = pair.client_datagrams();
    let verify_request: Vec<Bytes> = hello.into_iter().flat_map(|d| pair.deliver_to_server(d)).collect();
    assert!(!verify_request.is_empty(), "a HelloVerifyRequest");
    assert!(!pair.server_closed);
    // Until the cookie comes back the established association is untouched.
    let fresh = std::mem::replace(&mut pair.client, old);
    assert_eq!(pair.exchange(b"old still"), vec![b"old still".to_vec()]);
    assert!(frontend.inner().closed.lock().is_empty());
    pair.client = fresh;
    assert!(pair.deliver_to_client(verify_request).is_empty());
    assert!(pair.handshake(), "the new handshake completes");
    assert_eq!(pair.exchange(b"new"), vec![b"new".to_vec()]);
    assert_eq!(
        frontend.inner().closed.lock().as_slice(),
        &[pair.client_addr],
        "the old inner channel ended"
    );
    assert_eq!(frontend.inner().infos.lock().len(), 2, "a new inner channel");
    let counts = frontend.stats().snapshot();
    assert_eq!((counts.handshakes_restarted, counts.handshakes_completed), (1, 2));
}

#[test]
fn memory_a_forged_client_hello_leaves_the_established_association_alone() {
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(5));
    assert!(pair.handshake());
    let mut forger = another_client(&pair, IDENTITY, KEY);
    let hello = forger.poll_transmit().unwrap().message.freeze();
    for attempt in 0..3 {
        // The first is answered with a HelloVerifyRequest; its replays are ignored.
        let answer = pair.deliver_to_server(hello.clone());
        assert_eq!(answer.len(), usize::from(attempt == 0), "attempt {attempt}");
        assert!(answer.iter().all(|d| d.len() <= hello.len()), "no amplification");
    }
    assert_eq!(pair.exchange(b"unharmed"), vec![b"unharmed".to_vec()]);
    // The second association is dropped at the handshake timeout; nothing else happens.
    let deadline = pair.now + Duration::from_secs(5);
    while let Some(at) = pair.server.poll_timeout() {
        assert!(at <= deadline);
        pair.now = at;
        pair.server_timeout();
    }
    assert!(!pair.server_closed);
    assert_eq!(pair.exchange(b"still"), vec![b"still".to_vec()]);
    assert_eq!(frontend.stats().snapshot().handshakes_restarted, 0);
}

#[test]
fn every_fuzz_seed_passes_the_records_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/dtls_records");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
        let data = std::fs::read(entry.expect("an entry").path()).expect("a readable seed");
        crate::fuzzing::check_dtls_records(&data);
        seen += 1;
    }
    assert!(seen >= 4, "expected seeds in {}, found {seen}", dir.display());
}

/// Writes the `dtls_records` fuzz seeds (run by hand after changing the seed format).
#[test]
#[ignore = "writes fuzz/seeds/dtls_records; run by hand"]
fn write_fuzz_seeds() {
    fn datagrams(phase: u8, list: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![phase];
        for datagram in list {
            out.extend_from_slice(&u16::try_from(datagram.len()).unwrap().to_be_bytes());
            out.extend_from_slice(datagram);
        }
        out
    }
    let (_frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    let hello = pair.client_datagrams().remove(0);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/dtls_records");
    std::fs::create_dir_all(&dir).unwrap();
    let seeds: [(&str, Vec<u8>); 8] = [
        ("client_hello", datagrams(0, &[&hello])),
        (
            "client_hello_then_timers",
            datagrams(
                0,
                &[
                    &hello, b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"", b"",
                ],
            ),
        ),
        ("client_hello_twice", datagrams(0, &[&hello, &hello])),
        ("junk_before", datagrams(0, &[b"hello", &forged(23, 0, 1, b"x")])),
        (
            "garbage_after",
            datagrams(1, &[&forged(23, 1, 100, &[0; 40]), &forged(21, 1, 101, &[0; 24])]),
        ),
        (
            "plaintext_alerts_after",
            datagrams(1, &[&forged(21, 0, 50, &[2, 40]), &forged(21, 0, 51, &[1, 0])]),
        ),
        ("client_hello_after", datagrams(1, &[&hello, b"", &hello])),
        ("timers_after", datagrams(1, &[b"", b"", &forged(20, 0, 9, &[1])])),
    ];
    for (name, data) in seeds {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// The memory a spoofed ClientHello makes the server hold until the handshake timeout (the
/// figure in `docs/architecture.md`): RSS growth over 20,000 half-open associations.
#[test]
#[ignore = "a measurement, not a check: prints the cost of a half-open association"]
fn measure_a_half_open_association() {
    use portico_core::channel::{ConnInfo, Outbox};
    use portico_core::conn::{ConnHandle, ConnId};
    use portico_core::datagram::DatagramFrontend;

    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
    }
    const N: u16 = 20_000;
    let (frontend, mut pair) = pair(IDENTITY, KEY, Duration::from_secs(15));
    let hello = pair.client_datagrams().remove(0);
    let mut channels = Vec::with_capacity(usize::from(N));
    let before = rss();
    let started = Instant::now();
    for i in 0..N {
        let peer = std::net::SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000));
        let info = ConnInfo::new(peer, pair.server_addr);
        let mut channel = frontend.new_peer(ConnHandle::new(ConnId(u64::from(i))), info, pair.now);
        let mut out = Outbox::new();
        channel.handle_datagram(hello.clone(), pair.now, &mut out);
        assert_eq!(out.len(), 1, "a HelloVerifyRequest");
        channels.push(channel);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "a half-open association: {} bytes, {:?} of CPU",
        (rss() - before) / usize::from(N),
        elapsed / u32::from(N)
    );
    // Established PSK associations (their echo channel costs next to nothing); the half-open
    // ones stay, so that their memory is not reused.
    const M: u16 = 2_000;
    let mut established = Vec::with_capacity(usize::from(M));
    let before = rss();
    for _ in 0..M {
        let (_frontend, mut one) = self::pair(IDENTITY, KEY, Duration::from_secs(15));
        assert!(one.handshake());
        assert_eq!(one.exchange(b"x"), vec![b"x".to_vec()]);
        established.push(one.server);
    }
    eprintln!(
        "an established PSK association: {} bytes (the clients' freed memory reused)",
        (rss() - before) / usize::from(M)
    );
}
