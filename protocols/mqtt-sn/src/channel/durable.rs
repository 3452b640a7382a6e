//! Acknowledgements that wait for the disk, as MQTT's do: with a durable store in `sync` mode a
//! CONNACK, PUBACK, PUBREC, PUBCOMP or SUBACK promises the client that what it acknowledges is
//! safe, so it goes out only once the journal is durable up to the changes it acknowledges.
//! Held acknowledgements keep their order; the journal's wake-up arrives as a delivery signal.

use std::collections::VecDeque;

use portico_core::store::Ticket;

use super::{MqttSnChannel, Out};
use crate::packet::Packet;

impl MqttSnChannel {
    /// Sends `packet` once everything this thread journalled so far is durable.
    pub(super) fn send_durable(&mut self, packet: Packet, out: &mut Out) {
        let ticket = self.ctx.take_ticket();
        match &mut self.held_acks {
            None if self.ctx.is_durable(ticket) => out.send(packet),
            None => {
                self.ctx.notify_when_durable(ticket, &self.conn);
                self.held_acks = Some(Box::new(VecDeque::from([(ticket, packet)])));
            }
            Some(held) => {
                // Behind the acknowledgements already held, whatever its own ticket.
                let last = held.back().map_or(Ticket::NONE, |(t, _)| *t);
                if ticket > last {
                    self.ctx.notify_when_durable(ticket, &self.conn);
                }
                held.push_back((ticket.max(last), packet));
            }
        }
    }

    /// Sends the held acknowledgements whose tickets are durable now.
    pub(super) fn release_durable(&mut self, out: &mut Out) {
        let Some(held) = &mut self.held_acks else { return };
        while let Some((ticket, _)) = held.front() {
            if !self.ctx.is_durable(*ticket) {
                return;
            }
            if let Some((_, packet)) = held.pop_front() {
                out.send(packet);
            }
        }
        self.held_acks = None;
    }
}
