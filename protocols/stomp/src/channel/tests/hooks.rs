//! The hook events a STOMP client fires, as an MQTT client's do (webhooks, traces).

use parking_lot::Mutex;
use portico_core::auth::ListenerAuthn;
use portico_core::hooks::{Event, EventListener};

use super::*;

/// Every event, as `kind client topic` lines.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventListener for Recorder {
    fn on_event(&self, event: &Event) {
        let topic = match event {
            Event::ClientSubscribe { topic, .. } | Event::ClientUnsubscribe { topic, .. } => topic.to_string(),
            Event::ClientConnack { result, .. } => (*result).to_owned(),
            other => other.message().map(|m| m.topic.to_string()).unwrap_or_default(),
        };
        let line = format!("{} {} {topic}", event.kind().name(), event.client_id());
        self.0.lock().push(line.trim_end().to_owned());
    }
}

fn recorder(h: &Harness) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    let ctx = h.broker.ctx(FrontendInfo {
        name: "test",
        mountpoint: ByteString::new(),
        authn: ListenerAuthn::Disabled,
    });
    ctx.hooks().add(recorder.clone());
    recorder
}

#[test]
fn connect_subscribe_delivery_and_ack_fire_their_hooks() {
    let h = Harness::new();
    let recorder = recorder(&h);
    let mut c = h.client();
    c.input("CONNECT\naccept-version:1.2\nclient-id:worker\n\n\0", 0);
    c.input("SUBSCRIBE\nid:0\ndestination:jobs\nack:client-individual\n\n\0", 1);
    h.publish("jobs", b"one", QoS::AtLeastOnce);
    let got = c.deliver(2);
    assert_eq!(messages(&got).len(), 1);
    c.input("ACK\nid:1\n\n\0", 3);
    c.input("UNSUBSCRIBE\nid:0\n\n\0", 4);
    let seen: Vec<String> = recorder
        .0
        .lock()
        .iter()
        .filter(|line| !line.starts_with("message.publish") && !line.starts_with("session."))
        .cloned()
        .collect();
    assert_eq!(
        seen,
        [
            "client.connect worker",
            "client.connack worker success",
            "client.connected worker",
            "client.subscribe worker jobs",
            "message.delivered worker jobs",
            "message.acked worker jobs",
            "client.unsubscribe worker jobs",
        ]
    );
}

#[test]
fn a_refused_login_fires_connack_with_the_reason() {
    use portico_core::auth::{AuthResult, Authenticator, ClientInfo, Refusal, Verdict};
    struct Nobody;
    impl Authenticator for Nobody {
        fn authenticate(&self, _: &ClientInfo, _: Option<&[u8]>) -> Verdict<AuthResult> {
            Verdict::Ready(AuthResult::Deny(Refusal::BadCredentials))
        }
    }
    let h = Harness::new();
    h.broker.set_authenticator(Arc::new(Nobody));
    let recorder = recorder(&h);
    let mut c = h.client();
    c.input(
        "CONNECT\naccept-version:1.2\nclient-id:intruder\nlogin:x\npasscode:y\n\n\0",
        0,
    );
    let seen = recorder.0.lock().clone();
    assert_eq!(
        seen,
        [
            "client.connect intruder",
            "client.connack intruder bad_username_or_password"
        ]
    );
}
