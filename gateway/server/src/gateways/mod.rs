//! The gateways over UDP (so far MQTT-SN): one datagram driver task per enabled listener, and
//! with `broadcast` an ADVERTISE task per listener ([`advertise`]). They are started with the
//! server and stopped with it; a reload leaves them as they are.

mod advertise;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::Broker;
use portico_mqttsn::channel::MqttSnFrontend;
use portico_mqttsn::registry::Predefined;
use portico_mqttsn::settings::MqttSnSettings;
use portico_transport::BindError;
use portico_transport::datagram::{DatagramSettings, serve_datagrams};
use portico_transport::rate_limit::RateLimit;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::StartError;
use crate::config::Config;

/// Binds and serves every enabled gateway listener; returns `(name, address)` of each
/// (`mqttsn:udp:<name>`).
pub(crate) async fn start(
    config: &Config,
    broker: &Broker,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Vec<(String, SocketAddr)>, StartError> {
    let sn = &config.gateway.mqttsn;
    let mut addrs = Vec::new();
    if !sn.enable {
        return Ok(addrs);
    }
    let predefined = Predefined::new(sn.predefined.clone()).map_err(|e| StartError::Invalid {
        key: "gateway.mqttsn.predefined".to_owned(),
        why: e.to_string(),
    })?;
    for (name, listener) in sn.udp.iter().filter(|(_, l)| l.enable) {
        let full_name = format!("mqttsn:udp:{name}");
        let socket = UdpSocket::bind(listener.bind).await.map_err(|source| BindError {
            name: full_name.clone(),
            bind: listener.bind,
            source,
        })?;
        let addr = socket.local_addr().map_err(|source| BindError {
            name: full_name.clone(),
            bind: listener.bind,
            source,
        })?;
        if sn.broadcast {
            socket.set_broadcast(true).map_err(|source| BindError {
                name: full_name.clone(),
                bind: listener.bind,
                source,
            })?;
        }
        let socket = Arc::new(socket);
        let settings = MqttSnSettings {
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
            enable_authn: listener.enable_authn,
            ..MqttSnSettings::default()
        };
        let datagram = DatagramSettings {
            name: full_name.clone(),
            max_peers: listener.max_connections,
            peer_rate: match listener.messages_rate {
                RateLimit::Infinity => None,
                RateLimit::Limited(rate) => Some(rate),
            },
            ..DatagramSettings::default()
        };
        let frontend = Arc::new(MqttSnFrontend::new(broker, settings));
        if sn.broadcast {
            tasks.spawn(advertise::advertise(
                socket.clone(),
                full_name.clone(),
                sn.gateway_id,
                sn.broadcast_interval,
                shutdown.clone(),
            ));
        }
        let serve = serve_datagrams(socket, datagram, frontend, broker.clone(), shutdown.clone());
        let log_name = full_name.clone();
        tasks.spawn(async move {
            if let Err(error) = serve.await {
                tracing::error!(listener = %log_name, %error, "UDP listener failed");
            }
        });
        addrs.push((full_name, addr));
    }
    Ok(addrs)
}
