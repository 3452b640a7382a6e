//! The redb tables and the file's format version.

use redb::TableDefinition;

/// Version of the table layout (the `format` record in [`META`]). A file written with a higher
/// version is refused: this build does not know what its tables mean.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Key of the format version in [`META`].
pub(crate) const FORMAT_KEY: &str = "format";

/// File-level records: the format version.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Client id → encoded [`portico_core::store::SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// (client id, filter as sent) → encoded [`portico_core::session::SubOptions`].
pub(crate) const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("subscriptions");

/// (client id, seq) → encoded [`crate::codec::EntryRecord`] (the body is in [`MESSAGES`]).
pub(crate) const SESSION_MSGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session_msgs");

/// Message id → encoded [`portico_core::Message`]: the bodies of queued messages, once each.
pub(crate) const MESSAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("messages");

/// (client id, packet id) → arrival, wall-clock milliseconds.
pub(crate) const AWAITING_REL: TableDefinition<(&str, u16), u64> = TableDefinition::new("awaiting_rel");

/// Topic → encoded retained [`portico_core::Message`].
pub(crate) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// Message id → due time (`u64`) and encoded [`portico_core::Message`].
pub(crate) const DELAYED: TableDefinition<u128, &[u8]> = TableDefinition::new("delayed");

/// (key space, key) → value.
pub(crate) const KV: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("kv");
