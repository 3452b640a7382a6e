//! Trace definitions in the durable store's key space [`SPACE`], so that they survive a
//! restart (their log files are under `{node.data_dir}/trace/` already).

use std::sync::Arc;

use bytes::Bytes;
use portico_core::journal::Journal;
use portico_core::store::StoreOp;
use serde::{Deserialize, Serialize};

use crate::filter::Filter;
use crate::format::{Formatter, PayloadEncode};

/// The durable store's key space of trace definitions, keyed by name.
pub(crate) const SPACE: &str = "trace.definitions";

/// A trace as defined by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Definition {
    pub(crate) name: String,
    pub(crate) filter: Filter,
    pub(crate) start_at_ms: u64,
    pub(crate) end_at_ms: u64,
    pub(crate) payload_encode: PayloadEncode,
    pub(crate) formatter: Formatter,
    /// Stopped by the operator (`PUT /trace/{name}/stop`) before its end.
    pub(crate) stopped: bool,
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: String,
    start_at_ms: u64,
    end_at_ms: u64,
    payload_encode: String,
    formatter: String,
    stopped: bool,
}

impl Definition {
    fn record(&self) -> Record {
        Record {
            v: 1,
            name: self.name.clone(),
            kind: self.filter.kind().to_owned(),
            value: self.filter.value(),
            start_at_ms: self.start_at_ms,
            end_at_ms: self.end_at_ms,
            payload_encode: self.payload_encode.as_str().to_owned(),
            formatter: self.formatter.as_str().to_owned(),
            stopped: self.stopped,
        }
    }

    fn from_record(record: Record) -> Result<Definition, String> {
        Ok(Definition {
            filter: Filter::new(&record.kind, &record.value)?,
            payload_encode: PayloadEncode::parse(&record.payload_encode)
                .ok_or_else(|| format!("payload_encode {:?} unknown", record.payload_encode))?,
            formatter: Formatter::parse(&record.formatter)
                .ok_or_else(|| format!("formatter {:?} unknown", record.formatter))?,
            name: record.name,
            start_at_ms: record.start_at_ms,
            end_at_ms: record.end_at_ms,
            stopped: record.stopped,
        })
    }
}

/// Every stored definition. A record that cannot be read is skipped with a warning: one bad
/// trace must not keep the node from starting.
pub(crate) fn load(journal: Option<&Arc<Journal>>) -> Result<Vec<Definition>, String> {
    let Some(journal) = journal else {
        return Ok(Vec::new());
    };
    let rows = journal.store().kv_scan(SPACE).map_err(|e| format!("{SPACE}: {e}"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let key = String::from_utf8_lossy(&key).into_owned();
        let parsed = serde_json::from_slice::<Record>(&value)
            .map_err(|e| e.to_string())
            .and_then(Definition::from_record);
        match parsed {
            Ok(definition) => out.push(definition),
            Err(why) => tracing::warn!(space = SPACE, key, %why, "trace: skipping an unreadable trace definition"),
        }
    }
    Ok(out)
}

pub(crate) fn put(journal: Option<&Arc<Journal>>, definition: &Definition) {
    if let Some(journal) = journal {
        let value = match serde_json::to_vec(&definition.record()) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(name = definition.name, %error, "trace: cannot encode a definition; not stored");
                return;
            }
        };
        journal.submit(StoreOp::KvPut {
            space: SPACE,
            key: Bytes::copy_from_slice(definition.name.as_bytes()),
            value: Bytes::from(value),
        });
        forget_ticket();
    }
}

pub(crate) fn delete(journal: Option<&Arc<Journal>>, name: &str) {
    if let Some(journal) = journal {
        journal.submit(StoreOp::KvDelete {
            space: SPACE,
            key: Bytes::copy_from_slice(name.as_bytes()),
        });
        forget_ticket();
    }
}

/// The journal leaves each write's ticket in a thread-local that the next MQTT channel on this
/// thread would wait for; an operator's write must not delay an unrelated client's ack.
fn forget_ticket() {
    let _ = portico_core::journal::take_ticket();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let definition = Definition {
            name: "t1".into(),
            filter: Filter::new("topic", "a/#").unwrap(),
            start_at_ms: 1,
            end_at_ms: 2,
            payload_encode: PayloadEncode::Hex,
            formatter: Formatter::Json,
            stopped: true,
        };
        let json = serde_json::to_vec(&definition.record()).unwrap();
        let back = Definition::from_record(serde_json::from_slice(&json).unwrap()).unwrap();
        assert_eq!(back, definition);
    }
}
