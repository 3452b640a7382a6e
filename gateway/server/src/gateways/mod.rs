//! The gateways: over UDP and DTLS (MQTT-SN, CoAP and LwM2M) one datagram driver task per enabled
//! listener; over TCP (STOMP) one stream listener per enabled listener, run by the same driver
//! as MQTT's (a DTLS listener wraps the gateway's frontend in `portico_transport::dtls`), and
//! with MQTT-SN's `broadcast` an ADVERTISE task per UDP listener ([`advertise`]). Each gateway
//! is started and stopped as a whole ([`start_one`] with its own stop token), with the server
//! or at run time through the API (`crate::control`); a reload leaves them as they are.

mod advertise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use portico_coap::channel::{CoapFrontend, DeviceRequests};
use portico_coap::settings::{Blockwise, CoapSettings};
use portico_core::Broker;
use portico_core::auth::ListenerAuthn;
use portico_core::datagram::DatagramFrontend;
use portico_lwm2m::Registry;
use portico_lwm2m::channel::{Lwm2mFrontend, Lwm2mSettings, Registrations};
use portico_mqttsn::channel::MqttSnFrontend;
use portico_mqttsn::registry::Predefined;
use portico_mqttsn::settings::MqttSnSettings;
use portico_stomp::{DurableSubscriptions, Limits, StompFrontend, StompSettings, Template};
use portico_transport::BindError;
use portico_transport::datagram::{DatagramSettings, serve_datagrams};
use portico_transport::dtls::{DtlsFrontend, PskFile, PskStore, PskTable};
use portico_transport::rate_limit::RateLimit;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::StartError;
use crate::config::{Config, DtlsListenerConfig, TcpListenerConfig, UdpListenerConfig};

/// What every gateway listener is started with.
struct Start<'a> {
    broker: &'a Broker,
    /// `psk_authentication`'s identities, loaded once for every DTLS listener.
    psk: Option<Arc<dyn PskStore>>,
    shutdown: &'a CancellationToken,
    tasks: &'a TaskTracker,
    addrs: Vec<(String, SocketAddr)>,
    /// The LwM2M gateway's registrations, once started.
    lwm2m: Option<Arc<Registrations>>,
    /// The CoAP gateway's connected clients, for the API's requests to them.
    coap: Option<Arc<DeviceRequests>>,
}

/// What a gateway's start gives the server.
pub(crate) struct Started {
    /// `(id, address)` of each listener.
    pub(crate) addrs: Vec<(String, SocketAddr)>,
    /// The LwM2M registrations table, for the API's device commands.
    pub(crate) lwm2m: Option<Arc<Registrations>>,
    /// The CoAP gateway's connected clients (every listener's), for the API's requests.
    pub(crate) coap: Option<Arc<DeviceRequests>>,
}

/// The gateways Portico has, by name (also their clients' protocol name), in start order.
pub(crate) const NAMES: [&str; 4] = ["mqttsn", "coap", "lwm2m", "stomp"];

/// True when `config` enables gateway `name`.
pub(crate) fn enabled(config: &Config, name: &str) -> bool {
    let g = &config.gateway;
    match name {
        "mqttsn" => g.mqttsn.enable,
        "coap" => g.coap.enable,
        "lwm2m" => g.lwm2m.enable,
        "stomp" => g.stomp.enable,
        _ => false,
    }
}

/// `(id, kind, name, bind)` of every enabled listener of gateway `name` in `config`, running or
/// not (`stomp:tcp:default`).
pub(crate) fn configured_listeners(config: &Config, name: &str) -> Vec<(String, &'static str, String, SocketAddr)> {
    let g = &config.gateway;
    let mut out = Vec::new();
    let mut push = |kind: &'static str, listener: &str, enable: bool, bind: SocketAddr| {
        if enable {
            out.push((format!("{name}:{kind}:{listener}"), kind, listener.to_owned(), bind));
        }
    };
    let (udp, dtls) = match name {
        "mqttsn" => (&g.mqttsn.udp, &g.mqttsn.dtls),
        "coap" => (&g.coap.udp, &g.coap.dtls),
        "lwm2m" => (&g.lwm2m.udp, &g.lwm2m.dtls),
        "stomp" => {
            let s = &g.stomp;
            s.tcp.iter().for_each(|(n, l)| push("tcp", n, l.enable, l.bind));
            s.ssl
                .iter()
                .for_each(|(n, l)| push("ssl", n, l.listener.enable, l.listener.bind));
            s.ws.iter()
                .for_each(|(n, l)| push("ws", n, l.listener.enable, l.listener.bind));
            s.wss
                .iter()
                .for_each(|(n, l)| push("wss", n, l.listener.enable, l.listener.bind));
            return out;
        }
        _ => return out,
    };
    udp.iter().for_each(|(n, l)| push("udp", n, l.enable, l.bind));
    dtls.iter()
        .for_each(|(n, l)| push("dtls", n, l.listener.enable, l.listener.bind));
    out
}

/// The built-in PSK database when `psk_authentication` is enabled, with its `init_file`
/// imported; loaded once, shared by every DTLS listener and by the API.
pub(crate) fn load_psk(config: &Config, broker: &Broker) -> Result<Option<Arc<PskTable>>, StartError> {
    if config.psk_authentication.enable {
        Ok(Some(Arc::new(psk_table(config, broker)?)))
    } else {
        Ok(None)
    }
}

/// Binds and serves every enabled listener of gateway `name` until `shutdown` is cancelled;
/// returns their `(id, address)` (and LwM2M's registrations). A listener that cannot bind fails the start; the ones
/// already serving stop with `shutdown`.
pub(crate) async fn start_one(
    name: &str,
    config: &Config,
    broker: &Broker,
    psk: Option<&Arc<PskTable>>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Started, StartError> {
    let mut start = Start {
        broker,
        psk: psk.cloned().map(|table| table as Arc<dyn PskStore>),
        shutdown,
        tasks,
        addrs: Vec::new(),
        lwm2m: None,
        coap: None,
    };
    match name {
        "mqttsn" => start_mqttsn(config, &mut start).await?,
        "coap" => start_coap(config, &mut start).await?,
        "lwm2m" => start_lwm2m(config, &mut start).await?,
        "stomp" => start_stomp(config, &mut start)?,
        _ => {}
    }
    Ok(Started {
        addrs: start.addrs,
        lwm2m: start.lwm2m,
        coap: start.coap,
    })
}

/// The built-in PSK database, with `psk_authentication.init_file` imported into it (EMQX:
/// the file's keys win; identities added at run time stay).
fn psk_table(config: &Config, broker: &Broker) -> Result<PskTable, StartError> {
    let c = &config.psk_authentication;
    let table = PskTable::open(broker.journal().cloned())?;
    if let Some(path) = &c.init_file {
        let invalid = |why: String| StartError::Invalid {
            key: "psk_authentication.init_file".to_owned(),
            why,
        };
        let file = PskFile::load(path, &c.separator).map_err(|e| invalid(e.to_string()))?;
        let report = table
            .import(&file)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        tracing::info!(
            path = %path.display(),
            added = report.added,
            replaced = report.replaced,
            unchanged = report.unchanged,
            "PSK identities imported"
        );
    }
    if table.is_empty() {
        tracing::warn!("psk_authentication is enabled but no PSK identity is known: PSK handshakes will fail");
    } else {
        tracing::info!(identities = table.len(), "PSK identities loaded");
    }
    Ok(table)
}

async fn start_mqttsn(config: &Config, start: &mut Start<'_>) -> Result<(), StartError> {
    let sn = &config.gateway.mqttsn;
    let predefined = Predefined::new(sn.predefined.clone()).map_err(|e| StartError::Invalid {
        key: "gateway.mqttsn.predefined".to_owned(),
        why: e.to_string(),
    })?;
    for (name, listener) in sn.udp.iter().filter(|(_, l)| l.enable) {
        let full_name = format!("mqttsn:udp:{name}");
        let socket = bind(&full_name, listener, sn.broadcast).await?;
        let settings = mqttsn_settings(config, &predefined, listener.enable_authn);
        if sn.broadcast {
            start.tasks.spawn(advertise::advertise(
                socket.clone(),
                full_name.clone(),
                sn.gateway_id,
                sn.broadcast_interval,
                start.shutdown.clone(),
            ));
        }
        let frontend = Arc::new(MqttSnFrontend::new(start.broker, settings));
        serve(start, full_name, socket, listener, frontend)?;
    }
    for (name, dtls) in sn.dtls.iter().filter(|(_, l)| l.listener.enable) {
        let full_name = format!("mqttsn:dtls:{name}");
        let socket = bind(&full_name, &dtls.listener, false).await?;
        let settings = mqttsn_settings(config, &predefined, dtls.listener.enable_authn);
        let inner = Arc::new(MqttSnFrontend::new(start.broker, settings));
        let frontend = dtls_frontend(start, &format!("gateway.mqttsn.listeners.dtls.{name}"), dtls, inner)?;
        serve(start, full_name, socket, &dtls.listener, frontend)?;
    }
    Ok(())
}

async fn start_coap(config: &Config, start: &mut Start<'_>) -> Result<(), StartError> {
    let coap = &config.gateway.coap;
    let requests = Arc::new(DeviceRequests::default());
    start.coap = Some(requests.clone());
    for (name, listener) in coap.udp.iter().filter(|(_, l)| l.enable) {
        let full_name = format!("coap:udp:{name}");
        let socket = bind(&full_name, listener, false).await?;
        let frontend = Arc::new(
            CoapFrontend::new(start.broker, coap_settings(config, listener.enable_authn))
                .with_device_requests(requests.clone()),
        );
        serve(start, full_name, socket, listener, frontend)?;
    }
    for (name, dtls) in coap.dtls.iter().filter(|(_, l)| l.listener.enable) {
        let full_name = format!("coap:dtls:{name}");
        let socket = bind(&full_name, &dtls.listener, false).await?;
        let inner = Arc::new(
            CoapFrontend::new(start.broker, coap_settings(config, dtls.listener.enable_authn))
                .with_device_requests(requests.clone()),
        );
        let frontend = dtls_frontend(start, &format!("gateway.coap.listeners.dtls.{name}"), dtls, inner)?;
        serve(start, full_name, socket, &dtls.listener, frontend)?;
    }
    Ok(())
}

async fn start_lwm2m(config: &Config, start: &mut Start<'_>) -> Result<(), StartError> {
    let lw = &config.gateway.lwm2m;
    // EMQX refuses to load the gateway without object definitions.
    let registry = Registry::load_dir(&lw.xml_dir).map_err(|e| StartError::Invalid {
        key: "gateway.lwm2m.xml_dir".to_owned(),
        why: format!("{}: {e}", lw.xml_dir.display()),
    })?;
    tracing::info!(objects = registry.len(), dir = %lw.xml_dir.display(), "LwM2M object definitions loaded");
    let registry = Arc::new(registry);
    let settings = |enable_authn| Lwm2mSettings {
        registry: registry.clone(),
        lifetime_min: lw.lifetime_min,
        lifetime_max: lw.lifetime_max,
        qmode_time_window: lw.qmode_time_window,
        auto_observe: lw.auto_observe.clone(),
        update_msg_publish_condition: lw.update_msg_publish_condition,
        translators: lw.translators.clone(),
        mountpoint: lw.mountpoint.clone(),
        enable_authn,
        max_registrations: lw.max_registrations,
        psk_identity_as_endpoint: lw.psk_identity_as_endpoint,
        ..Lwm2mSettings::default()
    };
    // One table for every listener: an endpoint is registered once per gateway, and the limit
    // counts them all. Restored from the store here, before any listener serves.
    let broker = start.broker;
    let registrations = Registrations::load(broker.journal().cloned(), lw.max_registrations);
    start.lwm2m = Some(registrations.clone());
    let frontend =
        |enable_authn| Lwm2mFrontend::with_registrations(broker, settings(enable_authn), registrations.clone());
    for (name, listener) in lw.udp.iter().filter(|(_, l)| l.enable) {
        let full_name = format!("lwm2m:udp:{name}");
        let socket = bind(&full_name, listener, false).await?;
        let frontend = Arc::new(frontend(listener.enable_authn));
        serve(start, full_name, socket, listener, frontend)?;
    }
    for (name, dtls) in lw.dtls.iter().filter(|(_, l)| l.listener.enable) {
        let full_name = format!("lwm2m:dtls:{name}");
        let socket = bind(&full_name, &dtls.listener, false).await?;
        let inner = Arc::new(frontend(dtls.listener.enable_authn));
        let frontend = dtls_frontend(start, &format!("gateway.lwm2m.listeners.dtls.{name}"), dtls, inner)?;
        serve(start, full_name, socket, &dtls.listener, frontend)?;
    }
    Ok(())
}

/// Binds and serves every enabled `gateway.stomp.listeners.{tcp,ssl,ws,wss}.<name>`
/// (`stomp:tcp:<name>`, ...): one stream listener each, the same frontend over a plain, TLS,
/// WebSocket or WebSocket-over-TLS stream, all sharing one table of durable clients.
fn start_stomp(config: &Config, start: &mut Start<'_>) -> Result<(), StartError> {
    use portico_transport::Transport;

    use crate::listeners::{WS_HANDSHAKE_TIMEOUT, tls_source, ws_settings};

    let stomp = &config.gateway.stomp;
    let invalid = |e| match e {
        StartError::Invalid { key, why } => StartError::Invalid {
            key: format!("gateway.stomp.{key}"),
            why,
        },
        other => other,
    };
    let mut specs: Vec<(&str, &String, &TcpListenerConfig, Transport, Duration)> = Vec::new();
    for (name, l) in stomp.tcp.iter().filter(|(_, l)| l.enable) {
        specs.push(("tcp", name, l, Transport::Tcp, WS_HANDSHAKE_TIMEOUT));
    }
    for (name, l) in stomp.ssl.iter().filter(|(_, l)| l.listener.enable) {
        let tls = tls_source(&format!("stomp:ssl:{name}"), "ssl", name, &l.ssl_options).map_err(invalid)?;
        let timeout = l.ssl_options.handshake_timeout;
        specs.push(("ssl", name, &l.listener, Transport::Tls(tls), timeout));
    }
    for (name, l) in stomp.ws.iter().filter(|(_, l)| l.listener.enable) {
        // Browser clients send STOMP in text frames.
        let transport = Transport::Ws(ws_settings(&l.websocket, true));
        specs.push(("ws", name, &l.listener, transport, WS_HANDSHAKE_TIMEOUT));
    }
    for (name, l) in stomp.wss.iter().filter(|(_, l)| l.listener.enable) {
        let tls = tls_source(&format!("stomp:wss:{name}"), "wss", name, &l.ssl_options).map_err(invalid)?;
        let transport = Transport::Wss(tls, ws_settings(&l.websocket, true));
        let timeout = l.ssl_options.handshake_timeout;
        specs.push(("wss", name, &l.listener, transport, timeout));
    }
    // The templates were checked when the configuration was read.
    let template = |key: &str, text: &str| {
        Template::parse(text).map_err(|why| StartError::Invalid {
            key: format!("gateway.stomp.clientinfo_override.{key}"),
            why,
        })
    };
    let username = template("username", &stomp.override_username)?;
    let password = template("password", &stomp.override_password)?;
    let clientid = template("clientid", &stomp.override_clientid)?;
    let durable = DurableSubscriptions::load(start.broker);
    for (kind, name, listener, transport, timeout) in specs {
        let full_name = format!("stomp:{kind}:{name}");
        let settings = crate::listeners::listener(&format!("stomp:{kind}"), name, listener, transport, timeout);
        let socket = portico_transport::bind(&settings)?;
        let addr = socket.local_addr().map_err(|source| BindError {
            name: full_name.clone(),
            bind: listener.bind,
            source,
        })?;
        let mountpoint = if listener.mountpoint.is_empty() {
            stomp.mountpoint.clone()
        } else {
            listener.mountpoint.clone()
        };
        let frontend = Arc::new(StompFrontend::with_durable(
            start.broker,
            StompSettings {
                limits: Limits {
                    max_headers: stomp.max_headers,
                    max_header_length: stomp.max_headers_length,
                    max_body_length: stomp.max_body_length,
                },
                mountpoint,
                enable_authn: listener.enable_authn,
                idle_timeout: stomp.idle_timeout,
                max_subscriptions: stomp.max_subscriptions,
                max_inflight: stomp.max_inflight,
                max_transactions: stomp.max_transactions,
                max_transaction_frames: stomp.max_transaction_frames,
                max_topic_levels: config.mqtt.max_topic_levels,
                max_clientid_len: config.mqtt.max_clientid_len,
                session_expiry_interval: u32::try_from(stomp.session_expiry_interval.as_secs()).unwrap_or(u32::MAX),
                username: username.clone(),
                password: password.clone(),
                clientid: clientid.clone(),
                ..StompSettings::default()
            },
            durable.clone(),
        ));
        start.tasks.spawn(portico_transport::serve(
            socket,
            settings,
            frontend,
            start.broker.clone(),
            start.shutdown.child_token(),
            start.tasks.clone(),
        ));
        start.addrs.push((full_name, addr));
    }
    Ok(())
}

fn mqttsn_settings(config: &Config, predefined: &Predefined, enable_authn: ListenerAuthn) -> MqttSnSettings {
    let sn = &config.gateway.mqttsn;
    MqttSnSettings {
        gateway_id: sn.gateway_id,
        enable_qos3: sn.enable_qos3,
        predefined: predefined.clone(),
        mountpoint: sn.mountpoint.clone(),
        idle_timeout: sn.idle_timeout,
        keepalive_multiplier: config.mqtt.keepalive_multiplier,
        max_clientid_len: config.mqtt.max_clientid_len,
        max_topic_levels: config.mqtt.max_topic_levels,
        max_awaiting_rel: config.mqtt.max_awaiting_rel,
        username: sn.username.as_deref().map(|u| ByteString::from(u.to_owned())),
        password: sn.password.as_ref().map(|p| Bytes::from(p.0.clone())),
        enable_authn,
        ..MqttSnSettings::default()
    }
}

fn coap_settings(config: &Config, enable_authn: ListenerAuthn) -> CoapSettings {
    let coap = &config.gateway.coap;
    CoapSettings {
        connection_required: coap.connection_required,
        heartbeat: coap.heartbeat,
        idle_timeout: coap.idle_timeout,
        notify_type: coap.notify_type,
        subscribe_qos: coap.subscribe_qos,
        publish_qos: coap.publish_qos,
        blockwise: Blockwise {
            enable: coap.blockwise.enable,
            max_block_size: usize::from(coap.blockwise.max_block_size),
            max_body_size: usize::try_from(coap.blockwise.max_body_size).unwrap_or(usize::MAX),
            exchange_lifetime: coap.blockwise.exchange_lifetime,
        },
        mountpoint: coap.mountpoint.clone(),
        max_clientid_len: config.mqtt.max_clientid_len,
        max_topic_levels: config.mqtt.max_topic_levels,
        enable_authn,
        ..CoapSettings::default()
    }
}

/// Wraps a gateway's frontend in DTLS with the listener's `dtls_options` and the PSK
/// identities; a setting that cannot work is refused naming its key under `key`.
fn dtls_frontend<F: DatagramFrontend>(
    start: &Start<'_>,
    key: &str,
    dtls: &DtlsListenerConfig,
    inner: Arc<F>,
) -> Result<Arc<DtlsFrontend<F>>, StartError> {
    let settings = dtls.dtls_options.settings(start.psk.clone());
    let frontend = DtlsFrontend::new(inner, &settings).map_err(|e| StartError::Invalid {
        key: format!("{key}.dtls_options.{}", e.field),
        why: e.why,
    })?;
    start.broker.add_metrics_source(frontend.stats().clone());
    Ok(Arc::new(frontend))
}

async fn bind(name: &str, listener: &UdpListenerConfig, broadcast: bool) -> Result<Arc<UdpSocket>, StartError> {
    let failed = |source| BindError {
        name: name.to_owned(),
        bind: listener.bind,
        source,
    };
    let socket = UdpSocket::bind(listener.bind).await.map_err(failed)?;
    if broadcast {
        socket.set_broadcast(true).map_err(failed)?;
    }
    let options = socket2::SockRef::from(&socket);
    options
        .set_recv_buffer_size(usize::try_from(listener.recbuf).unwrap_or(usize::MAX))
        .map_err(failed)?;
    options
        .set_send_buffer_size(usize::try_from(listener.sndbuf).unwrap_or(usize::MAX))
        .map_err(failed)?;
    // Linux doubles what it grants (bookkeeping) and caps it at net.core.rmem_max.
    let granted = options.recv_buffer_size().map_err(failed)? as u64 / 2;
    if granted < listener.recbuf {
        tracing::warn!(
            listener = name,
            asked = listener.recbuf,
            granted,
            "UDP receive buffer capped by the kernel (raise net.core.rmem_max)"
        );
    }
    Ok(Arc::new(socket))
}

fn serve<F: DatagramFrontend>(
    start: &mut Start<'_>,
    name: String,
    socket: Arc<UdpSocket>,
    listener: &UdpListenerConfig,
    frontend: Arc<F>,
) -> Result<(), StartError> {
    let addr = socket.local_addr().map_err(|source| BindError {
        name: name.clone(),
        bind: listener.bind,
        source,
    })?;
    let datagram = DatagramSettings {
        name: name.clone(),
        max_peers: listener.max_connections,
        peer_rate: match listener.messages_rate {
            RateLimit::Infinity => None,
            RateLimit::Limited(rate) => Some(rate),
        },
        ..DatagramSettings::default()
    };
    let serve = serve_datagrams(socket, datagram, frontend, start.broker.clone(), start.shutdown.clone());
    let log_name = name.clone();
    start.tasks.spawn(async move {
        if let Err(error) = serve.await {
            tracing::error!(listener = %log_name, %error, "UDP listener failed");
        }
    });
    start.addrs.push((name, addr));
    Ok(())
}
