//! `listeners.{ssl,ws,wss}` and `mqtt.peer_cert_as_*`.

use portico_transport::rate_limit::{Rate, RateLimit};
use portico_transport::tls::TlsVersion;

use super::pki::Pki;
use super::*;

fn ssl_file(pki: &Pki, extra: &str) -> String {
    format!(
        "[listeners.ssl.default.ssl_options]\ncertfile = {:?}\nkeyfile = {:?}\n{extra}",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string()
    )
}

#[test]
fn builtin_listeners() {
    let config = Config::load(None, vars(&[])).unwrap();
    let l = &config.listeners;
    assert_eq!(l.tcp.keys().collect::<Vec<_>>(), ["default"]);
    let ssl = &l.ssl["default"];
    assert!(!ssl.listener.enable, "no certificate ships, so TLS is off");
    assert_eq!(ssl.listener.bind, addr("0.0.0.0:8883"));
    assert_eq!(ssl.ssl_options.verify, Verify::VerifyNone);
    assert!(!ssl.ssl_options.fail_if_no_peer_cert);
    assert_eq!(ssl.ssl_options.versions, [TlsVersion::Tls13, TlsVersion::Tls12]);
    assert_eq!(ssl.ssl_options.handshake_timeout, Duration::from_secs(15));
    assert_eq!(ssl.ssl_options.certfile, None);
    let ws = &l.ws["default"];
    assert!(ws.listener.enable);
    assert_eq!(ws.listener.bind, addr("0.0.0.0:8083"));
    assert_eq!(ws.websocket.mqtt_path, "/mqtt");
    assert!(ws.websocket.fail_if_no_subprotocol);
    assert_eq!(
        ws.websocket.supported_subprotocols,
        ["mqtt", "mqtt-v3", "mqtt-v3.1.1", "mqtt-v5"]
    );
    assert!(!ws.websocket.check_origin_enable);
    assert!(ws.websocket.allow_origin_absence);
    assert_eq!(ws.websocket.proxy_address_header, "x-forwarded-for");
    assert_eq!(ws.websocket.proxy_port_header, "x-forwarded-port");
    assert_eq!(ws.websocket.max_frame_size, None);
    let wss = &l.wss["default"];
    assert!(!wss.listener.enable);
    assert_eq!(wss.listener.bind, addr("0.0.0.0:8084"));
}

#[test]
fn ssl_listener_with_certificates_loads() {
    let pki = Pki::new("cfg-ssl");
    let crl = pki.write("crl.pem", &pki.crl_revoking(7));
    let extra = format!(
        "cacertfile = {:?}\nverify = \"verify_peer\"\nfail_if_no_peer_cert = true\nversions = [\"tlsv1.2\"]\n\
         ciphers = \"ECDHE-RSA-AES128-GCM-SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"\n\
         handshake_timeout = \"5s\"\ndeny_serials = [\"0x00AB:CD\", \"1\"]\ncrlfile = {:?}\n",
        pki.ca_file.display().to_string(),
        crl.display().to_string()
    );
    let config = load_str("ssl-ok", &ssl_file(&pki, &extra), &[]).unwrap();
    let ssl = &config.listeners.ssl["default"];
    assert!(
        ssl.listener.enable,
        "a listener the operator names is enabled unless it says otherwise"
    );
    let opts = &ssl.ssl_options;
    assert_eq!(opts.verify, Verify::VerifyPeer);
    assert!(opts.fail_if_no_peer_cert);
    assert_eq!(opts.versions, [TlsVersion::Tls12]);
    assert_eq!(opts.ciphers.len(), 2);
    assert_eq!(opts.handshake_timeout, Duration::from_secs(5));
    assert_eq!(opts.deny_serials, [vec![0xab, 0xcd], vec![0x01]]);
    let settings = opts.tls_settings().expect("certificate and key present");
    assert!(settings.verify_peer);
    assert_eq!(settings.crlfile.as_deref(), Some(crl.as_path()));
    // Naming only `ssl` leaves the other kinds at their built-in defaults.
    assert_eq!(config.listeners.ws, ListenersConfig::default().ws);
}

#[test]
fn enabled_tls_listener_needs_certificate_and_key() {
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_LISTENERS__WSS__DEFAULT__ENABLE", "true")]),
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 2, "{text}");
    assert!(
        text.contains("listeners.wss.default.ssl_options.certfile = \"\": required"),
        "{text}"
    );
    assert!(
        text.contains("listeners.wss.default.ssl_options.keyfile = \"\": required"),
        "{text}"
    );
}

#[test]
fn env_certificates_enable_the_default_ssl_listener() {
    let pki = Pki::new("cfg-env");
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let config = Config::load(
        None,
        vars(&[
            ("PORTICO_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE", &cert),
            ("PORTICO_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE", &key),
        ]),
    )
    .unwrap();
    assert!(config.listeners.ssl["default"].listener.enable);
}

#[test]
fn bad_ssl_options_are_all_reported() {
    let pki = Pki::new("cfg-ssl-bad");
    let extra = "verify = \"maybe\"\nversions = [\"tlsv1.1\", \"tlsv1.2\"]\nciphers = [\"RC4-MD5\"]\n\
                 handshake_timeout = \"0s\"\ndeny_serials = [\"xyz\"]\nbogus = 1\n";
    let errors = errors_of(load_str("ssl-bad", &ssl_file(&pki, extra), &[]));
    let text = errors.to_string();
    for (key, why) in [
        ("verify", "expected one of verify_none, verify_peer"),
        ("versions", "tlsv1.1 is refused"),
        ("ciphers", "RC4-MD5"),
        ("handshake_timeout", "greater than zero"),
        ("deny_serials", "not a hexadecimal serial"),
        ("bogus", "unknown key"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("listeners.ssl.default.ssl_options.{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"));
        assert!(line.contains(why), "{line}");
    }
    assert_eq!(errors.errors().len(), 6, "{text}");
}

#[test]
fn peer_options_need_verify_peer_and_a_ca() {
    let pki = Pki::new("cfg-verify");
    let errors = errors_of(load_str(
        "verify-none",
        &ssl_file(&pki, "fail_if_no_peer_cert = true\ndeny_serials = [\"01\"]\n"),
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 2, "{text}");
    assert!(text.contains("fail_if_no_peer_cert = true: has no effect"), "{text}");
    assert!(text.contains("deny_serials = [\"01\"]: has no effect"), "{text}");

    let errors = errors_of(load_str(
        "verify-no-ca",
        &ssl_file(&pki, "verify = \"verify_peer\"\n"),
        &[],
    ));
    assert!(
        errors
            .to_string()
            .contains("ssl_options.cacertfile = \"\": required with verify"),
        "{errors}"
    );
}

#[test]
fn unreadable_or_mismatched_files_are_load_errors() {
    let pki = Pki::new("cfg-files");
    let file = "[listeners.ssl.default.ssl_options]\ncertfile = \"/nonexistent/cert.pem\"\nkeyfile = \"/nonexistent/key.pem\"\n";
    let text = errors_of(load_str("missing-cert", file, &[])).to_string();
    assert!(
        text.contains("listeners.ssl.default.ssl_options.certfile = \"/nonexistent/cert.pem\": cannot read"),
        "{text}"
    );
    let other = Pki::new("cfg-files-2");
    let file = format!(
        "[listeners.ssl.default.ssl_options]\ncertfile = {:?}\nkeyfile = {:?}\n",
        pki.server_cert.display().to_string(),
        other.server_key.display().to_string()
    );
    let text = errors_of(load_str("mismatch", &file, &[])).to_string();
    assert!(text.contains("ssl_options.keyfile = "), "{text}");
    // A disabled listener's files are not read.
    let file = "[listeners.ssl.off]\nenable = false\n[listeners.ssl.off.ssl_options]\ncertfile = \"/nonexistent\"\n";
    load_str("disabled", file, &[]).unwrap();
}

#[test]
fn websocket_options() {
    let file = r#"
        [listeners.ws.a]
        bind = "127.0.0.1:18083"
        [listeners.ws.a.websocket]
        mqtt_path = "/ws"
        fail_if_no_subprotocol = false
        supported_subprotocols = "mqtt, mqttv3.1"
        check_origin_enable = true
        allow_origin_absence = false
        check_origins = ["https://app.example"]
        proxy_address_header = "X-Real-IP"
        proxy_port_header = ""
        max_frame_size = "64KB"
    "#;
    let config = load_str("ws-ok", file, &[]).unwrap();
    assert_eq!(config.listeners.ws.keys().collect::<Vec<_>>(), ["a"]);
    let ws = &config.listeners.ws["a"].websocket;
    assert_eq!(ws.mqtt_path, "/ws");
    assert!(!ws.fail_if_no_subprotocol);
    assert_eq!(ws.supported_subprotocols, ["mqtt", "mqttv3.1"]);
    assert!(ws.check_origin_enable && !ws.allow_origin_absence);
    assert_eq!(ws.check_origins, ["https://app.example"]);
    assert_eq!(ws.proxy_address_header, "x-real-ip");
    assert_eq!(ws.proxy_port_header, "");
    assert_eq!(ws.max_frame_size, Some(64 * 1024));

    let bad = r#"
        [listeners.ws.default.websocket]
        mqtt_path = "mqtt"
        supported_subprotocols = []
        max_frame_size = 0
        proxy_address_header = "x forwarded"
        check_origins = [1]
        mqtt_pth = "/x"
    "#;
    let errors = errors_of(load_str("ws-bad", bad, &[]));
    let text = errors.to_string();
    for key in [
        "mqtt_path",
        "supported_subprotocols",
        "max_frame_size",
        "proxy_address_header",
        "check_origins",
    ] {
        assert!(
            text.contains(&format!("listeners.ws.default.websocket.{key} = ")),
            "{key} missing from:\n{text}"
        );
    }
    assert!(text.contains("did you mean `mqtt_path`?"), "{text}");
    assert_eq!(errors.errors().len(), 6, "{text}");
}

#[test]
fn binds_clash_across_listener_kinds() {
    let file = "[listeners.tcp.default]\nbind = 8083\n";
    let errors = errors_of(load_str("kinds-clash", file, &[]));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 1, "{text}");
    assert!(text.contains("listeners.ws.default.bind"), "{text}");
    assert!(text.contains("tcp listener `default`"), "{text}");
    // Disabled listeners (the built-in ssl one on 8883) never clash.
    load_str("no-clash", "[listeners.tcp.default]\nbind = 8883\n", &[]).unwrap();
}

#[test]
fn listener_guards_default_to_open() {
    let config = Config::load(None, vars(&[])).unwrap();
    let tcp = &config.listeners.tcp["default"];
    assert!(!tcp.proxy_protocol);
    assert_eq!(tcp.proxy_protocol_timeout, Duration::from_secs(3));
    assert!(tcp.access_rules.allows("192.0.2.1".parse().unwrap()));
    assert_eq!(tcp.max_conn_rate, RateLimit::Infinity);
    assert_eq!(tcp.messages_rate, RateLimit::Infinity);
    assert_eq!(tcp.bytes_rate, RateLimit::Infinity);
}

#[test]
fn listener_guards_load_on_every_kind() {
    let file = r#"
[listeners.ws.default]
proxy_protocol = true
proxy_protocol_timeout = "5s"
access_rules = ["deny 10.0.0.0/8", "allow all"]
max_conn_rate = "100/s"
messages_rate = "1000/10s"
bytes_rate = "1MB/m"
"#;
    let config = load_str("guards", file, &[]).unwrap();
    let ws = &config.listeners.ws["default"].listener;
    assert!(ws.proxy_protocol);
    assert_eq!(ws.proxy_protocol_timeout, Duration::from_secs(5));
    assert!(!ws.access_rules.allows("10.1.2.3".parse().unwrap()));
    assert!(ws.access_rules.allows("192.0.2.1".parse().unwrap()));
    assert_eq!(ws.max_conn_rate, RateLimit::Limited(Rate::per_second(100).unwrap()));
    assert_eq!(
        ws.messages_rate,
        RateLimit::Limited(Rate::new(1000, Duration::from_secs(10)).unwrap())
    );
    assert_eq!(
        ws.bytes_rate,
        RateLimit::Limited(Rate::new(1024 * 1024, Duration::from_secs(60)).unwrap())
    );
    let env = vars(&[("PORTICO_LISTENERS__TCP__DEFAULT__MESSAGES_RATE", "500")]);
    let config = Config::load(None, env).unwrap();
    assert_eq!(
        config.listeners.tcp["default"].messages_rate,
        RateLimit::Limited(Rate::per_second(500).unwrap()),
        "a bare number is per second"
    );
}

#[test]
fn bad_listener_guards_are_all_reported() {
    let file = r#"
[listeners.tcp.default]
proxy_protocol = "yes"
proxy_protocol_timeout = "0s"
access_rules = ["permit all"]
max_conn_rate = "0/s"
messages_rate = "fast"
bytes_rate = true
"#;
    let errors = errors_of(load_str("guards-bad", file, &[]));
    let text = errors.to_string();
    for key in [
        "proxy_protocol",
        "proxy_protocol_timeout",
        "access_rules",
        "max_conn_rate",
        "messages_rate",
        "bytes_rate",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("listeners.tcp.default.{key} = "))),
            "{key} missing from:\n{text}"
        );
    }
    assert_eq!(errors.errors().len(), 6, "{text}");
}

#[test]
fn peer_cert_as_values() {
    for (text, expected) in [
        ("disabled", PeerCertAs::Disabled),
        ("cn", PeerCertAs::Cn),
        ("dn", PeerCertAs::Dn),
        ("pem", PeerCertAs::Pem),
        ("md5", PeerCertAs::Md5),
    ] {
        let config = Config::load(
            None,
            vars(&[
                ("PORTICO_MQTT__PEER_CERT_AS_USERNAME", text),
                ("PORTICO_MQTT__PEER_CERT_AS_CLIENTID", text),
            ]),
        )
        .unwrap();
        assert_eq!(config.mqtt.peer_cert_as_username, expected);
        assert_eq!(config.mqtt.peer_cert_as_clientid, expected);
    }
    let errors = errors_of(Config::load(
        None,
        vars(&[
            ("PORTICO_MQTT__PEER_CERT_AS_USERNAME", "crt"),
            ("PORTICO_MQTT__PEER_CERT_AS_CLIENTID", "serial"),
        ]),
    ));
    let text = errors.to_string();
    assert!(
        text.contains("mqtt.peer_cert_as_username = \"crt\": crt (the raw DER bytes)"),
        "{text}"
    );
    assert!(
        text.contains("mqtt.peer_cert_as_clientid = \"serial\": expected one of"),
        "{text}"
    );
}

#[test]
fn enable_authn_takes_emqx_values_on_every_kind() {
    use portico_core::auth::ListenerAuthn;
    let config = Config::load(None, vars(&[])).unwrap();
    assert_eq!(config.listeners.tcp["default"].enable_authn, ListenerAuthn::Enabled);
    let file = r#"
[listeners.tcp.default]
enable_authn = false
[listeners.ws.default]
enable_authn = "quick_deny_anonymous"
"#;
    let config = load_str("enable-authn", file, &[]).unwrap();
    assert_eq!(config.listeners.tcp["default"].enable_authn, ListenerAuthn::Disabled);
    assert_eq!(
        config.listeners.ws["default"].listener.enable_authn,
        ListenerAuthn::QuickDenyAnonymous
    );
    let errors = errors_of(load_str(
        "bad-authn",
        "[listeners.tcp.default]\nenable_authn = \"maybe\"\n",
        &[],
    ));
    let text = errors.to_string();
    assert!(text.contains("listeners.tcp.default.enable_authn"), "{text}");
    assert!(text.contains("\"maybe\""), "{text}");
}

#[test]
fn mqttsn_gateway_settings_and_refusals() {
    let config = Config::load(None, vars(&[])).unwrap();
    let sn = &config.gateway.mqttsn;
    assert!(!sn.enable, "off by default, as EMQX's gateways");
    assert_eq!(sn.udp["default"].bind, addr("0.0.0.0:1884"));
    let file = r#"
[gateway.mqttsn]
enable = true
predefined = [{ id = 1, topic = "sensors/temp" }, { id = 1024, topic = "x" }]
clientinfo_override = { username = "sn", password = "secret" }
[gateway.mqttsn.listeners.udp.default]
bind = "127.0.0.1:11884"
messages_rate = "10/s"
enable_authn = "quick_deny_anonymous"
"#;
    let config = load_str("mqttsn", file, &[]).unwrap();
    let sn = &config.gateway.mqttsn;
    assert_eq!(sn.predefined, [(1, "sensors/temp".to_owned()), (1024, "x".to_owned())]);
    assert_eq!(sn.username.as_deref(), Some("sn"));
    assert!(!format!("{sn:?}").contains("secret"), "the password is redacted");
    assert_eq!(sn.udp["default"].bind, addr("127.0.0.1:11884"));

    let config = load_str(
        "mqttsn-broadcast",
        "[gateway.mqttsn]\nbroadcast = true\nbroadcast_interval = \"30s\"\n",
        &[],
    )
    .unwrap();
    assert!(config.gateway.mqttsn.broadcast);
    assert_eq!(config.gateway.mqttsn.broadcast_interval, Duration::from_secs(30));

    let bad = r#"
[gateway.mqttsn]
broadcast = true
broadcast_interval = "19h"
predefined = [{ id = 0, topic = "a" }, { id = 2, topic = "a/#" }, { id = 3, topic = "b" }, { id = 3, topic = "c" }]
[gateway.mqttsn.listeners.udp.v6]
bind = "[::1]:1885"
"#;
    let text = errors_of(load_str("mqttsn-bad", bad, &[])).to_string();
    assert!(
        text.contains("listener udp.v6 is bound to IPv6 address [::1]:1885"),
        "{text}"
    );
    assert!(text.contains("gateway.mqttsn.broadcast_interval"), "{text}");
    assert!(text.contains("1s to 65535s"), "{text}");
    assert!(text.contains("gateway.mqttsn.predefined[0].id"), "{text}");
    assert!(text.contains("gateway.mqttsn.predefined[1].topic"), "{text}");
    assert!(text.contains("appears twice"), "{text}");
}

#[test]
fn coap_gateway_settings_and_refusals() {
    let config = Config::load(None, vars(&[])).unwrap();
    let coap = &config.gateway.coap;
    assert!(!coap.enable, "off by default, as EMQX's gateways");
    assert!(!coap.connection_required);
    assert_eq!(coap.heartbeat, Duration::from_secs(30));
    assert_eq!(coap.notify_type, NotifyType::Qos);
    assert_eq!(
        (coap.subscribe_qos, coap.publish_qos),
        (QosPolicy::Coap, QosPolicy::Coap)
    );
    assert_eq!(coap.blockwise.max_block_size, 1024);
    assert_eq!(coap.blockwise.max_body_size, 4 * 1024 * 1024);
    assert_eq!(coap.blockwise.exchange_lifetime, Duration::from_secs(247));
    assert_eq!(coap.udp["default"].bind, addr("0.0.0.0:5683"));
    let file = r#"
[gateway.coap]
enable = true
connection_required = true
heartbeat = "1m"
notify_type = "con"
subscribe_qos = "qos2"
publish_qos = "qos0"
blockwise = { max_block_size = 256, max_body_size = "64KB" }
[gateway.coap.listeners.udp.default]
bind = "127.0.0.1:15683"
udp_options = { recbuf = "4MB" }
"#;
    let config = load_str("coap", file, &[]).unwrap();
    let coap = &config.gateway.coap;
    assert!(coap.enable && coap.connection_required);
    assert_eq!(coap.heartbeat, Duration::from_secs(60));
    assert_eq!(coap.notify_type, NotifyType::Con);
    assert_eq!(
        (coap.subscribe_qos, coap.publish_qos),
        (QosPolicy::Fixed(2), QosPolicy::Fixed(0))
    );
    assert_eq!(coap.blockwise.max_block_size, 256);
    assert_eq!(coap.blockwise.max_body_size, 64 * 1024);
    assert_eq!(coap.udp["default"].bind, addr("127.0.0.1:15683"));
    assert_eq!(coap.udp["default"].recbuf, 4 * 1024 * 1024);
    assert_eq!(coap.udp["default"].sndbuf, 1024 * 1024, "the default");

    let bad = r#"
[gateway.coap]
notify_type = "sometimes"
publish_qos = 1
blockwise = { max_block_size = 1000 }
clientinfo_override = { username = "u" }
[gateway.coap.listeners.udp.default.udp_options]
recbuf = "1KB"
"#;
    let text = errors_of(load_str("coap-bad", bad, &[])).to_string();
    assert!(text.contains("gateway.coap.notify_type"), "{text}");
    assert!(text.contains("gateway.coap.publish_qos"), "{text}");
    assert!(text.contains("gateway.coap.blockwise.max_block_size"), "{text}");
    assert!(text.contains("power of two"), "{text}");
    assert!(text.contains("gateway.coap.clientinfo_override"), "{text}");
    assert!(
        text.contains("gateway.coap.listeners.udp.default.udp_options.recbuf"),
        "{text}"
    );
}

#[test]
fn gateway_dtls_listeners_and_psk_authentication() {
    let config = Config::load(None, vars(&[])).unwrap();
    assert!(
        config.gateway.coap.dtls.is_empty(),
        "none by default: they need key material"
    );
    assert!(!config.psk_authentication.enable);
    let file = r#"
[psk_authentication]
enable = true
init_file = "etc/psk.txt"
separator = ";"
[gateway.coap.listeners.dtls.default]
dtls_options = { ciphers = ["TLS_PSK_WITH_AES_128_CCM_8"], handshake_timeout = "5s", user_lookup_fun = "emqx_tls_psk:lookup" }
[gateway.mqttsn.listeners.dtls.default]
bind = "127.0.0.1:11885"
"#;
    let config = load_str("dtls", file, &[]).unwrap();
    assert!(config.psk_authentication.enable);
    assert_eq!(config.psk_authentication.separator, ";");
    let coap = &config.gateway.coap.dtls["default"];
    assert_eq!(coap.listener.bind, addr("0.0.0.0:5684"));
    assert_eq!(coap.dtls_options.ciphers, ["TLS_PSK_WITH_AES_128_CCM_8"]);
    assert_eq!(coap.dtls_options.handshake_timeout, Duration::from_secs(5));
    assert_eq!(
        config.gateway.mqttsn.dtls["default"].listener.bind,
        addr("127.0.0.1:11885")
    );

    let bad = r#"
[psk_authentication]
enable = true
[gateway.coap.listeners.dtls.default.dtls_options]
ciphers = ["TLS_RSA_WITH_RC4_128_MD5"]
versions = ["dtlsv1.0"]
verify = "verify_peer"
certfile = "c.pem"
user_lookup_fun = "my:fun"
mtu = 100
"#;
    let text = errors_of(load_str("dtls-bad", bad, &[])).to_string();
    assert!(
        !text.contains("psk_authentication.init_file"),
        "no init_file is fine: identities may be in the database already ({text})"
    );
    for key in [
        "gateway.coap.listeners.dtls.default.dtls_options.ciphers",
        "gateway.coap.listeners.dtls.default.dtls_options.versions",
        "gateway.coap.listeners.dtls.default.dtls_options.cacertfile",
        "gateway.coap.listeners.dtls.default.dtls_options.keyfile",
        "gateway.coap.listeners.dtls.default.dtls_options.user_lookup_fun",
        "gateway.coap.listeners.dtls.default.dtls_options.mtu",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
}

#[test]
fn lwm2m_gateway_settings_and_refusals() {
    use portico_lwm2m::channel::{AutoObserve, UpdatePublish};
    let config = Config::load(None, vars(&[])).unwrap();
    let lw = &config.gateway.lwm2m;
    assert!(!lw.enable, "off by default, as EMQX's gateways");
    assert_eq!(lw.xml_dir, std::path::PathBuf::from("lwm2m-xml"));
    assert_eq!(lw.lifetime_max, Duration::from_secs(86_400));
    assert_eq!(lw.qmode_time_window, Duration::from_secs(22));
    assert_eq!(lw.mountpoint, "lwm2m/${endpoint_name}/");
    assert_eq!(lw.translators.command.topic, "dn/#");
    assert_eq!(lw.translators.register.topic, "up/resp");
    assert_eq!(lw.translators.update.topic, "up/update");
    assert_eq!(lw.udp["default"].bind, addr("0.0.0.0:5783"));
    assert_eq!(lw.max_registrations, portico_lwm2m::channel::DEFAULT_MAX_REGISTRATIONS);
    assert!(!lw.psk_identity_as_endpoint);
    let file = r#"
[gateway.lwm2m]
enable = true
xml_dir = "/etc/lwm2m"
max_registrations = "infinity"
psk_identity_as_endpoint = true
auto_observe = "/3/0, /3303/0"
update_msg_publish_condition = "contains_object_list"
translators = { notify = { topic = "up/n", qos = 1 } }
[gateway.lwm2m.listeners.udp.default]
bind = "127.0.0.1:15783"
"#;
    let config = load_str("lwm2m", file, &[]).unwrap();
    let lw = &config.gateway.lwm2m;
    assert!(lw.enable);
    assert_eq!(
        lw.auto_observe,
        AutoObserve::Paths(vec!["/3/0".into(), "/3303/0".into()])
    );
    assert_eq!(lw.update_msg_publish_condition, UpdatePublish::ContainsObjectList);
    assert_eq!(lw.translators.notify.topic, "up/n");
    assert_eq!(lw.translators.notify.qos, portico_core::QoS::AtLeastOnce);
    assert_eq!(lw.translators.response.topic, "up/resp", "the default");
    assert_eq!(lw.udp["default"].bind, addr("127.0.0.1:15783"));
    assert_eq!(lw.max_registrations, usize::MAX);
    assert!(lw.psk_identity_as_endpoint);
    let bad = r#"
[gateway.lwm2m]
max_registrations = 0
auto_observe = "/x"
update_msg_publish_condition = "never"
translators = { command = { qos = 3 } }
"#;
    let text = errors_of(load_str("lwm2m-bad", bad, &[])).to_string();
    assert!(text.contains("gateway.lwm2m.max_registrations"), "{text}");
    assert!(text.contains("gateway.lwm2m.auto_observe"), "{text}");
    assert!(text.contains("gateway.lwm2m.update_msg_publish_condition"), "{text}");
    assert!(text.contains("gateway.lwm2m.translators.command.qos"), "{text}");
}

#[test]
fn stomp_gateway_settings_and_refusals() {
    let config = Config::load(None, vars(&[])).unwrap();
    let stomp = &config.gateway.stomp;
    assert!(!stomp.enable, "off by default, as EMQX's gateways");
    assert_eq!(stomp.tcp["default"].bind, addr("0.0.0.0:61613"));
    assert_eq!(
        (stomp.max_headers, stomp.max_headers_length, stomp.max_body_length),
        (10, 1024, 65536)
    );
    let file = r#"
[gateway.stomp]
enable = true
mountpoint = "stomp/"
frame = { max_headers = 20, max_body_length = 8192 }
[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:61614"
enable_authn = false
"#;
    let config = load_str("stomp", file, &[]).unwrap();
    let stomp = &config.gateway.stomp;
    assert!(stomp.enable);
    assert_eq!(stomp.mountpoint, "stomp/");
    assert_eq!((stomp.max_headers, stomp.max_body_length), (20, 8192));
    assert_eq!(stomp.tcp["default"].bind, addr("127.0.0.1:61614"));
    assert!(!stomp.ws["default"].listener.enable, "WebSocket off until named");
    assert!(!stomp.ssl["default"].listener.enable, "TLS off until named");

    let file = r#"
[gateway.stomp.listeners.ws.web]
bind = "127.0.0.1:61615"
websocket = { path = "/ws", supported_subprotocols = ["v12.stomp"] }
"#;
    let config = load_str("stomp-ws", file, &[]).unwrap();
    let web = &config.gateway.stomp.ws["web"];
    assert!(web.listener.enable);
    assert_eq!(web.websocket.mqtt_path, "/ws");
    assert_eq!(web.websocket.supported_subprotocols, ["v12.stomp"]);
    assert!(!web.websocket.fail_if_no_subprotocol, "stomp.py sends no subprotocol");
    let defaults = load_str("stomp-ws-defaults", "[gateway.stomp.listeners.ws.default]\n", &[]).unwrap();
    let ws = &defaults.gateway.stomp.ws["default"];
    assert_eq!(ws.listener.bind, addr("0.0.0.0:61615"));
    assert_eq!(ws.websocket.mqtt_path, "/stomp");
    let text = errors_of(load_str(
        "stomp-ws-bad",
        "[gateway.stomp.listeners.ws.default.websocket]\nmqtt_path = \"/x\"\n",
        &[],
    ))
    .to_string();
    assert!(
        text.contains("gateway.stomp.listeners.ws.default.websocket.mqtt_path"),
        "{text}"
    );
    let text = errors_of(load_str(
        "stomp-ssl-bad",
        "[gateway.stomp.listeners.ssl.default]\nbind = \"127.0.0.1:61614\"\n",
        &[],
    ))
    .to_string();
    assert!(
        text.contains("gateway.stomp.listeners.ssl.default.ssl_options"),
        "{text}"
    );

    let bad = r#"
[gateway.stomp.frame]
max_headers = 0
max_header_length = 10
"#;
    let text = errors_of(load_str("stomp-bad", bad, &[])).to_string();
    assert!(text.contains("gateway.stomp.frame.max_headers"), "{text}");
    assert!(text.contains("gateway.stomp.frame.max_header_length"), "{text}");
}

#[test]
fn stomp_durable_sessions_templates_and_wss() {
    let config = load_str("stomp-defaults", "", &[]).unwrap();
    let stomp = &config.gateway.stomp;
    assert_eq!(stomp.session_expiry_interval, Duration::from_secs(7200));
    assert_eq!(stomp.override_username, "${Packet.headers.login}");
    assert_eq!(stomp.override_clientid, "");
    assert!(
        !stomp.wss["default"].listener.enable,
        "WebSocket over TLS off until named"
    );

    let pki = Pki::new("cfg-stomp-wss");
    let file = format!(
        "[gateway.stomp]\nsession_expiry_interval = \"10m\"\n\
         clientinfo_override = {{ clientid = \"site-${{Packet.headers.device}}\", username = \"fixed\" }}\n\
         [gateway.stomp.listeners.wss.secure]\nssl_options = {{ certfile = {:?}, keyfile = {:?} }}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
    );
    let config = load_str("stomp-durable", &file, &[]).unwrap();
    let stomp = &config.gateway.stomp;
    assert_eq!(stomp.session_expiry_interval, Duration::from_secs(600));
    assert_eq!(stomp.override_clientid, "site-${Packet.headers.device}");
    assert_eq!(stomp.override_username, "fixed");
    let secure = &stomp.wss["secure"];
    assert_eq!(secure.listener.bind, addr("0.0.0.0:61616"));
    assert_eq!(secure.websocket.mqtt_path, "/stomp");

    let bad = r#"
[gateway.stomp.clientinfo_override]
clientid = "${ClientInfo.clientid}"
password = "${Packet.headers.passcode"
"#;
    let text = errors_of(load_str("stomp-override-bad", bad, &[])).to_string();
    assert!(text.contains("gateway.stomp.clientinfo_override.clientid"), "{text}");
    assert!(text.contains("gateway.stomp.clientinfo_override.password"), "{text}");
    assert!(text.contains("unclosed placeholder"), "{text}");
    let text = errors_of(load_str(
        "stomp-wss-bad",
        "[gateway.stomp.listeners.wss.default]\nbind = \"127.0.0.1:61616\"\n",
        &[],
    ))
    .to_string();
    assert!(
        text.contains("gateway.stomp.listeners.wss.default.ssl_options"),
        "{text}"
    );
}
