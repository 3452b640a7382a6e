//! Sans-I/O STOMP channel tests: a real broker, a fake clock, every frame through the codec
//! both ways as the driver would.

mod bad_input;
mod durable;
mod hooks;
mod messaging;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use portico_core::channel::{Codec, Output};
use portico_core::message::Origin;
use portico_core::{Broker, BrokerConfig, Message, TopicName};

use super::*;
use crate::codec::{Limits, StompCodec};

struct Harness {
    broker: Broker,
    frontend: StompFrontend,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(StompSettings::default())
    }

    fn with(settings: StompSettings) -> Harness {
        Harness::on(Broker::new(BrokerConfig::default()), settings)
    }

    fn on(broker: Broker, settings: StompSettings) -> Harness {
        let frontend = StompFrontend::new(&broker, settings);
        Harness {
            broker,
            frontend,
            t0: Instant::now(),
        }
    }

    fn client(&self) -> Client {
        let conn = self.broker.register_connection();
        let info = ConnInfo::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 61613)),
        );
        let (channel, codec) = self.frontend.new_connection(conn.clone(), info, self.t0);
        Client {
            channel,
            codec,
            peer_codec: StompCodec::with_version(Limits::default(), Version::V1_0),
            conn,
            t0: self.t0,
        }
    }

    /// A client connected with `accept-version: version`.
    fn connected(&self, version: &str) -> Client {
        let mut client = self.client();
        let got = client.input(&format!("CONNECT\naccept-version:{version}\nhost:h\n\n\0"), 0);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].frame().command, Command::Connected, "{got:?}");
        client
    }

    /// Publishes as an MQTT client would.
    fn publish(&self, topic: &str, payload: &'static [u8], qos: QoS) {
        let origin = Origin {
            client_id: "mqtt-pub".into(),
            protocol: "mqtt",
        };
        let topic = TopicName::new(topic).expect("valid topic");
        let message = Message::new(0, topic, Bytes::from_static(payload), qos, false, origin);
        self.broker.publish(message).expect("published");
        portico_core::wake::flush();
    }
}

use portico_core::QoS;

#[derive(Debug, PartialEq)]
enum Got {
    F(Frame),
    Close(CloseReason),
}

impl Got {
    fn frame(&self) -> &Frame {
        match self {
            Got::F(frame) => frame,
            Got::Close(reason) => panic!("expected a frame, got a close: {reason:?}"),
        }
    }
}

struct Client {
    channel: StompChannel,
    codec: StompCodec,
    /// The client's side: decodes what the server encoded.
    peer_codec: StompCodec,
    conn: Arc<ConnHandle>,
    t0: Instant,
}

impl Client {
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds raw bytes at `ms` through the server codec into the channel.
    fn input(&mut self, wire: &str, ms: u64) -> Vec<Got> {
        self.input_bytes(wire.as_bytes(), ms)
    }

    fn input_bytes(&mut self, wire: &[u8], ms: u64) -> Vec<Got> {
        let now = self.at(ms);
        let mut out = Out::new();
        let mut buf = BytesMut::from(wire);
        loop {
            if !self.channel.accepts_input() || out.is_closing() {
                break;
            }
            match self.codec.decode(&mut buf) {
                Ok(Some(frame)) => self.channel.handle_in(frame, now, &mut out),
                Ok(None) => break,
                Err(error) => {
                    self.channel.handle_decode_error(error, now, &mut out);
                    break;
                }
            }
        }
        self.collect(&mut out)
    }

    fn deliver(&mut self, ms: u64) -> Vec<Got> {
        portico_core::wake::flush();
        let mut out = Out::new();
        self.channel.handle_deliver(self.at(ms), &mut out);
        self.collect(&mut out)
    }

    fn timeout(&mut self, ms: u64) -> Vec<Got> {
        let mut out = Out::new();
        self.channel.handle_timeout(self.at(ms), &mut out);
        self.collect(&mut out)
    }

    fn collect(&mut self, out: &mut Out) -> Vec<Got> {
        portico_core::wake::flush();
        let mut got = Vec::new();
        for output in out.drain() {
            match output {
                Output::Send(frame) => {
                    let mut wire = BytesMut::new();
                    self.codec.encode(&frame, &mut wire).expect("encodes");
                    // The client learns the version from CONNECTED.
                    if frame.command == Command::Connected
                        && let Some(v) = Version::ALL
                            .iter()
                            .find(|v| Some(v.as_str()) == frame.header("version"))
                    {
                        self.peer_codec = StompCodec::with_version(Limits::default(), *v);
                    }
                    let decoded = self.peer_codec.decode(&mut wire).expect("decodes").expect("whole");
                    assert!(wire.is_empty());
                    got.push(Got::F(decoded));
                }
                Output::Close(reason) => got.push(Got::Close(reason)),
            }
        }
        got
    }
}

/// The MESSAGE frames among `got`.
fn messages(got: &[Got]) -> Vec<&Frame> {
    got.iter()
        .filter_map(|g| match g {
            Got::F(f) if f.command == Command::Message => Some(f),
            _ => None,
        })
        .collect()
}

/// Asserts an ERROR frame whose `message` header is `message`, followed by a close.
#[track_caller]
fn assert_error(got: &[Got], message: &str) -> Frame {
    assert_eq!(got.len(), 2, "{got:?}");
    let frame = got[0].frame().clone();
    assert_eq!(frame.command, Command::Error, "{got:?}");
    assert_eq!(frame.header("message"), Some(message), "{got:?}");
    assert_eq!(frame.header("content-type"), Some("text/plain"));
    assert!(!frame.body.is_empty(), "an ERROR explains itself");
    assert!(matches!(got[1], Got::Close(_)), "{got:?}");
    frame
}

#[test]
fn connect_negotiates_the_highest_common_version() {
    let h = Harness::new();
    for (offered, expected) in [("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0", "1.0")] {
        let mut c = h.client();
        let got = c.input(&format!("STOMP\naccept-version:{offered}\nhost:h\n\n\0"), 0);
        let connected = got[0].frame();
        assert_eq!(connected.header("version"), Some(expected));
        assert!(connected.header("server").is_some_and(|s| s.starts_with("Portico/")));
        assert_eq!(connected.header("session").map(str::len), Some(16));
        assert_eq!(connected.header("heart-beat"), Some("0,0"));
    }
    // No accept-version: 1.0.
    let mut c = h.client();
    let got = c.input("CONNECT\n\n\0", 0);
    assert_eq!(got[0].frame().header("version"), Some("1.0"));
}

#[test]
fn no_common_version_is_an_error_listing_ours() {
    let h = Harness::new();
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:2.0\n\n\0", 0);
    let error = assert_error(&got, "Unsupported protocol version");
    assert_eq!(error.header("version"), Some("1.0,1.1,1.2"));
}

#[test]
fn heart_beats_are_negotiated_sent_and_enforced() {
    let h = Harness::new();
    let mut c = h.client();
    // The client can send every 1 s and wants one every 2 s; a 10 ms wish is raised to the
    // 100 ms floor.
    let got = c.input("CONNECT\naccept-version:1.2\nheart-beat:1000,2000\n\n\0", 0);
    assert_eq!(got[0].frame().header("heart-beat"), Some("2000,1000"));
    assert_eq!(c.channel.poll_timeout(), Some(c.at(2000)));
    // Client heart-beats keep it open; we send ours when we have been silent for 2 s.
    assert!(c.input("\n", 1900).is_empty());
    assert_eq!(c.timeout(2000), [Got::F(Frame::heart_beat())]);
    assert!(c.timeout(3500).is_empty());
    // Silence past twice the client's interval closes the connection.
    let got = c.timeout(1900 + 2000);
    assert_error(&got, "Heart-beat timeout");

    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nheart-beat:10,0\n\n\0", 0);
    assert_eq!(got[0].frame().header("heart-beat"), Some("0,100"));

    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nheart-beat:soon\n\n\0", 0);
    assert_error(&got, "Invalid heart-beat header");
}

#[test]
fn connect_must_come_within_idle_timeout() {
    let h = Harness::new();
    let mut c = h.client();
    assert_eq!(c.channel.poll_timeout(), Some(c.at(30_000)));
    let got = c.timeout(30_000);
    assert_eq!(got, [Got::Close(CloseReason::KeepAliveTimeout)]);
}

#[test]
fn login_and_passcode_go_through_authentication() {
    use portico_core::auth::{AuthResult, Authenticator, Refusal};
    struct OnlyAlice;
    impl Authenticator for OnlyAlice {
        fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> Verdict<AuthResult> {
            Verdict::Ready(
                if client.username.as_deref() == Some("alice") && password == Some(b"s3cret") {
                    AuthResult::ALLOW
                } else {
                    AuthResult::Deny(Refusal::BadCredentials)
                },
            )
        }
    }
    use portico_core::auth::{ClientInfo, Verdict};
    let h = Harness::new();
    h.broker.set_authenticator(Arc::new(OnlyAlice));
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:s3cret\n\n\0", 0);
    assert_eq!(got[0].frame().command, Command::Connected);
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:guess\n\n\0", 0);
    assert_error(&got, "Login failed");
    assert!(matches!(got[1], Got::Close(CloseReason::NotAuthorized)));
}

#[test]
fn authentication_answered_later_holds_input() {
    use portico_core::auth::{AuthResult, Authenticator, ClientInfo, Resolver, Verdict, pending_pair};
    use std::sync::Mutex;
    #[derive(Default)]
    struct Later(Mutex<Vec<Resolver<AuthResult>>>);
    impl Authenticator for Later {
        fn authenticate(&self, _: &ClientInfo, _: Option<&[u8]>) -> Verdict<AuthResult> {
            let (pending, resolver) = pending_pair();
            self.0.lock().expect("lock").push(resolver);
            Verdict::Pending(pending)
        }
    }
    let h = Harness::new();
    let later = Arc::new(Later::default());
    h.broker.set_authenticator(later.clone());
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:a\n\nx\0", 0);
    assert!(got.is_empty());
    assert!(!c.channel.accepts_input());
    later
        .0
        .lock()
        .expect("lock")
        .pop()
        .expect("a login waits")
        .resolve(AuthResult::ALLOW);
    let got = c.deliver(5);
    assert_eq!(got[0].frame().command, Command::Connected);
    assert!(c.channel.accepts_input());
}

#[test]
fn disconnect_sends_its_receipt_then_closes() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    assert_eq!(h.broker.session_count(), 1);
    let got = c.input("DISCONNECT\nreceipt:77\n\n\0", 1);
    assert_eq!(got[0].frame().command, Command::Receipt);
    assert_eq!(got[0].frame().header("receipt-id"), Some("77"));
    assert_eq!(got[1], Got::Close(CloseReason::ClientDisconnect));
    assert_eq!(h.broker.session_count(), 0, "the session ends with the connection");
}

#[test]
fn a_kick_says_kicked_out_then_closes() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    let mut out = Out::new();
    c.channel.handle_kick(KickReason::Administrative, c.at(1), &mut out);
    let got = c.collect(&mut out);
    assert_error(&got, "Kicked out");
    assert_eq!(got[1], Got::Close(CloseReason::Kicked(KickReason::Administrative)));
}
