//! `portico ctl trace ...`: the log trace of `/api/v5/trace`. EMQX's `emqx ctl trace start`
//! writes to a file path the operator names; here every trace is the managed kind (a name, a
//! file under the node's data directory, read back with `trace log`).

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::client::{Ctl, CtlError, encode, text};

/// Bytes asked for per `/log` call while printing a whole log.
const LOG_CHUNK: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum TraceCommand {
    /// Every trace: condition, status, times and file size.
    List,
    /// Start tracing a client id, a topic filter or a peer IP address.
    Start {
        /// What to trace: client (or clientid), topic or ip_address.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The client id, topic filter or IP address.
        value: String,
        /// The trace's name (A-Z, a-z, 0-9, - and _).
        name: String,
        /// How long it runs: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "10m")]
        duration: String,
        /// How payloads are written: text, hex or hidden.
        #[arg(long, default_value = "text")]
        payload_encode: String,
        /// The lines' shape: text or json.
        #[arg(long, default_value = "text")]
        formatter: String,
    },
    /// Stop a trace (its log stays).
    Stop { name: String },
    /// Delete a trace and its log.
    Delete { name: String },
    /// Print a trace's log.
    Log { name: String },
}

/// `10m` → 600: seconds, or digits with `s`, `m`, `h` or `d`.
fn parse_duration(text: &str) -> Result<u64, CtlError> {
    let bad = || {
        CtlError::Config(format!(
            "--duration: {text:?} is not a duration such as 30s, 10m, 2h or 1d"
        ))
    };
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(scale) {
        Some(0) => Err(CtlError::Config("--duration: must be greater than zero".to_owned())),
        Some(seconds) => Ok(seconds),
        None => Err(bad()),
    }
}

/// EMQX's ctl says `client`; the API says `clientid`.
fn api_type(kind: &str) -> &str {
    if kind == "client" { "clientid" } else { kind }
}

fn trace_line(t: &Value) -> String {
    let kind = text(&t["type"]);
    let size: u64 = t["log_size"]
        .as_object()
        .map_or(0, |sizes| sizes.values().filter_map(Value::as_u64).sum());
    format!(
        "Trace({}, {kind}={}, status={}, start_at={}, end_at={}, log_size={size}, dropped={})",
        text(&t["name"]),
        text(&t[kind.as_str()]),
        text(&t["status"]),
        text(&t["start_at"]),
        text(&t["end_at"]),
        text(&t["dropped"]),
    )
}

impl Ctl {
    pub(crate) async fn trace(&self, command: &TraceCommand) -> Result<String, CtlError> {
        match command {
            TraceCommand::List => {
                let rows = self.get("/api/v5/trace").await?;
                let rows = rows.as_array().cloned().unwrap_or_default();
                self.render_rows(rows, trace_line)
            }
            TraceCommand::Start {
                kind,
                value,
                name,
                duration,
                payload_encode,
                formatter,
            } => {
                let seconds = parse_duration(duration)?;
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let kind = api_type(kind);
                let body = json!({
                    "name": name,
                    "type": kind,
                    kind: value,
                    "end_at": now.saturating_add(seconds),
                    "payload_encode": payload_encode,
                    "formatter": formatter,
                });
                let trace = self.call(Method::POST, "/api/v5/trace", Some(body)).await?;
                self.render(trace, |t| {
                    format!("trace {} started\n{}\n", text(&t["name"]), trace_line(t))
                })
            }
            TraceCommand::Stop { name } => {
                let path = format!("/api/v5/trace/{}/stop", encode(name));
                self.call(Method::PUT, &path, None).await?;
                Ok(self.done(&format!("trace {name} stopped")))
            }
            TraceCommand::Delete { name } => {
                let path = format!("/api/v5/trace/{}", encode(name));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("trace {name} deleted")))
            }
            TraceCommand::Log { name } => {
                let mut log = String::new();
                let mut position = 0u64;
                loop {
                    let path = format!(
                        "/api/v5/trace/{}/log?position={position}&bytes={LOG_CHUNK}",
                        encode(name)
                    );
                    let answer = self.get(&path).await?;
                    let items = answer["items"].as_str().unwrap_or_default();
                    let next = answer["meta"]["position"].as_u64().unwrap_or(position);
                    // Nothing more (or no progress, which would loop forever).
                    if items.is_empty() || next <= position {
                        break;
                    }
                    log.push_str(items);
                    position = next;
                }
                self.render(json!({"name": name, "items": log, "position": position}), |_| {
                    log.clone()
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("30").unwrap(), 30);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("1d").unwrap(), 86_400);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn client_is_clientid() {
        assert_eq!(api_type("client"), "clientid");
        assert_eq!(api_type("topic"), "topic");
    }
}
