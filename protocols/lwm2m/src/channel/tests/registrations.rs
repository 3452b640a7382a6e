//! Kept registrations: the durable store, rebuilding a channel on update (new address,
//! restart), takeover, the registration limit, the PSK identity binding, and the command
//! subscription's asynchronous authorization.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;
use portico_core::Extensions;
use portico_core::store::{DurabilityMode, Recovered, Store, StoreError, StoreOp};
use portico_core::verdict::Resolver;

use super::super::registrations::{Record, SPACE};
use super::*;

/// Key-value ops in memory; the broker's other ops (sessions) are accepted and ignored.
#[derive(Default)]
struct KvStore(Mutex<BTreeMap<(String, Bytes), Bytes>>);

impl Store for KvStore {
    fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut kv = self.0.lock();
        for op in ops {
            match op {
                StoreOp::KvPut { space, key, value } => {
                    kv.insert(((*space).to_owned(), key.clone()), value.clone());
                }
                StoreOp::KvDelete { space, key } => {
                    kv.remove(&((*space).to_owned(), key.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }

    fn kv_scan(&self, space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        Ok(self
            .0
            .lock()
            .iter()
            .filter(|((s, _), _)| s == space)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl KvStore {
    fn record(&self, ep: &str) -> Option<Record> {
        let kv = self.0.lock();
        let value = kv.get(&(SPACE.to_owned(), Bytes::copy_from_slice(ep.as_bytes())))?;
        Some(Record::decode(value).expect("a stored record decodes"))
    }
}

/// A broker on `store` in `batch` mode (`sync` has its own test).
fn durable_broker(store: &Arc<KvStore>) -> Broker {
    broker_in(store, DurabilityMode::Batch)
}

fn broker_in(store: &Arc<KvStore>, durability: DurabilityMode) -> Broker {
    let extensions = Extensions {
        store: Some(store.clone()),
        durability,
        ..Extensions::default()
    };
    Broker::with_extensions(BrokerConfig::default(), extensions).expect("the broker starts")
}

fn settings() -> Lwm2mSettings {
    Lwm2mSettings {
        registry: registry(),
        ..Lwm2mSettings::default()
    }
}

fn flush(h: &Harness) {
    assert!(h.broker.journal().expect("a journal").flush(Duration::from_secs(5)));
}

fn read_command(h: &Harness, ep: &str, id: i64) {
    let command = serde_json::json!({"reqID": id, "msgType": "read", "data": {"path": "/3/0/0"}});
    h.command(&format!("lwm2m/{ep}/dn/x"), command, None);
}

impl Device {
    fn update(&mut self, ep: &str, query: &[&str], now: Instant) -> Message {
        let update = self.request(Code::POST, &["rd", ep], query, b"");
        self.ask(&update, now)
    }

    fn kick(&mut self, reason: KickReason, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_kick(reason, now, &mut out);
        self.collect(&mut out)
    }
}

#[test]
fn an_update_from_a_new_address_rebuilds_the_channel_and_the_old_one_is_taken_over() {
    let h = Harness::new();
    let mut old = h.registered(1, "mover", &[]);
    let mut new = h.device(2);
    let changed = new.update("mover", &["lt=90"], h.t0);
    assert_eq!(changed.code, Code::CHANGED, "{changed:?}");
    assert_eq!(old.conn.kicked(), Some(KickReason::TakenOver));
    assert_eq!(old.kick(KickReason::TakenOver, h.t0), [Sent::Close]);
    let got = h.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "lwm2m/mover/up/update");
    assert_eq!(got[0].1["data"]["lt"], 90);
    assert_eq!(got[0].1["data"]["objectList"], serde_json::json!(["/3/0", "/3303/0"]));
    assert_eq!(h.frontend.registrations().len(), 1, "the old channel's close leaves it");
    read_command(&h, "mover", 1);
    let get = new.one_request(h.t0);
    assert_eq!(path_of(&get), "/3/0/0");
}

#[test]
fn an_unknown_location_is_still_4_04() {
    let h = Harness::new();
    let mut d = h.device(1);
    assert_eq!(d.update("nobody", &[], h.t0).code, Code::NOT_FOUND);
    assert!(d.channel.session.is_none());
}

#[test]
fn a_second_registration_of_an_endpoint_takes_it_over() {
    let h = Harness::new();
    let mut first = h.registered(1, "twice", &["device_id=a"]);
    // Another client id: the broker's session takeover would not reach the first channel.
    let second = h.registered(2, "twice", &["device_id=b"]);
    assert_eq!(first.conn.kicked(), Some(KickReason::TakenOver));
    assert_eq!(first.kick(KickReason::TakenOver, h.t0), [Sent::Close]);
    assert_eq!(h.frontend.registrations().len(), 1);
    let mut second = second;
    read_command(&h, "twice", 2);
    assert_eq!(path_of(&second.one_request(h.t0)), "/3/0/0");
}

#[test]
fn registrations_are_limited_and_a_known_endpoint_does_not_count_twice() {
    let h = Harness::with(Lwm2mSettings {
        max_registrations: 2,
        ..settings()
    });
    let _a = h.registered(1, "a", &[]);
    let mut b = h.registered(2, "b", &[]);
    let mut c = h.device(3);
    let reg = c.request(Code::POST, &["rd"], &["ep=c", "lt=60", "lwm2m=1"], b"</3/0>");
    let refused = c.ask(&reg, h.t0);
    assert_eq!(refused.code, Code::SERVICE_UNAVAILABLE);
    assert!(c.channel.session.is_none());
    // "a" again from elsewhere is a takeover, not a third registration.
    let _a2 = h.registered(4, "a", &[]);
    // A de-registration makes room.
    let delete = b.request(Code::DELETE, &["rd", "b"], &[], b"");
    assert_eq!(b.ask(&delete, h.t0).code, Code::DELETED);
    assert_eq!(h.frontend.registrations().len(), 1);
    let mut c = h.device(5);
    let reg = c.request(Code::POST, &["rd"], &["ep=c", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(c.ask(&reg, h.t0).code, Code::CREATED);
}

#[test]
fn a_registration_too_large_to_keep_is_refused() {
    let h = Harness::new();
    let mut d = h.device(1);
    let long = format!("x={}", "v".repeat(super::super::MAX_RECORD));
    let reg = d.request(Code::POST, &["rd"], &["ep=big", "lt=60", "lwm2m=1", &long], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert!(d.channel.session.is_none());
    assert!(h.frontend.registrations().is_empty());
}

#[test]
fn registrations_survive_a_restart_and_the_update_rebuilds_the_channel() {
    let store = Arc::new(KvStore::default());
    let before = Harness::on(durable_broker(&store), settings());
    let mut d = before.registered(1, "durable", &["b=UQ", "password=secret", "imei=42"]);
    flush(&before);
    let record = store.record("durable").expect("stored at registration");
    assert_eq!(record.username.as_deref(), Some("42"));
    assert!(record.queue_mode);
    assert!(!record.query.contains_key("password"), "no secret is stored");
    // The server shuts down: the registration stays.
    assert_eq!(d.kick(KickReason::ServerShutdown, before.t0), [Sent::Close]);
    flush(&before);
    assert!(store.record("durable").is_some());

    let after = Harness::on(durable_broker(&store), settings());
    assert_eq!(after.frontend.registrations().len(), 1, "restored");
    let mut d = after.device(7);
    let changed = d.update("durable", &[], after.t0);
    assert_eq!(changed.code, Code::CHANGED, "{changed:?}");
    let got = after.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].1["msgType"].as_str()),
        ("lwm2m/durable/up/update", Some("update"))
    );
    assert_eq!(got[0].1["data"]["imei"], "42");
    assert!(got[0].1["data"].get("password").is_none());
    // Queue mode came back with it: the update just heard opens the window.
    read_command(&after, "durable", 3);
    assert_eq!(path_of(&d.one_request(after.t0)), "/3/0/0");
    flush(&after);
    assert_eq!(store.record("durable").expect("rewritten").peer.port(), 7);
}

#[test]
fn ended_registrations_leave_the_store() {
    let store = Arc::new(KvStore::default());
    let h = Harness::on(durable_broker(&store), settings());
    let mut gone = h.registered(1, "gone", &[]);
    let mut expired = h.registered(2, "expired", &[]);
    let mut kicked = h.registered(3, "kicked", &[]);
    flush(&h);
    assert!(store.record("gone").is_some() && store.record("expired").is_some());
    let delete = gone.request(Code::DELETE, &["rd", "gone"], &[], b"");
    assert_eq!(gone.ask(&delete, h.t0).code, Code::DELETED);
    assert_eq!(expired.timeout(h.t0 + Duration::from_secs(61)), [Sent::Close]);
    assert_eq!(kicked.kick(KickReason::Administrative, h.t0), [Sent::Close]);
    flush(&h);
    assert!(store.0.lock().is_empty(), "{:?}", store.0.lock().keys());
    assert!(h.frontend.registrations().is_empty());
    let mut back = h.device(4);
    assert_eq!(back.update("gone", &[], h.t0).code, Code::NOT_FOUND);
}

#[test]
fn expired_and_damaged_records_are_dropped_at_load() {
    let store = Arc::new(KvStore::default());
    let stale = Record {
        endpoint: "stale".to_owned(),
        mountpoint: "lwm2m/stale/".to_owned(),
        query: BTreeMap::from([("ep".to_owned(), "stale".to_owned())]),
        lifetime_secs: 60,
        alternate_path: "/".to_owned(),
        object_list: vec!["/3/0".to_owned()],
        queue_mode: false,
        client_id: "stale".to_owned(),
        username: None,
        psk_identity: None,
        peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
        seen_ms: 1_000,
    };
    let fresh = Record {
        endpoint: "fresh".to_owned(),
        seen_ms: portico_core::message::now_millis(),
        ..stale.clone()
    };
    assert_eq!(Record::decode(&fresh.encode()), Ok(fresh.clone()));
    let rows = [
        ("stale", stale.encode()),
        ("fresh", fresh.encode()),
        ("junk", Bytes::from_static(b"{\"v\":1}")),
        ("future", Bytes::from_static(b"{\"v\":99}")),
    ];
    for (key, value) in rows {
        store.0.lock().insert((SPACE.to_owned(), Bytes::from(key)), value);
    }
    let h = Harness::on(durable_broker(&store), settings());
    assert_eq!(h.frontend.registrations().len(), 1);
    flush(&h);
    let keys: Vec<Bytes> = store.0.lock().keys().map(|(_, k)| k.clone()).collect();
    assert_eq!(keys, [Bytes::from("fresh")]);
    let mut d = h.device(5);
    assert_eq!(d.update("stale", &[], h.t0).code, Code::NOT_FOUND);
    assert_eq!(d.update("fresh", &[], h.t0).code, Code::CHANGED);
}

#[test]
fn a_rebuild_needs_the_same_psk_identity_and_the_authentication_chain() {
    struct Deny;
    impl portico_core::auth::Authenticator for Deny {
        fn authenticate(&self, _: &ClientInfo, _: Option<&[u8]>) -> Verdict<AuthResult> {
            Verdict::Ready(AuthResult::Deny(portico_core::auth::Refusal::NotAuthorized))
        }
    }
    let h = Harness::new();
    let mut d = h.device_with(1, Some("dev-psk"));
    let reg = d.request(Code::POST, &["rd"], &["ep=dev-psk", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED);
    let mut plain = h.device(2);
    assert_eq!(
        plain.update("dev-psk", &[], h.t0).code,
        Code::NOT_FOUND,
        "no PSK identity"
    );
    let mut other = h.device_with(3, Some("someone-else"));
    assert_eq!(other.update("dev-psk", &[], h.t0).code, Code::NOT_FOUND);
    assert_eq!(d.conn.kicked(), None, "refused attempts leave the registration alone");
    h.broker.set_authenticator(Arc::new(Deny));
    let mut same = h.device_with(4, Some("dev-psk"));
    let refused = same.update("dev-psk", &[], h.t0);
    assert_eq!(refused.code, Code::NOT_FOUND);
    assert_eq!(&refused.payload[..], b"Not Found: not_authorized");
    assert!(same.channel.session.is_none());
    h.broker.set_authenticator(Arc::new(portico_core::auth::AllowAll));
    let mut same = h.device_with(5, Some("dev-psk"));
    assert_eq!(same.update("dev-psk", &[], h.t0).code, Code::CHANGED);
}

#[test]
fn the_psk_identity_must_be_the_endpoint_when_configured() {
    let bound = Harness::with(Lwm2mSettings {
        psk_identity_as_endpoint: true,
        ..settings()
    });
    let mut d = bound.device_with(1, Some("dev-a"));
    let reg = d.request(Code::POST, &["rd"], &["ep=dev-b", "lt=60", "lwm2m=1"], b"</3/0>");
    let forbidden = d.ask(&reg, bound.t0);
    assert_eq!(forbidden.code, Code::FORBIDDEN);
    assert!(d.channel.session.is_none());
    let reg = d.request(Code::POST, &["rd"], &["ep=dev-a", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, bound.t0).code, Code::CREATED);
    // Without a PSK identity (plain UDP) there is nothing to bind to.
    let mut plain = bound.device(2);
    let reg = plain.request(Code::POST, &["rd"], &["ep=dev-b", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(plain.ask(&reg, bound.t0).code, Code::CREATED);
    // Off (the default), any endpoint goes.
    let free = Harness::new();
    let mut d = free.device_with(1, Some("dev-a"));
    let reg = d.request(Code::POST, &["rd"], &["ep=dev-b", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, free.t0).code, Code::CREATED);
}

/// Answers subscribe questions later (allows publishes at once).
#[derive(Default)]
struct LaterSubscribe(Mutex<Vec<(String, Resolver<bool>)>>);

impl portico_core::auth::Authorizer for LaterSubscribe {
    fn authorize(&self, _: &ClientInfo, action: Action, topic: &str) -> Verdict<bool> {
        if action != Action::Subscribe {
            return Verdict::Ready(true);
        }
        let (pending, resolver) = portico_core::verdict::pending_pair();
        self.0.lock().push((topic.to_owned(), resolver));
        Verdict::Pending(pending)
    }
}

#[test]
fn the_command_subscription_waits_for_a_pending_authorization() {
    let h = Harness::new();
    let later = Arc::new(LaterSubscribe::default());
    h.broker.set_authorizer(later.clone());
    let mut d = h.device(1);
    let reg = d.request(Code::POST, &["rd"], &["ep=slow", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED, "the registration is not held");
    assert!(d.channel.accepts_input());
    assert_eq!(h.received()[0].1["msgType"], "register");
    read_command(&h, "slow", 1);
    assert_eq!(d.deliver(h.t0), [], "not subscribed yet");
    let (filter, resolver) = later.0.lock().pop().expect("asked");
    assert_eq!(filter, "lwm2m/slow/dn/#");
    resolver.resolve(true);
    assert_eq!(
        d.deliver(h.t0),
        [],
        "subscribed now; the earlier command was not for it"
    );
    read_command(&h, "slow", 2);
    assert_eq!(path_of(&d.one_request(h.t0)), "/3/0/0");
}

#[test]
fn a_denied_pending_command_subscription_is_not_made() {
    let h = Harness::new();
    let later = Arc::new(LaterSubscribe::default());
    h.broker.set_authorizer(later.clone());
    let mut d = h.device(1);
    let reg = d.request(Code::POST, &["rd"], &["ep=nope", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED);
    let (_, resolver) = later.0.lock().pop().expect("asked");
    resolver.resolve(false);
    assert_eq!(d.deliver(h.t0), []);
    read_command(&h, "nope", 1);
    assert_eq!(d.deliver(h.t0), [], "no subscription, no command");
}

#[test]
fn in_sync_mode_the_answer_does_not_wait_and_leaves_no_ticket_behind() {
    let store = Arc::new(KvStore::default());
    let h = Harness::on(broker_in(&store, DurabilityMode::Sync), settings());
    let mut d = h.device(1);
    let reg = d.request(Code::POST, &["rd"], &["ep=synced", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED);
    // Another channel acknowledging on this thread must not wait for the record.
    assert!(portico_core::journal::take_ticket().is_none());
    flush(&h);
    assert!(store.record("synced").is_some());
}

#[test]
fn a_channel_dropped_by_its_transport_leaves_the_registration_for_the_device() {
    let store = Arc::new(KvStore::default());
    let h = Harness::on(durable_broker(&store), settings());
    let mut d = h.device_with(1, Some("dtls-dev"));
    let reg = d.request(Code::POST, &["rd"], &["ep=dtls-dev", "lt=60", "lwm2m=1"], b"</3/0>");
    assert_eq!(d.ask(&reg, h.t0).code, Code::CREATED);
    // The DTLS session ended (close_notify, an alert): no kick, no de-registration.
    d.channel.handle_closed(h.t0);
    flush(&h);
    assert!(store.record("dtls-dev").is_some());
    let mut back = h.device_with(2, Some("dtls-dev"));
    assert_eq!(back.update("dtls-dev", &[], h.t0).code, Code::CHANGED);
}

#[test]
fn a_sleeping_device_behind_a_new_nat_port_keeps_its_held_commands() {
    // The driver moves the live channel (rebind) instead of rebuilding one: what it held for
    // the sleeping device goes out after the update from the new port.
    let h = Harness::new();
    let (mut d, later) = h.asleep_with_a_held_read("napper", None);
    let update = d.request(Code::POST, &["rd", "napper"], &[], b"");
    let datagram = codec::encode_to_bytes(&update).expect("encodes");
    assert_eq!(h.frontend.rebind_key(&datagram), Some("napper".to_owned()));
    assert_eq!(d.channel.client_key(), Some("napper"));
    assert!(d.channel.accepts_rebind());
    let elsewhere = d.request(Code::POST, &["rd", "napper", "x"], &[], b"");
    assert_eq!(
        h.frontend
            .rebind_key(&codec::encode_to_bytes(&elsewhere).expect("encodes")),
        None,
        "only an update names an endpoint"
    );
    d.channel.rebound(SocketAddr::from((Ipv4Addr::LOCALHOST, 2)));
    let sent = d.send(&update, later);
    let [Sent::M(changed), Sent::M(get)] = &sent[..] else {
        panic!("the update's reply, then the held command: {sent:?}")
    };
    assert_eq!(changed.code, Code::CHANGED);
    assert_eq!(path_of(get), "/3/0/0");
    let update_event = h.received();
    assert_eq!(update_event.len(), 1, "{update_event:?}");
    assert_eq!(update_event[0].0, "lwm2m/napper/up/update");
}

#[test]
fn commands_held_by_a_taken_over_channel_go_to_its_successor() {
    // A DTLS device handshakes again from a new address (its channel cannot be moved): the
    // rebuilt channel gets what the old one held for the sleeping device.
    let h = Harness::new();
    let (mut old, later) = h.asleep_with_a_held_read("sleeper", None);
    let mut new = h.device(2);
    assert_eq!(new.update("sleeper", &[], later).code, Code::CHANGED);
    assert_eq!(old.conn.kicked(), Some(KickReason::TakenOver));
    assert_eq!(old.kick(KickReason::TakenOver, later), [Sent::Close]);
    let sent = new.deliver(later);
    let [Sent::M(get)] = &sent[..] else {
        panic!("the handed-over read: {sent:?}")
    };
    assert_eq!((get.code, path_of(get)), (Code::GET, "/3/0/0".to_owned()));
    let reply = piggybacked(get, Code::CONTENT, Some(0), b"EMQ".to_vec());
    assert!(new.send(&reply, later).is_empty());
    let got = h.received();
    let resp: Vec<_> = got.iter().filter(|(t, _)| t.ends_with("up/resp")).collect();
    assert_eq!(resp.len(), 1, "{got:?}");
    assert_eq!(
        (resp[0].1["reqID"].clone(), resp[0].1["data"]["code"].clone()),
        (1.into(), "2.05".into())
    );
}

#[test]
fn commands_of_a_channel_whose_transport_went_away_wait_for_the_rebuild() {
    // The old channel closes first (its DTLS session timed out), then the device comes back.
    let h = Harness::new();
    let (mut old, later) = h.asleep_with_a_held_read("dozer", None);
    old.channel.handle_closed(later);
    let mut new = h.device(2);
    assert_eq!(new.update("dozer", &[], later).code, Code::CHANGED);
    let sent = new.deliver(later);
    assert!(
        matches!(&sent[..], [Sent::M(get)] if path_of(get) == "/3/0/0"),
        "the read the old channel held: {sent:?}"
    );
}
