//! What a trace follows (EMQX's `type`: `clientid`, `topic`, `ip_address`) and the cheap
//! match the broker's hook runs for every event.

use std::collections::HashSet;
use std::net::IpAddr;

use parking_lot::Mutex;
use portico_core::TopicFilter;
use portico_core::hooks::Event;

/// Most client ids an `ip_address` trace remembers at once (clients currently connected from
/// that address). Past it, further clients' connect events are still traced, their later events
/// are not.
pub const MAX_IP_CLIENTS: usize = 10_000;

/// Longest client id a `clientid` trace accepts (MQTT's own limit on a UTF-8 string).
pub const MAX_CLIENTID_LEN: usize = 65_535;

/// The condition of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every event of this client id (exact).
    ClientId(String),
    /// Message events whose topic matches, and (un)subscribe events whose filter the trace's
    /// filter covers.
    Topic(TopicFilter),
    /// Every event of the clients whose connection came from this address.
    IpAddress(IpAddr),
}

impl Filter {
    /// Builds the filter of EMQX's `type` with its value; the reason when either is bad.
    pub fn new(kind: &str, value: &str) -> Result<Filter, String> {
        if value.is_empty() {
            return Err(format!("{kind}: must not be empty"));
        }
        match kind {
            "clientid" if value.len() > MAX_CLIENTID_LEN => {
                Err(format!("clientid: longer than {MAX_CLIENTID_LEN} bytes"))
            }
            "clientid" => Ok(Filter::ClientId(value.to_owned())),
            "topic" => TopicFilter::new(value.to_owned())
                .map(Filter::Topic)
                .map_err(|e| format!("topic: {value:?} is not a valid topic filter: {e}")),
            "ip_address" => value
                .parse::<IpAddr>()
                .map(Filter::IpAddress)
                .map_err(|_| format!("ip_address: {value:?} is not an IPv4 or IPv6 address")),
            other => Err(format!("type: expected clientid, topic or ip_address, got {other:?}")),
        }
    }

    /// EMQX's `type`: `clientid`, `topic` or `ip_address` (also the key its value is listed under).
    pub fn kind(&self) -> &'static str {
        match self {
            Filter::ClientId(_) => "clientid",
            Filter::Topic(_) => "topic",
            Filter::IpAddress(_) => "ip_address",
        }
    }

    /// The value, as text.
    pub fn value(&self) -> String {
        match self {
            Filter::ClientId(id) => id.clone(),
            Filter::Topic(filter) => filter.as_str().to_owned(),
            Filter::IpAddress(ip) => ip.to_string(),
        }
    }
}

/// True when the trace filter `filter` covers the subscription filter `subscribed`: its levels
/// are matched as a topic name would be, a `+` or `#` of `subscribed` matching only the same
/// wildcard (or a wildcard) in `filter`. So `a/#` covers `a/+/c` and `a/#`, `a/b` covers only
/// `a/b`. A shared subscription (`$share/g/x`, `$queue/x`) is matched by its filter `x`.
pub fn covers(filter: &str, subscribed: &str) -> bool {
    let subscribed = strip_share(subscribed);
    if subscribed.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = subscribed.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => match levels.next() {
                // `+` covers any one level but not a multi-level `#`.
                Some("#") | None => return false,
                Some(_) => {}
            },
            literal => {
                if levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

/// `x` of `$share/{group}/x` and `$queue/x`; other filters as they are.
fn strip_share(filter: &str) -> &str {
    if let Some(rest) = filter.strip_prefix("$share/") {
        return rest.split_once('/').map_or(rest, |(_, f)| f);
    }
    filter.strip_prefix("$queue/").unwrap_or(filter)
}

/// The topic an (un)subscribe event is about, if it is one.
fn subscription_topic(event: &Event) -> Option<&str> {
    match event {
        Event::ClientSubscribe { topic, .. } | Event::ClientUnsubscribe { topic, .. } => Some(topic),
        Event::SessionSubscribed(e) => Some(&e.topic),
        Event::SessionUnsubscribed(e) => Some(&e.topic),
        _ => None,
    }
}

/// The peer address a life-cycle event carries, if any.
pub(crate) fn peer_ip(event: &Event) -> Option<IpAddr> {
    match event {
        Event::ClientConnect(info) | Event::ClientConnack { info, .. } => info.peer.map(|p| p.ip()),
        Event::ClientConnected(e) => e.peer,
        Event::ClientDisconnected(e) => e.peer,
        _ => None,
    }
}

/// A filter with what it needs to match: for `ip_address`, the client ids seen connecting
/// from the address.
#[derive(Debug)]
pub(crate) struct Matcher {
    filter: Filter,
    ip_clients: Mutex<HashSet<String>>,
}

impl Matcher {
    pub(crate) fn new(filter: Filter) -> Matcher {
        Matcher {
            filter,
            ip_clients: Mutex::new(HashSet::new()),
        }
    }

    /// True when `event` belongs in the trace. Runs on the broker's hot path: compares strings,
    /// walks a topic's levels or looks a client id up in a set, nothing more.
    pub(crate) fn matches(&self, event: &Event) -> bool {
        match &self.filter {
            Filter::ClientId(id) => event.client_id() == id,
            Filter::Topic(filter) => {
                if let Some(message) = event.message() {
                    filter.matches(&message.topic)
                } else {
                    subscription_topic(event).is_some_and(|topic| covers(filter, topic))
                }
            }
            Filter::IpAddress(ip) => self.matches_ip(*ip, event),
        }
    }

    fn matches_ip(&self, ip: IpAddr, event: &Event) -> bool {
        let client_id = event.client_id();
        let from_ip = peer_ip(event) == Some(ip);
        match event {
            // The client id of `client.connect` is the one sent, empty when the broker assigns
            // one; `client.connected` carries the final one, so both record it.
            Event::ClientConnect(_) | Event::ClientConnected(_) if from_ip => {
                if !client_id.is_empty() {
                    let mut clients = self.ip_clients.lock();
                    if clients.len() < MAX_IP_CLIENTS || clients.contains(client_id) {
                        clients.insert(client_id.to_owned());
                    }
                }
                true
            }
            // The connection is gone: forget the client (its id may next come from elsewhere).
            Event::ClientDisconnected(_) => {
                let known = self.ip_clients.lock().remove(client_id);
                known || from_ip
            }
            _ => from_ip || self.ip_clients.lock().contains(client_id),
        }
    }

    /// Client ids currently remembered (for `ip_address`).
    #[cfg(test)]
    pub(crate) fn ip_client_count(&self) -> usize {
        self.ip_clients.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests::{connect, connected, delivered, disconnected, publish, subscribe};

    #[test]
    fn filters_are_validated() {
        assert_eq!(Filter::new("clientid", "c1"), Ok(Filter::ClientId("c1".into())));
        assert!(Filter::new("clientid", "").is_err());
        assert!(Filter::new("topic", "a/#").is_ok());
        assert!(Filter::new("topic", "a/#/b").is_err());
        assert!(Filter::new("topic", "a+").is_err());
        assert!(Filter::new("ip_address", "127.0.0.1").is_ok());
        assert!(Filter::new("ip_address", "::1").is_ok());
        assert!(Filter::new("ip_address", "localhost").is_err());
        assert!(Filter::new("ruleid", "r1").unwrap_err().contains("type"));
        assert!(Filter::new("clientid", &"x".repeat(MAX_CLIENTID_LEN + 1)).is_err());
    }

    #[test]
    fn filters_cover_subscriptions() {
        assert!(covers("a/#", "a/b"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "a/#"));
        assert!(covers("a/+", "a/+"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/b", "a/b/c"));
        assert!(covers("#", "x/y"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("a/b", "$share/g/a/b"));
        assert!(covers("a/b", "$queue/a/b"));
    }

    #[test]
    fn clientid_matches_every_event_of_the_client() {
        let m = Matcher::new(Filter::ClientId("c1".into()));
        assert!(m.matches(&connect("c1", "10.0.0.1")));
        assert!(m.matches(&publish("c1", "t/1", b"x")));
        assert!(m.matches(&delivered("c1", "t/1")));
        assert!(m.matches(&subscribe("c1", "t/#")));
        assert!(!m.matches(&connect("c2", "10.0.0.1")));
        assert!(!m.matches(&publish("c2", "t/1", b"x")));
    }

    #[test]
    fn topic_matches_messages_and_subscriptions() {
        let m = Matcher::new(Filter::new("topic", "t/+").unwrap());
        assert!(m.matches(&publish("any", "t/1", b"x")));
        assert!(m.matches(&delivered("any", "t/2")));
        assert!(!m.matches(&publish("any", "u/1", b"x")));
        assert!(m.matches(&subscribe("any", "t/x")));
        assert!(!m.matches(&subscribe("any", "t/#")));
        // Life-cycle events have no topic.
        assert!(!m.matches(&connect("any", "10.0.0.1")));
    }

    #[test]
    fn ip_address_follows_the_clients_from_that_address() {
        let m = Matcher::new(Filter::new("ip_address", "10.0.0.1").unwrap());
        assert!(!m.matches(&publish("c1", "t", b"x")));
        assert!(m.matches(&connect("c1", "10.0.0.1")));
        assert!(m.matches(&connected("c1", "10.0.0.1")));
        assert!(!m.matches(&connect("c2", "10.0.0.2")));
        assert!(m.matches(&publish("c1", "t", b"x")));
        assert!(m.matches(&delivered("c1", "t")));
        assert!(!m.matches(&publish("c2", "t", b"x")));
        assert_eq!(m.ip_client_count(), 1);
        assert!(m.matches(&disconnected("c1", "10.0.0.1")));
        assert_eq!(m.ip_client_count(), 0);
        assert!(!m.matches(&publish("c1", "t", b"x")));
    }

    #[test]
    fn ip_address_remembers_a_bounded_number_of_clients() {
        let m = Matcher::new(Filter::new("ip_address", "10.0.0.1").unwrap());
        for i in 0..MAX_IP_CLIENTS + 5 {
            assert!(m.matches(&connected(&format!("c{i}"), "10.0.0.1")));
        }
        assert_eq!(m.ip_client_count(), MAX_IP_CLIENTS);
    }
}
