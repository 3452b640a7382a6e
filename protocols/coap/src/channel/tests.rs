//! Sans-I/O CoAP channel tests: real broker, fake clock, messages through the codec both ways.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use portico_core::BrokerConfig;
use portico_core::auth::{Authenticator, Refusal};
use portico_core::channel::Output;
use portico_core::verdict::{Resolver, pending_pair};

use super::*;
use crate::block::Block;
use crate::message::Token;
use crate::settings::{Blockwise, NotifyType};

struct Harness {
    broker: Broker,
    frontend: CoapFrontend,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(CoapSettings::default())
    }

    fn with(settings: CoapSettings) -> Harness {
        let broker = Broker::new(BrokerConfig::default());
        let frontend = CoapFrontend::new(&broker, settings);
        Harness {
            broker,
            frontend,
            t0: Instant::now(),
        }
    }

    fn peer(&self, port: u16) -> Client {
        let conn = self.broker.register_connection();
        let info = ConnInfo::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 5683)),
        );
        Client {
            channel: self.frontend.new_peer(conn.clone(), info, self.t0),
            conn,
            next_id: 100,
        }
    }

    /// A client observing `topic` (NON registration: QoS 0 unless `query` says otherwise).
    fn observer(&self, port: u16, topic: &str, token: u64, query: &[&str]) -> Client {
        let mut c = self.peer(port);
        let mut get = c.request(Type::Con, Code::GET, &format!("ps/{topic}"), query);
        get.token = Token::from_u64(token);
        get.options.set_observe(0);
        let sent = c.send(&get, self.t0);
        let [Sent::M(response)] = &sent[..] else {
            panic!("expected the registration response, got {sent:?}")
        };
        assert_eq!(response.code, Code::CONTENT, "{response:?}");
        assert!(response.options.observe().is_some(), "carries Observe");
        c
    }
}

#[derive(Debug, PartialEq)]
enum Sent {
    M(Message),
    Close,
}

struct Client {
    channel: CoapChannel,
    conn: Arc<ConnHandle>,
    next_id: u16,
}

impl Client {
    fn request(&mut self, mtype: Type, code: Code, path: &str, query: &[&str]) -> Message {
        self.next_id += 1;
        let mut m = Message::new(mtype, code, self.next_id);
        m.token = Token::from_u64(u64::from(self.next_id));
        for segment in path.split('/') {
            m.options.push_uri_path(segment);
        }
        for q in query {
            m.options.push_uri_query(q);
        }
        m
    }

    fn collect(&self, out: &mut Out) -> Vec<Sent> {
        portico_core::wake::flush();
        out.drain()
            .map(|o| match o {
                Output::Send(m) => {
                    let mut buf = BytesMut::new();
                    self.channel.encode(&m, &mut buf).expect("encodes");
                    Sent::M(codec::decode(buf.freeze()).expect("decodes"))
                }
                Output::Close(_) => Sent::Close,
            })
            .collect()
    }

    fn send(&mut self, message: &Message, now: Instant) -> Vec<Sent> {
        let mut buf = BytesMut::new();
        codec::encode(message, &mut buf).expect("encodes");
        self.send_raw(buf.freeze(), now)
    }

    fn send_raw(&mut self, datagram: Bytes, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_datagram(datagram, now, &mut out);
        self.collect(&mut out)
    }

    fn deliver(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        if self.conn.take_deliver() {
            self.channel.handle_deliver(now, &mut out);
        }
        self.collect(&mut out)
    }

    fn timeout(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_timeout(now, &mut out);
        self.collect(&mut out)
    }

    /// Sends `message` and expects exactly one response, which it returns.
    fn ask(&mut self, message: &Message, now: Instant) -> Message {
        let sent = self.send(message, now);
        let [Sent::M(response)] = &sent[..] else {
            panic!("expected one response, got {sent:?}")
        };
        assert_eq!(
            response.token, message.token,
            "the response carries the request's token"
        );
        response.clone()
    }
}

fn payload_of(sent: &[Sent]) -> Vec<&[u8]> {
    sent.iter()
        .filter_map(|s| match s {
            Sent::M(m) => Some(&m.payload[..]),
            Sent::Close => None,
        })
        .collect()
}

#[test]
fn a_post_reaches_an_observer_as_a_notification() {
    let h = Harness::new();
    let mut obs = h.observer(1, "sensors/+/temp", 0xAB, &[]);
    let mut dev = h.peer(2);
    let post = dev
        .request(Type::Non, Code::POST, "ps/sensors/kitchen/temp", &[])
        .with_payload(&b"21.5"[..]);
    let response = dev.ask(&post, h.t0);
    assert_eq!((response.mtype, response.code), (Type::Non, Code::CHANGED));
    let sent = obs.deliver(h.t0);
    let [Sent::M(n)] = &sent[..] else {
        panic!("expected one notification, got {sent:?}")
    };
    assert_eq!(
        (n.mtype, n.code, n.token),
        (Type::Non, Code::CONTENT, Token::from_u64(0xAB))
    );
    assert_eq!(&n.payload[..], b"21.5");
    assert!(n.options.observe().is_some());
    assert_eq!(n.options.content_format(), None, "no Content-Format (EMQX)");
}

#[test]
fn a_piggybacked_ack_answers_a_con_and_its_duplicate_is_not_published_twice() {
    let h = Harness::new();
    let mut obs = h.observer(1, "t", 1, &[]);
    let mut dev = h.peer(2);
    let post = dev
        .request(Type::Con, Code::POST, "ps/t", &["qos=0"])
        .with_payload(&b"x"[..]);
    let first = dev.ask(&post, h.t0);
    assert_eq!(
        (first.mtype, first.message_id, first.code),
        (Type::Ack, post.message_id, Code::CHANGED)
    );
    let again = dev.ask(&post, h.t0 + Duration::from_secs(3));
    assert_eq!(again, first, "the same response from the exchange cache");
    assert_eq!(payload_of(&obs.deliver(h.t0)), [&b"x"[..]], "published once");
}

#[test]
fn observe_values_increase_from_the_registration_answer_on() {
    // RFC 7641 §3.4: a client drops a notification whose Observe value is not newer than the
    // last it saw. The first notification of a client's only observation once had the value of
    // the registration answer, and aiocoap dropped it (interop-tests/test_coap.py).
    let h = Harness::new();
    let mut obs = h.peer(1);
    let mut get = obs.request(Type::Con, Code::GET, "ps/seq", &[]);
    get.options.set_observe(0);
    let mut last = obs.ask(&get, h.t0).options.observe().expect("Observe");
    let mut dev = h.peer(2);
    for payload in [&b"1"[..], b"2", b"3"] {
        let post = dev.request(Type::Non, Code::POST, "ps/seq", &[]).with_payload(payload);
        assert_eq!(dev.ask(&post, h.t0).code, Code::CHANGED);
        let sent = obs.deliver(h.t0);
        let [Sent::M(n)] = &sent[..] else { panic!("{sent:?}") };
        let value = n.options.observe().expect("Observe");
        assert!(
            crate::observe::is_newer(last, value, Duration::ZERO),
            "{value} after {last}"
        );
        last = value;
    }
}

#[test]
fn notifications_follow_qos_con_ones_are_resent_until_acked_and_wait_in_order() {
    let h = Harness::with(CoapSettings {
        notify_type: NotifyType::Qos,
        ..CoapSettings::default()
    });
    let mut obs = h.observer(1, "q", 7, &["qos=1"]);
    let mut dev = h.peer(2);
    for (i, payload) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        let qos = if i == 1 { "qos=0" } else { "qos=1" };
        let post = dev.request(Type::Con, Code::POST, "ps/q", &[qos]).with_payload(payload);
        assert_eq!(dev.ask(&post, h.t0).code, Code::CHANGED);
    }
    let sent = obs.deliver(h.t0);
    let [Sent::M(first)] = &sent[..] else {
        panic!("one CON in flight, the rest wait: {sent:?}")
    };
    assert_eq!((first.mtype, &first.payload[..]), (Type::Con, &b"one"[..]));
    let resent = obs.timeout(h.t0 + Duration::from_secs(4));
    assert_eq!(resent, [Sent::M(first.clone())], "resent, same message id");
    let ack = Message::ack_for(first);
    let next = obs.send(&ack, h.t0 + Duration::from_secs(4));
    let kinds: Vec<_> = next
        .iter()
        .map(|s| match s {
            Sent::M(m) => (m.mtype, m.payload.clone()),
            Sent::Close => panic!("closed"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (Type::Non, Bytes::from_static(b"two")),
            (Type::Con, Bytes::from_static(b"three"))
        ]
    );
}

#[test]
fn unobserve_and_reset_end_observations() {
    let h = Harness::new();
    let mut obs = h.observer(1, "a", 1, &[]);
    let mut get = obs.request(Type::Con, Code::GET, "ps/a", &[]);
    get.options.set_observe(1);
    assert_eq!(obs.ask(&get, h.t0).code, Code::NO_CONTENT_EMQX);
    let mut dev = h.peer(2);
    let post = dev.request(Type::Non, Code::POST, "ps/a", &[]).with_payload(&b"m"[..]);
    dev.ask(&post, h.t0);
    assert_eq!(obs.deliver(h.t0), []);

    let mut obs = h.observer(3, "b", 2, &[]);
    let post = dev.request(Type::Non, Code::POST, "ps/b", &[]).with_payload(&b"m1"[..]);
    dev.ask(&post, h.t0);
    let sent = obs.deliver(h.t0);
    let [Sent::M(n)] = &sent[..] else { panic!("{sent:?}") };
    // RFC 7641 §3.6: a RST to a notification ends the observation.
    assert_eq!(obs.send(&Message::reset_for(n.message_id), h.t0), []);
    let post = dev.request(Type::Non, Code::POST, "ps/b", &[]).with_payload(&b"m2"[..]);
    dev.ask(&post, h.t0);
    assert_eq!(obs.deliver(h.t0), []);
}

#[test]
fn observe_takes_no_local_and_retain_handling_queries() {
    // EMQX reads `nl` and `rh` with `qos`; they were ignored (interop-tests/test_coap.py).
    let h = Harness::new();
    let mut dev = h.peer(9);
    let retained = dev
        .request(Type::Con, Code::POST, "ps/r", &["retain=true"])
        .with_payload(&b"kept"[..]);
    assert_eq!(dev.ask(&retained, h.t0).code, Code::CHANGED);
    // No rh: the registration answer, then the retained message (the resource's current
    // state); rh=2: the answer alone.
    for (port, query, expected) in [(1, None, &[&b""[..], b"kept"][..]), (2, Some("rh=2"), &[&b""[..]])] {
        let mut c = h.peer(port);
        let mut get = c.request(Type::Con, Code::GET, "ps/r", &query.into_iter().collect::<Vec<_>>());
        get.options.set_observe(0);
        let sent = c.send(&get, h.t0);
        assert_eq!(payload_of(&sent), expected, "{query:?}");
    }
    // nl=1: the client's own publishes do not come back.
    let mut own = h.observer(3, "r", 3, &["nl=1", "rh=2"]);
    let post = own
        .request(Type::Con, Code::POST, "ps/r", &[])
        .with_payload(&b"mine"[..]);
    assert_eq!(own.ask(&post, h.t0).code, Code::CHANGED);
    let post = dev
        .request(Type::Con, Code::POST, "ps/r", &[])
        .with_payload(&b"theirs"[..]);
    assert_eq!(dev.ask(&post, h.t0).code, Code::CHANGED);
    assert_eq!(payload_of(&own.deliver(h.t0)), [&b"theirs"[..]]);
    let mut bad = h.peer(4);
    let mut get = bad.request(Type::Con, Code::GET, "ps/r", &["rh=3"]);
    get.options.set_observe(0);
    assert_eq!(bad.ask(&get, h.t0).code, Code::BAD_REQUEST);
}

#[test]
fn topics_are_percent_decoded_as_emqx_does() {
    // A client that copies `ps/t/%23` into Uri-Path as it is (EMQX's documentation writes
    // wildcards so) observed the literal topic `t/%23` (interop-tests/test_coap.py).
    let h = Harness::new();
    let mut obs = h.observer(1, "t/%23", 1, &[]);
    let mut dev = h.peer(2);
    let post = dev
        .request(Type::Con, Code::POST, "ps/t/a%2Fb%20c", &[])
        .with_payload(&b"x"[..]);
    assert_eq!(dev.ask(&post, h.t0).code, Code::CHANGED);
    let sent = obs.deliver(h.t0);
    assert_eq!(payload_of(&sent), [&b"x"[..]], "t/a/b c matches t/#");
    for bad in ["ps/t/%zz", "ps/t/%ff", "ps/t/%23"] {
        let post = dev.request(Type::Con, Code::POST, bad, &[]);
        assert_eq!(dev.ask(&post, h.t0).code, Code::BAD_REQUEST, "{bad}");
    }
    let trailing = dev.request(Type::Con, Code::POST, "ps/t/100%", &[]);
    assert_eq!(dev.ask(&trailing, h.t0).code, Code::CHANGED);
}

#[test]
fn bad_requests_get_emqx_codes() {
    let h = Harness::new();
    let mut c = h.peer(1);
    let cases: Vec<(Message, Code)> = vec![
        (c.request(Type::Con, Code::GET, "ps/a", &[]), Code::BAD_REQUEST), // no Observe
        (
            c.request(Type::Con, Code::DELETE, "ps/a", &[]),
            Code::METHOD_NOT_ALLOWED,
        ),
        (c.request(Type::Con, Code::POST, "elsewhere", &[]), Code::BAD_REQUEST),
        (c.request(Type::Con, Code::POST, "ps", &[]), Code::BAD_REQUEST),
        (c.request(Type::Con, Code::POST, "ps/a/#", &[]), Code::BAD_REQUEST),
        (c.request(Type::Con, Code::POST, "ps/a", &["qos=3"]), Code::BAD_REQUEST),
        (c.request(Type::Con, Code::FETCH, "ps/a", &[]), Code::METHOD_NOT_ALLOWED),
    ];
    for (request, code) in cases {
        assert_eq!(c.ask(&request, h.t0).code, code, "{request:?}");
    }
    let mut observe = c.request(Type::Con, Code::GET, "ps/a", &[]);
    observe.token = Token::EMPTY;
    observe.options.set_observe(0);
    let response = c.send(&observe, h.t0);
    let [Sent::M(r)] = &response[..] else {
        panic!("{response:?}")
    };
    assert_eq!(
        (r.code, &r.payload[..]),
        (Code::BAD_REQUEST, &b"observe without token"[..])
    );
    // An unknown critical option: 4.02.
    let mut odd = c.request(Type::Con, Code::POST, "ps/a", &[]);
    odd.options.push(9, Bytes::from_static(b"x"));
    assert_eq!(c.ask(&odd, h.t0).code, Code::BAD_OPTION);
    // A CoAP ping: RST.
    let ping = Message::new(Type::Con, Code::EMPTY, 999);
    assert_eq!(c.send(&ping, h.t0), [Sent::M(Message::reset_for(999))]);
    // A malformed CON (token length 9): RST; a malformed NON: nothing.
    assert_eq!(
        c.send_raw(Bytes::from_static(&[0x49, 0x02, 0x12, 0x34]), h.t0),
        [Sent::M(Message::reset_for(0x1234))]
    );
    assert_eq!(c.send_raw(Bytes::from_static(&[0x59, 0x02, 0x12, 0x34]), h.t0), []);
}

#[test]
fn connection_mode_needs_the_token() {
    let h = Harness::with(CoapSettings {
        connection_required: true,
        ..CoapSettings::default()
    });
    // A refused stranger's channel ends after the answer: it holds nothing, and kept it would
    // catch the next request from its address (see `close_if_stranger`).
    let refused = |port: u16, path: &str, query: &[&str]| {
        let mut c = h.peer(port);
        let request = c.request(Type::Con, Code::POST, path, query);
        match &c.send(&request, h.t0)[..] {
            [Sent::M(r), Sent::Close] => (r.code, String::from_utf8(r.payload.to_vec()).expect("text")),
            other => panic!("expected a refusal and a close, got {other:?}"),
        }
    };
    assert_eq!(
        refused(2, "ps/a", &[]),
        (
            Code::BAD_REQUEST,
            "Missing token or clientid in connection mode".to_owned()
        )
    );
    assert_eq!(
        refused(3, "mqtt/connection", &[]),
        (Code::BAD_REQUEST, "Login Failed: clientid is required".to_owned())
    );
    assert_eq!(
        refused(4, "ps/a", &["c=dev1", "t=1"]),
        (
            Code::UNAUTHORIZED,
            "Invalid token or clientid in connection mode".to_owned()
        )
    );
    let mut c = h.peer(1);
    let login = c.request(
        Type::Con,
        Code::POST,
        "mqtt/connection",
        &["clientid=dev1", "username=u"],
    );
    let r = c.ask(&login, h.t0);
    assert_eq!(r.code, Code::CREATED);
    let token = String::from_utf8(r.payload.to_vec()).expect("text");
    assert!(token.parse::<u32>().is_ok_and(|t| t > 0), "{token}");
    assert_eq!(h.broker.session_count(), 1, "a session is open");
    let again = c.request(Type::Con, Code::POST, "mqtt/connection", &["clientid=dev1"]);
    assert_eq!(&c.ask(&again, h.t0).payload[..], b"Bad Request: client has connected");
    let wrong = c.request(Type::Con, Code::POST, "ps/a", &["c=dev1", "t=1"]);
    assert_eq!(c.ask(&wrong, h.t0).code, Code::UNAUTHORIZED);
    let t = format!("t={token}");
    let right = c.request(Type::Con, Code::POST, "ps/a", &["c=dev1", &t]);
    assert_eq!(c.ask(&right, h.t0).code, Code::CHANGED);
    let beat = c.request(Type::Con, Code::PUT, "mqtt/connection", &["c=dev1", &t]);
    assert_eq!(c.ask(&beat, h.t0).code, Code::CHANGED);
    let bye = c.request(Type::Con, Code::DELETE, "mqtt/connection", &["c=dev1", &t]);
    let sent = c.send(&bye, h.t0);
    assert!(
        matches!(&sent[..], [Sent::M(r), Sent::Close] if r.code == Code::DELETED),
        "{sent:?}"
    );
}

#[test]
fn a_connected_client_moves_to_a_new_address_with_its_token() {
    // coap-client sends each run from a new port (EMQX's own examples log in with one run and
    // publish with the next): the token names the connection, not the address.
    let h = Harness::with(CoapSettings {
        connection_required: true,
        ..CoapSettings::default()
    });
    let datagram = |m: &Message| codec::encode_to_bytes(m).expect("encodes");
    let mut c = h.peer(1);
    let login = c.request(Type::Con, Code::POST, "mqtt/connection", &["clientid=mover"]);
    let token = String::from_utf8(c.ask(&login, h.t0).payload.to_vec()).expect("text");
    assert_eq!(c.channel.client_key(), Some("mover"));
    assert!(c.channel.accepts_rebind());
    let t = format!("token={token}");
    let mut other = h.peer(2);
    let moves = other.request(Type::Con, Code::POST, "ps/a", &["clientid=mover", &t]);
    assert_eq!(h.frontend.rebind_key(&datagram(&moves)), Some("mover".to_owned()));
    for query in [
        &["clientid=mover", "token=1"][..],
        &["clientid=other", &t],
        &["clientid=mover"],
    ] {
        let stays = other.request(Type::Con, Code::POST, "ps/a", query);
        assert_eq!(h.frontend.rebind_key(&datagram(&stays)), None, "{query:?}");
    }
    c.channel.rebound(SocketAddr::from((Ipv4Addr::LOCALHOST, 2)));
    // Message ids start afresh: the new address's first id is no duplicate of the login.
    let mut post = c.request(Type::Con, Code::POST, "ps/a", &["c=mover", &t]);
    post.message_id = login.message_id;
    assert_eq!(c.ask(&post, h.t0).code, Code::CHANGED);
    let bye = c.request(Type::Con, Code::DELETE, "mqtt/connection", &["c=mover", &t]);
    assert!(matches!(&c.send(&bye, h.t0)[..], [Sent::M(r), Sent::Close] if r.code == Code::DELETED));
    assert_eq!(
        h.frontend.rebind_key(&datagram(&moves)),
        None,
        "the token died with the connection"
    );
}

#[test]
fn a_silent_client_is_gone_after_one_and_a_half_heartbeats() {
    let h = Harness::new();
    let mut obs = h.observer(1, "hb", 1, &[]);
    let deadline = obs.channel.poll_timeout().expect("a deadline");
    assert_eq!(deadline, h.t0 + Duration::from_secs(45));
    assert_eq!(obs.timeout(deadline - Duration::from_secs(1)), []);
    assert_eq!(obs.timeout(deadline), [Sent::Close]);
    assert_eq!(h.broker.session_count(), 0, "the session ended with it");
}

#[test]
fn block1_uploads_are_assembled_and_block2_serves_large_notifications() {
    let h = Harness::with(CoapSettings {
        blockwise: Blockwise {
            max_block_size: 16,
            ..Blockwise::default()
        },
        ..CoapSettings::default()
    });
    let mut obs = h.observer(1, "big", 5, &[]);
    let mut dev = h.peer(2);
    let body: Vec<u8> = (0..40u8).collect();
    for (num, chunk) in body.chunks(16).enumerate() {
        let last = (num + 1) * 16 >= body.len();
        let mut post = dev.request(Type::Con, Code::POST, "ps/big", &[]);
        post.options
            .set_block1(Block::new(num as u32, !last, 0).expect("block"));
        let post = post.with_payload(Bytes::copy_from_slice(chunk));
        let r = dev.ask(&post, h.t0);
        let echo = r.options.block1().expect("Block1 echoed");
        assert_eq!(echo.num(), num as u32);
        if last {
            assert_eq!(r.code, Code::CHANGED);
        } else {
            assert_eq!(r.code, Code::CONTINUE);
        }
    }
    let sent = obs.deliver(h.t0);
    let [Sent::M(n)] = &sent[..] else { panic!("{sent:?}") };
    assert_eq!(&n.payload[..], &body[..16], "the first block");
    assert_eq!(n.options.block2().map(|b| (b.num(), b.more())), Some((0, true)));
    assert_eq!(n.options.size2(), Some(40));
    let mut rest = Vec::from(&n.payload[..]);
    for num in 1..3 {
        let mut get = obs.request(Type::Con, Code::GET, "ps/big", &[]);
        get.options.set_block2(Block::new(num, false, 0).expect("block"));
        let r = obs.ask(&get, h.t0);
        assert_eq!(r.code, Code::CONTENT);
        rest.extend_from_slice(&r.payload);
    }
    assert_eq!(rest, body, "the whole body in three blocks");
    // Out of order: 4.08.
    let mut skip = dev.request(Type::Con, Code::POST, "ps/other", &[]);
    skip.options.set_block1(Block::new(2, true, 0).expect("block"));
    let skip = skip.with_payload(vec![0u8; 16]);
    assert_eq!(dev.ask(&skip, h.t0).code, Code::REQUEST_ENTITY_INCOMPLETE);
}

#[test]
fn large_notifications_go_whole_one_after_the_other_in_the_blocks_asked_for() {
    // Follow-up GETs name only the resource: a second large body once answered the first
    // one's follow-ups, and aiocoap assembled a mix of both (interop-tests/test_coap.py).
    let h = Harness::with(CoapSettings {
        blockwise: Blockwise {
            max_block_size: 32,
            ..Blockwise::default()
        },
        ..CoapSettings::default()
    });
    let mut obs = h.peer(1);
    let mut get = obs.request(Type::Con, Code::GET, "ps/big", &[]);
    get.options.set_observe(0);
    // Early negotiation (RFC 7959 §2.4): 16-byte blocks.
    get.options.set_block2(Block::new(0, false, 0).expect("block"));
    assert_eq!(obs.ask(&get, h.t0).code, Code::CONTENT);
    let mut dev = h.peer(2);
    let bodies = [vec![b'A'; 40], vec![b'B'; 40]];
    for body in &bodies {
        let post = dev
            .request(Type::Non, Code::POST, "ps/big", &[])
            .with_payload(body.clone());
        assert_eq!(dev.ask(&post, h.t0).code, Code::CHANGED);
    }
    let mut sent = obs.deliver(h.t0);
    let mut etags = Vec::new();
    for body in &bodies {
        let [Sent::M(first)] = &sent[..] else {
            panic!("one first block at a time: {sent:?}")
        };
        let block = first.options.block2().expect("Block2");
        assert_eq!((block.num(), block.more(), block.size()), (0, true, 16));
        etags.push(first.options.etag().cloned().expect("ETag"));
        let mut got = first.payload.to_vec();
        for num in 1..3 {
            let mut get = obs.request(Type::Con, Code::GET, "ps/big", &[]);
            get.options.set_block2(Block::new(num, false, 0).expect("block"));
            sent = obs.send(&get, h.t0);
            let Some(Sent::M(r)) = sent.first() else {
                panic!("{sent:?}")
            };
            assert_eq!((r.code, r.options.etag()), (Code::CONTENT, etags.last()));
            got.extend_from_slice(&r.payload);
            sent.remove(0);
        }
        assert_eq!(&got, body, "whole");
    }
    assert_eq!(sent, [], "nothing more");
    assert_ne!(etags[0], etags[1]);
}

struct DenyBad;

impl Authenticator for DenyBad {
    fn authenticate(&self, _client: &ClientInfo, password: Option<&[u8]>) -> Verdict<AuthResult> {
        Verdict::Ready(match password {
            Some(b"bad") => AuthResult::Deny(Refusal::BadCredentials),
            _ => AuthResult::ALLOW,
        })
    }
}

#[test]
fn connectionless_requests_are_authenticated_with_their_query() {
    let h = Harness::new();
    h.broker.set_authenticator(Arc::new(DenyBad));
    let mut c = h.peer(1);
    let bad = c.request(Type::Con, Code::POST, "ps/a", &["u=x", "p=bad"]);
    assert_eq!(c.ask(&bad, h.t0).code, Code::UNAUTHORIZED);
    let good = c.request(Type::Con, Code::POST, "ps/a", &["u=x", "p=good"]);
    assert_eq!(c.ask(&good, h.t0).code, Code::CHANGED);
    // Other credentials on the same channel are checked again.
    let bad = c.request(Type::Con, Code::POST, "ps/a", &["u=x", "p=bad"]);
    assert_eq!(c.ask(&bad, h.t0).code, Code::UNAUTHORIZED);
}

/// Answers later, through a resolver the test holds.
#[derive(Default)]
struct Later(Mutex<Vec<Resolver<AuthResult>>>);

impl Authenticator for Later {
    fn authenticate(&self, _client: &ClientInfo, _password: Option<&[u8]>) -> Verdict<AuthResult> {
        let (pending, resolver) = pending_pair();
        self.0.lock().push(resolver);
        Verdict::Pending(pending)
    }
}

#[test]
fn a_request_waits_for_a_late_authentication_answer() {
    let h = Harness::new();
    let later = Arc::new(Later::default());
    h.broker.set_authenticator(later.clone());
    let mut c = h.peer(1);
    let post = c.request(Type::Con, Code::POST, "ps/a", &["u=x", "p=y"]);
    assert_eq!(c.send(&post, h.t0), [], "held");
    assert!(!c.channel.accepts_input(), "later datagrams wait in order");
    later.0.lock().pop().expect("asked").resolve(AuthResult::ALLOW);
    let sent = c.deliver(h.t0);
    let [Sent::M(r)] = &sent[..] else { panic!("{sent:?}") };
    assert_eq!((r.code, r.token), (Code::CHANGED, post.token));
    assert!(c.channel.accepts_input());
}

#[test]
fn the_server_asks_a_connected_client_and_gets_its_response() {
    let h = Harness::with(CoapSettings {
        connection_required: true,
        ..CoapSettings::default()
    });
    let requests = h.frontend.device_requests.clone();
    let got: Arc<Mutex<Vec<DeviceResponse>>> = Arc::default();
    let reply = |got: &Arc<Mutex<Vec<DeviceResponse>>>| -> DeviceReply {
        let got = got.clone();
        Box::new(move |r| got.lock().push(r))
    };
    let ask = |path: &str| DeviceRequest {
        method: Code::GET,
        uri_path: path.split('/').map(str::to_owned).collect(),
        content_format: Some(0),
        payload: Bytes::new(),
        token: Token::new(b"api1").expect("short"),
    };
    assert_eq!(
        requests.send("dev1", ask("a"), reply(&got)),
        Err(DeviceRequestError::ClientNotFound)
    );
    let mut c = h.peer(1);
    let login = c.request(Type::Con, Code::POST, "mqtt/connection", &["clientid=dev1"]);
    let token = String::from_utf8(c.ask(&login, h.t0).payload.to_vec()).expect("text");

    requests
        .send("dev1", ask("sensors/temp"), reply(&got))
        .expect("handed over");
    let sent = c.deliver(h.t0);
    let [Sent::M(request)] = &sent[..] else {
        panic!("expected the request, got {sent:?}")
    };
    assert_eq!((request.mtype, request.code), (Type::Con, Code::GET));
    assert_eq!(request.uri_path_joined().expect("utf-8"), "sensors/temp");
    let mut content = Message::response_to(request, Code::CONTENT, 0).with_payload(&b"21.5"[..]);
    content.options.set_content_format(0);
    assert!(
        c.send(&content, h.t0).is_empty(),
        "a piggybacked response needs no answer"
    );
    let answered = got.lock().pop().expect("the caller is told");
    assert_eq!((answered.code, &answered.payload[..]), (Code::CONTENT, &b"21.5"[..]));
    assert_eq!(answered.token.as_bytes(), b"api1");

    // Bounded: the 17th waiting request is refused.
    for _ in 0..MAX_DEVICE_REQUESTS {
        requests.send("dev1", ask("x"), reply(&got)).expect("room");
    }
    assert_eq!(
        requests.send("dev1", ask("x"), reply(&got)),
        Err(DeviceRequestError::QueueFull)
    );
    // Gone with the connection.
    let bye = c.request(
        Type::Con,
        Code::DELETE,
        "mqtt/connection",
        &["c=dev1", &format!("token={token}")],
    );
    c.send(&bye, h.t0);
    assert_eq!(
        requests.send("dev1", ask("x"), reply(&got)),
        Err(DeviceRequestError::ClientNotFound)
    );
}
