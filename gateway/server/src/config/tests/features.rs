//! Tests of the configuration keys of the MQTT 5 and EMQX broker features: shared-subscription
//! strategy, response information, delayed publish, rewrite, auto-subscribe, `$SYS`, retainer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn new_sections_default_to_emqx_values() {
    let config = Config::default();
    assert_eq!(config.mqtt.shared_subscription_strategy, SharedStrategy::RoundRobin);
    assert_eq!(config.mqtt.response_information, "");
    assert_eq!(
        config.delayed,
        DelayedConfig {
            enable: true,
            max_delayed_messages: 100_000
        }
    );
    assert!(config.rewrite.is_empty());
    assert!(config.auto_subscribe.topics.is_empty());
    assert_eq!(config.sys_topics.sys_msg_interval, Some(Duration::from_secs(60)));
    assert_eq!(config.sys_topics.sys_heartbeat_interval, Some(Duration::from_secs(30)));
    assert_eq!(
        config.sys_topics.sys_event_messages,
        SysEventMessages {
            client_connected: true,
            client_disconnected: true,
            client_subscribed: false,
            client_unsubscribed: false,
        }
    );
    assert_eq!(
        config.retainer,
        RetainerConfig {
            enable: true,
            max_retained_messages: usize::MAX,
            max_payload_size: 1 << 20,
            msg_expiry_interval: None,
        }
    );
    // The shipped file spells the defaults out; loading it must give exactly the same.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/portico.toml");
    assert_eq!(Config::load(Some(&path), []).unwrap(), config);
}

#[test]
fn shared_subscription_strategy_names() {
    for (strategy, name) in SharedStrategy::ALL {
        let config = Config::load(None, vars(&[("PORTICO_MQTT__SHARED_SUBSCRIPTION_STRATEGY", name)])).unwrap();
        assert_eq!(config.mqtt.shared_subscription_strategy, strategy);
        assert_eq!(strategy.as_str(), name);
    }
    let config = load_str(
        "strategy",
        "[mqtt]\nshared_subscription_strategy = \"hash_clientid\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.mqtt.shared_subscription_strategy, SharedStrategy::HashClientid);
    let errors = errors_of(load_str(
        "strategy-bad",
        "[mqtt]\nshared_subscription_strategy = \"least_loaded\"\n",
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 1, "{text}");
    assert!(
        text.contains("mqtt.shared_subscription_strategy = \"least_loaded\": expected one of random, round_robin,"),
        "{text}"
    );
    assert!(
        errors_of(load_str(
            "strategy-type",
            "[mqtt]\nshared_subscription_strategy = 1\n",
            &[]
        ))
        .errors()
        .len()
            == 1
    );
}

#[test]
fn response_information() {
    let config = load_str("resp-info", "[mqtt]\nresponse_information = \"reply/\"\n", &[]).unwrap();
    assert_eq!(config.mqtt.response_information, "reply/");
    let errors = errors_of(load_str("resp-info-type", "[mqtt]\nresponse_information = true\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("mqtt.response_information = true: expected a string"),
        "{errors}"
    );
    let long = "x".repeat(65_536);
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_MQTT__RESPONSE_INFORMATION", long.as_str())]),
    ));
    assert!(errors.to_string().contains("too long"), "{errors}");
}

#[test]
fn delayed_section() {
    let file = "[delayed]\nenable = false\nmax_delayed_messages = \"infinity\"\n";
    let config = load_str("delayed", file, &[]).unwrap();
    assert_eq!(
        config.delayed,
        DelayedConfig {
            enable: false,
            max_delayed_messages: usize::MAX
        }
    );
    let config = Config::load(None, vars(&[("PORTICO_DELAYED__MAX_DELAYED_MESSAGES", "5")])).unwrap();
    assert_eq!(config.delayed.max_delayed_messages, 5);
    let errors = errors_of(load_str(
        "delayed-bad",
        "[delayed]\nenable = \"yes\"\nmax_delayed_messages = 0\nmax_delayed = 1\n",
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 3, "{text}");
    assert!(
        text.contains("delayed.enable = \"yes\": expected true or false"),
        "{text}"
    );
    assert!(
        text.contains("delayed.max_delayed_messages = 0: must be at least 1; use \"infinity\" for no limit"),
        "{text}"
    );
    assert!(text.contains("delayed.max_delayed = 1: unknown key"), "{text}");
}

const TWO_RULES: &str = r#"
[[rewrite]]
action = "publish"
source_topic = "x/#"
re = "^x/y/(.+)$"
dest_topic = "z/y/$1"

[[rewrite]]
action = "subscribe"
source_topic = "a/+/b"
re = "^a/(\\w+)/b$"
dest_topic = "b/$1"
"#;

#[test]
fn rewrite_rules_load_in_order() {
    let config = load_str("rewrite", TWO_RULES, &[]).unwrap();
    assert_eq!(
        config.rewrite,
        vec![
            RewriteRule {
                action: RewriteAction::Publish,
                source_topic: "x/#".to_owned(),
                re: "^x/y/(.+)$".to_owned(),
                dest_topic: "z/y/$1".to_owned(),
            },
            RewriteRule {
                action: RewriteAction::Subscribe,
                source_topic: "a/+/b".to_owned(),
                re: "^a/(\\w+)/b$".to_owned(),
                dest_topic: "b/$1".to_owned(),
            },
        ]
    );
    // Inline-table form, as in the shipped file's example, and the `all` action.
    let file = r##"rewrite = [{ action = "all", source_topic = "#", re = ".*", dest_topic = "t" }]"##;
    let config = load_str("rewrite-inline", file, &[]).unwrap();
    assert_eq!(config.rewrite.len(), 1);
    assert_eq!(config.rewrite[0].action, RewriteAction::All);
}

#[test]
fn rewrite_env_overrides_an_element_and_appends() {
    let env = [
        ("PORTICO_REWRITE__1__DEST_TOPIC", "z/$1"),
        ("PORTICO_REWRITE__3__ACTION", "all"),
        ("PORTICO_REWRITE__3__SOURCE_TOPIC", "c/#"),
        ("PORTICO_REWRITE__3__RE", "^c/(.*)$"),
        ("PORTICO_REWRITE__3__DEST_TOPIC", "d/$1"),
    ];
    let config = load_str("rewrite-env", TWO_RULES, &env).unwrap();
    assert_eq!(config.rewrite.len(), 3);
    assert_eq!(config.rewrite[0].dest_topic, "z/$1");
    assert_eq!(
        config.rewrite[0].re, "^x/y/(.+)$",
        "the rest of the element comes from the file"
    );
    assert_eq!(config.rewrite[1].dest_topic, "b/$1");
    assert_eq!(config.rewrite[2].action, RewriteAction::All);
    assert_eq!(config.rewrite[2].source_topic, "c/#");

    // A bad override is blamed on the variable, with the 0-based element index in the key.
    let errors = errors_of(load_str(
        "rewrite-env-bad",
        TWO_RULES,
        &[("PORTICO_REWRITE__2__RE", "(")],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 1, "{text}");
    assert!(
        text.starts_with("env PORTICO_REWRITE__2__RE: rewrite[1].re = \"(\": not a valid regular expression"),
        "{text}"
    );
    // An element created by the environment that lacks keys is reported on the element.
    let errors = errors_of(load_str(
        "rewrite-env-missing",
        TWO_RULES,
        &[("PORTICO_REWRITE__3__ACTION", "all")],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 3, "{text}");
    assert!(
        text.contains("env PORTICO_REWRITE__3__ACTION: rewrite[2] = { action = \"all\" }: missing required key `re`"),
        "{text}"
    );
}

#[test]
fn bad_rewrite_rules_are_all_reported() {
    let file = r#"
[[rewrite]]
action = "deliver"
source_topic = "a/#/b"
re = "(unclosed"
dest_topic = ""
extra = 1

[[rewrite]]
action = "publish"
source_topic = "a+"
re = "^a(?=b)"

[[rewrite]]
action = "publish"
source_topic = ""
re = "x"
dest_topic = "y"
"#;
    let errors = errors_of(load_str("rewrite-bad", file, &[]));
    let text = errors.to_string();
    assert_eq!(
        text.lines().count(),
        errors.errors().len(),
        "one line per problem:\n{text}"
    );
    let expected = [
        "rewrite[0].action = \"deliver\": expected one of publish, subscribe, all",
        "rewrite[0].source_topic = \"a/#/b\": not a valid topic filter: '#' must be the last character",
        "rewrite[0].re = \"(unclosed\": not a valid regular expression",
        "rewrite[0].dest_topic = \"\": must not be empty",
        "rewrite[0].extra = 1: unknown key",
        "rewrite[1].source_topic = \"a+\": not a valid topic filter: '+' must occupy a whole level",
        "rewrite[1].re = \"^a(?=b)\": not a valid regular expression",
        "missing required key `dest_topic`",
        "rewrite[2].source_topic = \"\": not a valid topic filter: topic is empty",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
    assert!(text.contains("rewrite[1] = { action = \"publish\""), "{text}");

    let errors = errors_of(load_str("rewrite-shape", "rewrite = [1]\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("rewrite[0] = 1: expected a table, found an integer"),
        "{errors}"
    );
    let errors = errors_of(load_str("rewrite-type", "[rewrite]\naction = \"all\"\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("rewrite = { action = \"all\" }: expected an array of tables, found a table"),
        "{errors}"
    );
}

#[test]
fn auto_subscribe_topics() {
    let file = r#"
[[auto_subscribe.topics]]
topic = "client/${clientid}/inbox"
qos = 1
rh = 2
rap = 1
nl = 1

[[auto_subscribe.topics]]
topic = "all/${username}"
"#;
    let config = load_str("auto-sub", file, &[("PORTICO_AUTO_SUBSCRIBE__TOPICS__2__QOS", "2")]).unwrap();
    assert_eq!(
        config.auto_subscribe.topics,
        vec![
            AutoSubscribe {
                topic: "client/${clientid}/inbox".to_owned(),
                qos: 1,
                rh: 2,
                rap: true,
                nl: true,
            },
            AutoSubscribe {
                topic: "all/${username}".to_owned(),
                qos: 2,
                rh: 0,
                rap: false,
                nl: false,
            },
        ]
    );
    // The environment alone can create an entry; omitted options take their defaults.
    let config = Config::load(None, vars(&[("PORTICO_AUTO_SUBSCRIBE__TOPICS__1__TOPIC", "t/${host}")])).unwrap();
    assert_eq!(config.auto_subscribe.topics.len(), 1);
    assert_eq!(config.auto_subscribe.topics[0].topic, "t/${host}");
    assert_eq!(config.auto_subscribe.topics[0].qos, 0);

    let file = r#"
[auto_subscribe]
topics = [
  { topic = "", qos = 3, rh = -1, rap = 2, nl = true },
  { qos = 1 },
  { topic = "ok", retain = 1 },
]
"#;
    let errors = errors_of(load_str("auto-sub-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "auto_subscribe.topics[0].topic = \"\": must not be empty",
        "auto_subscribe.topics[0].qos = 3: out of range: must be between 0 and 2",
        "auto_subscribe.topics[0].rh = -1: out of range: must be between 0 and 2",
        "auto_subscribe.topics[0].rap = 2: out of range: must be between 0 and 1",
        "auto_subscribe.topics[0].nl = true: expected an integer",
        "auto_subscribe.topics[1] = { qos = 1 }: missing required key `topic`",
        "auto_subscribe.topics[2].retain = 1: unknown key",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");

    let long = "a".repeat(65_536);
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_AUTO_SUBSCRIBE__TOPICS__1__TOPIC", long.as_str())]),
    ));
    assert!(errors.to_string().contains("too long"), "{errors}");
}

#[test]
fn sys_topics_section() {
    let file = r#"
[sys_topics]
sys_msg_interval = "disabled"
sys_heartbeat_interval = "1m30s"
[sys_topics.sys_event_messages]
client_connected = false
client_subscribed = true
"#;
    let env = [("PORTICO_SYS_TOPICS__SYS_EVENT_MESSAGES__CLIENT_UNSUBSCRIBED", "true")];
    let config = load_str("sys", file, &env).unwrap();
    assert_eq!(
        config.sys_topics,
        SysTopicsConfig {
            sys_msg_interval: None,
            sys_heartbeat_interval: Some(Duration::from_secs(90)),
            sys_event_messages: SysEventMessages {
                client_connected: false,
                client_disconnected: true,
                client_subscribed: true,
                client_unsubscribed: true,
            },
        }
    );
    let config = Config::load(
        None,
        vars(&[("PORTICO_SYS_TOPICS__SYS_HEARTBEAT_INTERVAL", "disabled")]),
    )
    .unwrap();
    assert_eq!(config.sys_topics.sys_heartbeat_interval, None);

    let file = r#"
[sys_topics]
sys_msg_interval = 0
sys_heartbeat_interval = "never"
[sys_topics.sys_event_messages]
client_disconnected = 1
session_created = true
"#;
    let errors = errors_of(load_str("sys-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "sys_topics.sys_msg_interval = 0: must be greater than zero; use \"disabled\" to turn it off",
        "sys_topics.sys_heartbeat_interval = \"never\": expected a duration",
        "sys_topics.sys_event_messages.client_disconnected = 1: expected true or false",
        "sys_topics.sys_event_messages.session_created = true: unknown key",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
}

#[test]
fn retainer_section() {
    let file = r#"
[retainer]
enable = false
max_retained_messages = 5000
max_payload_size = "64KB"
msg_expiry_interval = "1h"
"#;
    let config = load_str("retainer", file, &[]).unwrap();
    assert_eq!(
        config.retainer,
        RetainerConfig {
            enable: false,
            max_retained_messages: 5000,
            max_payload_size: 64 << 10,
            msg_expiry_interval: Some(Duration::from_secs(3600)),
        }
    );
    for never in ["0s", "0", "disabled"] {
        let config = Config::load(None, vars(&[("PORTICO_RETAINER__MSG_EXPIRY_INTERVAL", never)])).unwrap();
        assert_eq!(config.retainer.msg_expiry_interval, None, "{never}");
    }

    let file = r#"
[retainer]
enable = 1
max_retained_messages = 0
max_payload_size = 0
msg_expiry_interval = "forever"
"#;
    let errors = errors_of(load_str("retainer-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "retainer.enable = 1: expected true or false",
        "retainer.max_retained_messages = 0: must be at least 1; use \"infinity\" for no limit",
        "retainer.max_payload_size = 0: must be at least 1 byte",
        "retainer.msg_expiry_interval = \"forever\": expected a duration",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_RETAINER__MAX_PAYLOAD_SIZE", "1TB")]),
    ));
    assert!(
        errors.to_string().starts_with(
            "env PORTICO_RETAINER__MAX_PAYLOAD_SIZE: retainer.max_payload_size = \"1TB\": expected a size"
        ),
        "{errors}"
    );
}

#[test]
fn durable_sessions_section() {
    use crate::config::DurableConfig;
    use portico_core::store::DurabilityMode;
    assert_eq!(Config::default().durable_sessions.mode, DurabilityMode::Sync);
    let file = "[durable_sessions]\nmode = \"batch\"\nbatch_window = \"50ms\"\n";
    let config = load_str("durable", file, &[]).unwrap();
    assert_eq!(
        config.durable_sessions,
        DurableConfig {
            mode: DurabilityMode::Batch,
            batch_window: Duration::from_millis(50),
        }
    );
    let config = Config::load(None, vars(&[("PORTICO_DURABLE_SESSIONS__MODE", "memory")])).unwrap();
    assert_eq!(config.durable_sessions.mode, DurabilityMode::Memory);
    let errors = errors_of(load_str(
        "durable-bad",
        "[durable_sessions]\nmode = \"fsync\"\nbatch_window = \"5s\"\n",
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 2, "{text}");
    assert!(
        text.contains("durable_sessions.mode = \"fsync\": expected \"sync\", \"batch\" or \"memory\""),
        "{text}"
    );
    assert!(text.contains("durable_sessions.batch_window"), "{text}");
}

#[test]
fn jwt_authenticator_config() {
    use crate::config::{AuthnBackendConfig, JwtKey};
    let file = "authentication = [{ mechanism = \"jwt\", secret = \"czNjcmV0\", secret_base64_encoded = true, \
                verify_claims = { clientid = \"${clientid}\" } }]\n";
    let config = load_str("jwt", file, &[]).unwrap();
    let AuthnBackendConfig::Jwt { key, verify_claims, .. } = &config.authentication[0].backend else {
        panic!("expected a JWT authenticator: {:?}", config.authentication);
    };
    assert_eq!(key, &JwtKey::Hmac(crate::config::Secret(b"s3cret".to_vec())));
    assert_eq!(verify_claims, &vec![("clientid".to_owned(), "${clientid}".to_owned())]);
    assert!(!format!("{config:?}").contains("s3cret"), "the secret is never printed");
    let errors = errors_of(load_str("jwt-bad", "authentication = [{ mechanism = \"jwt\" }]\n", &[]));
    assert!(errors.to_string().contains("authentication[0].secret"), "{errors}");
    let errors = errors_of(load_str(
        "jwt-jwks",
        "authentication = [{ mechanism = \"jwt\", use_jwks = true, secret = \"x\" }]\n",
        &[],
    ));
    assert!(errors.to_string().contains("authentication[0].endpoint"), "{errors}");
    let file = "authentication = [{ mechanism = \"jwt\", use_jwks = true, endpoint = \"https://idp/jwks\", \
                refresh_interval = \"1m\", acl_claim_name = \"rights\", disconnect_after_expire = false, \
                ssl = { enable = true, verify = \"verify_none\" } }]\n";
    let config = load_str("jwks", file, &[]).unwrap();
    let AuthnBackendConfig::Jwt {
        key, acl_claim_name, ..
    } = &config.authentication[0].backend
    else {
        panic!("expected a JWT authenticator: {:?}", config.authentication);
    };
    assert_eq!(
        key,
        &JwtKey::Jwks(crate::config::JwksConfig {
            endpoint: "https://idp/jwks".to_owned(),
            refresh_interval: std::time::Duration::from_secs(60),
            cacertfile: None,
            insecure: true,
        })
    );
    assert_eq!(acl_claim_name, "rights");
    let errors = errors_of(load_str(
        "jwks-fast",
        "authentication = [{ mechanism = \"jwt\", use_jwks = true, endpoint = \"http://x\", refresh_interval = \"1s\" }]\n",
        &[],
    ));
    assert!(errors.to_string().contains("refresh_interval"), "{errors}");
}

#[test]
fn scram_authenticator_config() {
    use crate::config::{AuthnBackendConfig, ScramAlgorithmName, ScramConfig};
    let file = "authentication = [{ mechanism = \"scram\", backend = \"built_in_database\", algorithm = \"sha512\", \
                iteration_count = 10000 }]\n";
    let config = load_str("scram", file, &[]).unwrap();
    assert_eq!(
        config.authentication[0].backend,
        AuthnBackendConfig::Scram(ScramConfig {
            algorithm: ScramAlgorithmName::Sha512,
            iteration_count: 10000,
            bootstrap_file: None,
        })
    );
    let errors = errors_of(load_str(
        "scram-bad",
        "authentication = [{ mechanism = \"scram\", backend = \"redis\", algorithm = \"md5\" }]\n",
        &[],
    ));
    let text = errors.to_string();
    assert!(text.contains("authentication[0].backend"), "{text}");
    assert!(text.contains("authentication[0].algorithm"), "{text}");
}

#[test]
fn built_in_database_authorization_source() {
    use crate::config::AuthzSourceConfig;
    let file = "[authorization]\nsources = [{ type = \"built_in_database\", max_rules = 5 }, \
                { type = \"built_in_database\", enable = false }, { type = \"file\", path = \"etc/acl.conf\" }]\n";
    let config = load_str("authz-db", file, &[]).unwrap();
    assert_eq!(config.authorization.sources.len(), 2, "the disabled one is left out");
    assert_eq!(
        config.authorization.sources[0],
        AuthzSourceConfig::BuiltInDatabase { max_rules: 5 }
    );
    let errors = errors_of(load_str(
        "authz-db-bad",
        "[authorization]\nsources = [{ type = \"built_in_database\", max_rules = 0, path = \"x\" }]\n",
        &[],
    ));
    let text = errors.to_string();
    assert!(text.contains("max_rules"), "{text}");
    assert!(text.contains("sources[0].path"), "{text}");
}
