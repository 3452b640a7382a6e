//! A durable client connecting again to its session: its STOMP subscriptions taken up from the
//! [`DurableSubscriptions`](super::DurableSubscriptions) table and its un-ACKed MESSAGEs sent
//! again, marked redelivered. [STOMP 1.2 §MESSAGE: the `redelivered` header is ours; the spec
//! leaves redelivery to the server]

use std::time::Instant;

use bytestring::ByteString;
use portico_core::metrics::{DeliveryDrop, tally_qos};
use portico_core::session::InflightState;

use super::subscribe::{AckMode, Subscription, Unacked, complete_unacked};
use super::{Out, StompChannel};

impl StompChannel {
    /// Takes up the resumed session: the kept subscriptions that the session still holds come
    /// back (marked `restored` until the client declares them again); session subscriptions
    /// nobody kept are ended, since no STOMP subscription could receive their messages. Then
    /// every un-ACKed MESSAGE is sent again and the queue is delivered.
    pub(super) fn resume(&mut self, now: Instant, out: &mut Out) {
        let (Some(session), Some(client)) = (self.session.clone(), self.client.as_ref()) else {
            return;
        };
        let kept = self.durable.get(&client.client_id);
        let orphans: Vec<ByteString> = {
            let state = session.lock();
            for stored in kept {
                let held = state
                    .subscriptions
                    .get(stored.filter.as_str())
                    .is_some_and(|options| options.subscription_id == stored.key);
                if held && self.subscriptions.len() < self.settings.max_subscriptions {
                    self.subscriptions.push(Subscription {
                        id: stored.id,
                        destination: stored.destination,
                        key: stored.key,
                        filter: ByteString::from(stored.filter),
                        ack: stored.ack,
                        restored: true,
                    });
                }
            }
            state
                .subscriptions
                .iter()
                .filter(|(filter, _)| !self.subscriptions.iter().any(|s| s.filter == **filter))
                .map(|(filter, _)| filter.clone())
                .collect()
        };
        for filter in orphans {
            tracing::debug!(client_id = %client.client_id, %filter, "session subscription without a STOMP subscription ended");
            self.ctx.unsubscribe(&session, &filter);
        }
        self.next_subscription_key = self
            .subscriptions
            .iter()
            .map(|s| s.key)
            .max()
            .map_or(1, |k| k.wrapping_add(1).max(1));
        self.save_subscriptions();
        self.redeliver_unacked(now, out);
        self.deliver_queued(now, out);
    }

    /// Sends every MESSAGE the session holds un-ACKed again, with a new `message-id` and
    /// `redelivered: true`; one whose subscription is gone is dropped (counted).
    fn redeliver_unacked(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut frames = Vec::new();
        let mut sent = [0u64; 3];
        let mut dropped = 0u64;
        {
            let mut state = session.lock();
            let mut index = 0;
            while index < state.inflight.len() {
                let entry = &state.inflight[index];
                let InflightState::AwaitingAck(delivery) = &entry.state else {
                    index += 1;
                    continue;
                };
                let subscription = self
                    .subscriptions
                    .iter()
                    .find(|s| s.ack != AckMode::Auto && delivery.subscription_ids.contains(&s.key));
                let Some(subscription) = subscription else {
                    complete_unacked(&mut state, index);
                    dropped += 1;
                    continue;
                };
                let message_id = self.next_message_id;
                self.next_message_id += 1;
                frames.push(self.message_frame(delivery, subscription, message_id, true));
                tally_qos(&mut sent, delivery.qos);
                self.unacked.push_back(Unacked {
                    message_id,
                    key: subscription.key,
                    packet_id: entry.packet_id,
                    redeliveries: 0,
                });
                state.inflight[index].sent_at = now;
                index += 1;
            }
        }
        self.ctx.count_sent(sent);
        self.ctx.count_dropped(DeliveryDrop::Other, dropped);
        for frame in frames {
            self.send(frame, now, out);
        }
    }
}
