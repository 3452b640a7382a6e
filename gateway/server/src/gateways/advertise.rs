//! MQTT-SN gateway discovery: with `gateway.mqttsn.broadcast = true`, every IPv4 UDP listener
//! broadcasts ADVERTISE at start and then every `broadcast_interval`.
//!
//! Differences from EMQX, on purpose:
//! - ADVERTISE leaves from the listener's own socket and goes to the listener's port, so a client
//!   that hears it can CONNECT to the address it came from. EMQX sends from an ephemeral port to
//!   port 1884 whatever the listener's port is.
//! - The Duration field is the interval in seconds (EMQX puts 900000 ms into 16 bits and sends
//!   48032).
//!
//! Interfaces are enumerated again before every round, so an interface that comes up later is
//! advertised on too. SEARCHGW is answered by the channel (a unicast GWINFO), not here.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use if_addrs::IfAddr;
use portico_mqttsn::Packet;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Broadcasts ADVERTISE from `socket` until `shutdown`.
pub(super) async fn advertise(
    socket: Arc<UdpSocket>,
    listener: String,
    gateway_id: u8,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let local = match socket.local_addr() {
        Ok(SocketAddr::V4(local)) => local,
        Ok(SocketAddr::V6(_)) | Err(_) => return, // refused by the configuration check
    };
    let mut datagram = BytesMut::new();
    let packet = Packet::Advertise {
        gw_id: gateway_id,
        // Bounded to 1..=65535 s by the configuration check.
        duration: u16::try_from(interval.as_secs()).unwrap_or(u16::MAX),
    };
    if let Err(error) = portico_mqttsn::encode(&packet, &mut datagram) {
        tracing::error!(%listener, %error, "cannot encode ADVERTISE");
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    let mut warned_no_interface = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let targets = match broadcast_addresses(*local.ip()) {
            Ok(targets) => targets,
            Err(error) => {
                tracing::warn!(%listener, %error, "cannot list the network interfaces for ADVERTISE");
                continue;
            }
        };
        if targets.is_empty() && !warned_no_interface {
            warned_no_interface = true;
            tracing::warn!(%listener, bind = %local, "no interface with a broadcast address: ADVERTISE is not sent");
        }
        for target in targets {
            let to = SocketAddr::from((target, local.port()));
            match socket.send_to(&datagram, to).await {
                Ok(_) => tracing::debug!(%listener, %to, "ADVERTISE sent"),
                Err(error) => tracing::warn!(%listener, %to, %error, "ADVERTISE not sent"),
            }
        }
    }
}

/// The broadcast addresses a socket bound to `bound` can reach: those of every interface when
/// it is bound to 0.0.0.0, else that of the interface holding `bound`.
fn broadcast_addresses(bound: Ipv4Addr) -> io::Result<BTreeSet<Ipv4Addr>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .filter_map(|interface| match interface.addr {
            IfAddr::V4(v4) if bound.is_unspecified() || v4.ip == bound => v4.broadcast,
            _ => None,
        })
        .filter(|b| !IpAddr::V4(*b).is_loopback())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_broadcast_address() {
        let got = broadcast_addresses(Ipv4Addr::LOCALHOST).expect("interfaces listed");
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn an_address_no_interface_holds_reaches_nothing() {
        let got = broadcast_addresses(Ipv4Addr::new(192, 0, 2, 77)).expect("interfaces listed");
        assert!(got.is_empty(), "{got:?}");
    }
}
