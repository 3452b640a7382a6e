//! Acknowledgements that wait for the disk. With a durable store in `sync` mode, a PUBACK,
//! PUBREC, PUBCOMP, SUBACK or CONNACK promises the client that something is safe: it goes out
//! only once the journal is durable up to the ticket of the changes it acknowledges. A QoS 2
//! PUBLISH or PUBREL to a persistent session likewise waits for its packet id to be on disk, so
//! that a resend after a crash reuses the id the client knows. Held packets keep their order,
//! and anything sent through here after a held packet queues behind it.

use std::collections::VecDeque;

use portico_core::store::Ticket;

use super::{MqttChannel, Out};
use crate::packet::Packet;

impl MqttChannel {
    /// Sends `packet` once everything this thread journalled so far is durable.
    pub(super) fn send_durable(&mut self, packet: Packet, out: &mut Out) {
        let ticket = self.ctx.take_ticket();
        match &mut self.held {
            None if self.ctx.is_durable(ticket) => out.send(packet),
            None => {
                self.ctx.notify_when_durable(ticket, &self.conn);
                self.held = Some(Box::new(VecDeque::from([(ticket, packet)])));
            }
            Some(held) => {
                // Behind the packets already held, whatever its own ticket.
                let last = held.back().map_or(Ticket::NONE, |(t, _)| *t);
                if ticket > last {
                    self.ctx.notify_when_durable(ticket, &self.conn);
                }
                held.push_back((ticket.max(last), packet));
            }
        }
    }

    /// Sends `packet` now, or behind the held packets if there are any, without waiting for
    /// anything of its own (a QoS 0/1 PUBLISH: its loss in a crash costs nothing a resend
    /// does not repair).
    pub(super) fn send_ordered(&mut self, packet: Packet, out: &mut Out) {
        match &mut self.held {
            None => out.send(packet),
            Some(held) => {
                let last = held.back().map_or(Ticket::NONE, |(t, _)| *t);
                held.push_back((last, packet));
            }
        }
    }

    /// Sends the held packets whose tickets are durable now (after a wake-up from the journal).
    pub(super) fn release_durable(&mut self, out: &mut Out) {
        let Some(held) = &mut self.held else { return };
        while let Some((ticket, _)) = held.front() {
            if !self.ctx.is_durable(*ticket) {
                return;
            }
            if let Some((_, packet)) = held.pop_front() {
                out.send(packet);
            }
        }
        self.held = None;
    }
}
