//! Sleeping clients (MQTT-SN 1.2 §6.14): DISCONNECT with a duration puts the client to sleep;
//! messages for it wait in its session (QoS 0 too, bounded by the session's queue limits,
//! journalled for persistent sessions). PINGREQ with its client id wakes it: the waiting
//! messages go out (topics registered first as needed, one QoS 1/2 at a time), and PINGRESP
//! says "that was all", after which it sleeps again for the same duration. CONNECT while asleep
//! makes it an ordinary connected client again, and cancels the sleep timer (EMQX forgets to,
//! and drops such clients when the old timer fires). No word within the duration: the client is
//! lost, as with an expired keep-alive (its will is published: the specification's rule; EMQX
//! publishes none).

use std::time::{Duration, Instant};

use portico_core::channel::CloseReason;

use super::{MqttSnChannel, Out, Phase};
use crate::packet::Packet;

impl MqttSnChannel {
    /// DISCONNECT with a duration, from a connected or sleeping client.
    pub(super) fn go_to_sleep(&mut self, seconds: u16, now: Instant, out: &mut Out) {
        out.send(Packet::Disconnect(None));
        self.sleep_duration = Duration::from_secs(u64::from(seconds));
        self.phase = Phase::Asleep;
        self.sleep_deadline = Some(now + self.sleep_duration);
        tracing::debug!(peer = %self.peer, seconds, "MQTT-SN client asleep");
    }

    /// What a sleeping (or waking) client may send.
    pub(super) fn handle_asleep(&mut self, packet: Packet, now: Instant, out: &mut Out) {
        match packet {
            Packet::PingReq(Some(id)) => {
                if self.client.as_ref().is_some_and(|c| c.client_id == id) {
                    self.phase = Phase::Awake;
                    self.deliver_queued(now, out);
                } else {
                    tracing::debug!(peer = %self.peer, %id, "PINGREQ naming another client; ignored");
                }
            }
            Packet::PingReq(None) => out.send(Packet::PingResp),
            Packet::Disconnect(Some(seconds)) => self.go_to_sleep(seconds, now, out),
            Packet::Disconnect(None) => {
                self.will_cancelled = true;
                self.close_name = "normal";
                out.send(Packet::Disconnect(None));
                self.close(CloseReason::ClientDisconnect, out);
            }
            // Anything else: the client is evidently up (acknowledgements while awake, or a
            // publish); deliveries still wait for its PINGREQ.
            other => self.handle_connected(other, now, out),
        }
        self.sleep_again_if_drained(now, out);
    }

    /// A CONNECT from a sleeping client: an ordinary connection again.
    pub(super) fn wake_by_connect(&mut self, now: Instant, out: &mut Out) {
        self.phase = Phase::Connected;
        self.sleep_deadline = None;
        self.last_heard = now;
        out.send(Packet::ConnAck {
            code: crate::packet::ReturnCode::Accepted,
        });
        self.deliver_queued(now, out);
    }

    /// While awake: once nothing waits (queue empty, nothing in flight, no registration), say
    /// so with PINGRESP and sleep again.
    pub(super) fn sleep_again_if_drained(&mut self, now: Instant, out: &mut Out) {
        if self.phase != Phase::Awake || self.register.is_some() {
            return;
        }
        let drained = self.session.as_ref().is_none_or(|session| {
            let state = session.lock();
            state.queue.is_empty() && state.inflight.is_empty()
        });
        if drained {
            out.send(Packet::PingResp);
            self.phase = Phase::Asleep;
            self.sleep_deadline = Some(now + self.sleep_duration);
        }
    }
}
