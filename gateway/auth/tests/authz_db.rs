//! The built-in authorization rules: EMQX's check order (client id, user name, all), the
//! per-principal limit, and rules surviving a restart through the store's `authz.builtin` key
//! space. The SCRAM users survive a restart the same way (`authn.scram`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use common::MemStore;
use portico_auth::AuthzVerdict;
use portico_auth::authz_db::{self, AuthzDb, RuleError, Who};
use portico_auth::rules::{Permission, RawRule, RuleAction};
use portico_auth::scram::{self, ScramAlgorithm, ScramDb};
use portico_core::auth::{Action, ClientInfo};
use portico_core::journal::Journal;
use portico_core::store::{DurabilityMode, Store};

const TIMEOUT: Duration = Duration::from_secs(10);

fn journal(store: &Arc<MemStore>) -> Arc<Journal> {
    let store: Arc<dyn Store> = store.clone();
    Journal::start(store, DurabilityMode::Sync, Duration::from_millis(1)).expect("journal")
}

fn client(id: &str, user: Option<&str>) -> ClientInfo {
    ClientInfo::new(
        ByteString::from(id.to_owned()),
        user.map(|u| ByteString::from(u.to_owned())),
        "127.0.0.1:1".parse().expect("address"),
        "mqtt",
    )
}

fn allow(action: RuleAction, topic: &str) -> RawRule {
    RawRule::new(Permission::Allow, action, topic)
}

fn deny(action: RuleAction, topic: &str) -> RawRule {
    RawRule::new(Permission::Deny, action, topic)
}

#[test]
fn client_id_rules_then_user_name_rules_then_rules_for_all() {
    let db = AuthzDb::open(None, authz_db::DEFAULT_MAX_RULES).expect("open");
    db.set_rules(Who::All, vec![deny(RuleAction::All, "#")]).expect("all");
    db.set_rules(
        Who::Username("alice".into()),
        vec![allow(RuleAction::Publish, "t/#"), deny(RuleAction::Publish, "t/x")],
    )
    .expect("user");
    db.set_rules(
        Who::ClientId("dev-1".into()),
        vec![deny(RuleAction::Publish, "t/secret")],
    )
    .expect("client");
    let alice = client("dev-1", Some("alice"));
    assert_eq!(
        db.check(&alice, Action::Publish, "t/secret"),
        AuthzVerdict::Deny,
        "client id first"
    );
    assert_eq!(
        db.check(&alice, Action::Publish, "t/x"),
        AuthzVerdict::Allow,
        "first user rule wins"
    );
    assert_eq!(
        db.check(&alice, Action::Subscribe, "t/x"),
        AuthzVerdict::Deny,
        "then all"
    );
    let other = client("dev-2", None);
    assert_eq!(db.check(&other, Action::Publish, "t/a"), AuthzVerdict::Deny);
    db.delete_rules(&Who::All).expect("deleted");
    assert_eq!(db.check(&other, Action::Publish, "t/a"), AuthzVerdict::Ignore);
    assert_eq!(db.delete_rules(&Who::All), Err(RuleError::NotFound(Who::All)));

    // Placeholders and eq topics, as in acl.conf.
    db.set_rules(
        Who::All,
        vec![
            allow(RuleAction::Subscribe, "eq d/#"),
            allow(RuleAction::All, "home/${clientid}/#"),
        ],
    )
    .expect("all");
    assert_eq!(db.check(&other, Action::Subscribe, "d/#"), AuthzVerdict::Allow);
    assert_eq!(db.check(&other, Action::Subscribe, "d/a"), AuthzVerdict::Ignore);
    assert_eq!(db.check(&other, Action::Publish, "home/dev-2/x"), AuthzVerdict::Allow);
    assert_eq!(db.check(&other, Action::Publish, "home/dev-1/x"), AuthzVerdict::Ignore);
}

#[test]
fn limits_and_invalid_rules() {
    let db = AuthzDb::open(None, 2).expect("open");
    let user = Who::Username("u".into());
    db.add_rules(user.clone(), vec![allow(RuleAction::All, "a")])
        .expect("one");
    db.add_rules(user.clone(), vec![allow(RuleAction::All, "b")])
        .expect("two");
    assert_eq!(
        db.add_rules(user.clone(), vec![allow(RuleAction::All, "c")]),
        Err(RuleError::TooMany { count: 3, max: 2 })
    );
    assert_eq!(
        db.get_rules(&user).map(|r| r.len()),
        Some(2),
        "order kept, nothing added"
    );
    assert!(matches!(
        db.set_rules(user.clone(), vec![allow(RuleAction::All, "a/#/b")]),
        Err(RuleError::Invalid { index: 0, .. })
    ));
    assert_eq!(
        db.set_rules(Who::ClientId(String::new()), vec![allow(RuleAction::All, "a")]),
        Err(RuleError::BadWho)
    );
    db.set_rules(user.clone(), Vec::new()).expect("cleared");
    assert_eq!(db.get_rules(&user), None);
}

#[test]
fn rules_survive_a_restart() {
    let store = Arc::new(MemStore::default());
    let rules = vec![
        RawRule {
            qos: Some(vec![0, 1]),
            retain: Some(false),
            ..allow(RuleAction::Publish, "t/#")
        },
        deny(RuleAction::Subscribe, "eq #"),
    ];
    {
        let journal = journal(&store);
        let db = AuthzDb::open(Some(journal.clone()), 100).expect("open");
        db.set_rules(Who::Username("alice".into()), rules.clone()).expect("set");
        db.set_rules(Who::ClientId("gone".into()), vec![deny(RuleAction::All, "#")])
            .expect("set");
        db.set_rules(Who::All, vec![deny(RuleAction::All, "#")]).expect("set");
        db.delete_rules(&Who::ClientId("gone".into())).expect("deleted");
        assert!(db.flush(TIMEOUT));
        assert!(journal.stop(TIMEOUT));
    }
    assert_eq!(store.kv_scan(authz_db::KV_SPACE).expect("scan").len(), 2);
    let journal = journal(&store);
    let db = AuthzDb::open(Some(journal.clone()), 100).expect("reopen");
    assert_eq!(db.get_rules(&Who::Username("alice".into())), Some(rules));
    assert_eq!(db.list().len(), 2);
    assert_eq!(
        db.check(&client("c", Some("alice")), Action::Publish, "t/1"),
        AuthzVerdict::Allow
    );
    assert_eq!(db.check(&client("c", None), Action::Publish, "t/1"), AuthzVerdict::Deny);
    journal.stop(TIMEOUT);
}

#[test]
fn scram_users_survive_a_restart() {
    let store = Arc::new(MemStore::default());
    {
        let journal = journal(&store);
        let db = ScramDb::open(Some(journal.clone()), ScramAlgorithm::Sha256, 16).expect("open");
        db.add_user("alice", b"secret", true).expect("add");
        db.add_user("bob", b"x", false).expect("add");
        db.delete_user("bob").expect("delete");
        assert!(db.flush(TIMEOUT));
        assert!(journal.stop(TIMEOUT));
    }
    assert_eq!(store.kv_scan(scram::KV_SPACE).expect("scan").len(), 1);
    let journal = journal(&store);
    let db = ScramDb::open(Some(journal.clone()), ScramAlgorithm::Sha256, 16).expect("reopen");
    assert_eq!(db.len(), 1);
    assert_eq!(db.get_user("alice").map(|u| u.is_superuser), Some(true));
    journal.stop(TIMEOUT);
}

#[test]
fn validate_and_filtered_listing() {
    let db = AuthzDb::open(None, 2).expect("open");
    let who = Who::Username("u".into());
    assert!(db.validate(&who, &[allow(RuleAction::Publish, "a/#")]).is_ok());
    assert!(matches!(
        db.validate(&who, &vec![allow(RuleAction::Publish, "a/#"); 3]),
        Err(RuleError::TooMany { count: 3, max: 2 })
    ));
    assert!(matches!(
        db.validate(&who, &[allow(RuleAction::Publish, "a/#/b")]),
        Err(RuleError::Invalid { index: 0, .. })
    ));
    assert!(matches!(
        db.validate(&Who::ClientId(String::new()), &[]),
        Err(RuleError::BadWho)
    ));
    assert!(db.get_rules(&who).is_none(), "validate stores nothing");

    for name in ["ann", "bob", "dan"] {
        db.set_rules(Who::Username(name.into()), vec![deny(RuleAction::All, "x")])
            .expect("set");
    }
    db.set_rules(Who::ClientId("c1".into()), vec![deny(RuleAction::All, "x")])
        .expect("set");
    let users = |who: &Who| matches!(who, Who::Username(name) if name.contains('n'));
    let (page, count) = db.list_where(users, 0, 10);
    assert_eq!(count, 2);
    assert_eq!(page[0].0, Who::Username("ann".into()));
    assert_eq!(page[1].0, Who::Username("dan".into()));
    let (page, count) = db.list_where(users, 1, 10);
    assert_eq!((page.len(), count), (1, 2));
}
