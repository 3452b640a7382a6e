//! `portico ctl`: operate a running node, as `emqx ctl` does for EMQX, over the node's local
//! control socket (`node.ctl_socket`, served by `portico_api::Api::serve_local`). Each command
//! is one or a few calls of the HTTP API (`docs/api.md`) as HTTP/1.1 over the Unix socket; the
//! answer is printed as text, or as the API's JSON with `--json`. See `docs/cli.md`.
//!
//! Exit codes: 0 done; 1 the node cannot be reached (the message names the socket) or the API
//! refused (its `code` and `message`); 2 bad usage (clap's message).

mod admins;
mod client;
mod data;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Args, Subcommand};
use hyper::Method;
use portico::config::{CONFIG_PATH_ENV, Config, process_env};
use serde_json::{Value, json};

use self::admins::{AdminsCommand, UsersCommand};
use self::client::{Ctl, CtlError, duration, encode, fields, lines, text};
use self::data::DataCommand;

/// `portico ctl`.
#[derive(Debug, Args)]
pub(crate) struct CtlArgs {
    /// The node's control socket. Default: `node.data_dir` + `node.ctl_socket` of the
    /// configuration (`--config`, `$PORTICO_CONFIG`, `PORTICO_*` variables), as for `start`.
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// Configuration file (TOML) to find the socket from.
    #[arg(long, short, env = CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// The node: name, version, uptime, connections.
    Status,
    /// Clients (sessions).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Subscriptions.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// Routes: the subscribed topic filters.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Retained messages.
    #[command(subcommand)]
    Retainer(RetainerCommand),
    /// Bans (client id, user name, peer address).
    #[command(subcommand)]
    Banned(BannedCommand),
    /// Every listener, or start/stop/restart an MQTT listener.
    Listeners {
        #[command(subcommand)]
        action: Option<ListenerAction>,
    },
    /// Gateways (MQTT-SN, CoAP, LwM2M, STOMP).
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Every counter, by its EMQX name.
    Metrics,
    /// Statistics: current and highest values.
    Stats,
    /// Publish a message.
    Publish {
        /// Topic name.
        topic: String,
        /// Payload, as text.
        payload: String,
        /// QoS 0, 1 or 2.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Retain the message.
        #[arg(long)]
        retain: bool,
    },
    /// Log traces of a client id, topic filter or IP address.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Data export and import (backups of users, rules, bans, retained messages, keys).
    #[command(subcommand)]
    Data(DataCommand),
    /// Dashboard users.
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Users of the built-in database authenticator (MQTT clients).
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Every client.
    List,
    /// One client, every field.
    Show { clientid: String },
    /// Close the client's connection and end its session.
    Kick { clientid: String },
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCommand {
    /// Every subscription, or one client's.
    List {
        #[arg(long)]
        clientid: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Every route.
    List,
}

#[derive(Debug, Subcommand)]
enum RetainerCommand {
    /// Every retained message (without payloads).
    List,
    /// One retained message with its payload.
    Show { topic: String },
    /// Delete a retained message.
    Delete { topic: String },
}

#[derive(Debug, Subcommand)]
enum BannedCommand {
    /// Bans in force.
    List,
    /// Ban a client id, user name, peer address or network.
    Add {
        /// What `--who` is: clientid, username, peerhost or peerhost_net.
        #[arg(long = "as", value_name = "KIND")]
        kind: String,
        /// The client id, user name, IP address or CIDR range.
        #[arg(long)]
        who: String,
        /// Why (shown in the list).
        #[arg(long)]
        reason: Option<String>,
        /// End of the ban: RFC 3339 time or Unix seconds. Default: never.
        #[arg(long)]
        until: Option<String>,
    },
    /// Lift a ban.
    Delete {
        /// clientid, username, peerhost or peerhost_net.
        #[arg(value_name = "AS")]
        kind: String,
        /// As given when banning.
        who: String,
    },
}

#[derive(Debug, Subcommand)]
enum ListenerAction {
    /// Start accepting again.
    Start { id: String },
    /// Stop accepting (open connections carry on).
    Stop { id: String },
    /// Stop, then start.
    Restart { id: String },
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Every gateway.
    List,
    /// Start a gateway.
    Enable { name: String },
    /// Stop a gateway (its clients are disconnected).
    Disable { name: String },
}

/// Why a command failed.
/// Runs `portico ctl ...` and prints its outcome.
pub(crate) fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portico ctl: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = socket_path(&args).and_then(|socket| {
        let ctl = Ctl {
            socket,
            json: args.json,
        };
        runtime.block_on(ctl.execute(&args.command))
    });
    match outcome {
        Ok(text) => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("portico ctl: cannot write the answer to stdout: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("portico ctl: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--socket`, or the configuration's `node.data_dir` + `node.ctl_socket`.
fn socket_path(args: &CtlArgs) -> Result<PathBuf, CtlError> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let config = Config::load(args.config.as_deref(), process_env())
        .map_err(|errors| CtlError::Config(format!("the configuration is invalid:\n{errors}")))?;
    config.node.ctl_socket_path().ok_or_else(|| {
        CtlError::Config("node.ctl_socket is \"\" (the control socket is off); pass --socket PATH".to_owned())
    })
}

impl Ctl {
    async fn execute(&self, command: &CtlCommand) -> Result<String, CtlError> {
        match command {
            CtlCommand::Status => self.status().await,
            CtlCommand::Clients(ClientsCommand::List) => {
                let rows = self.list_all("/api/v5/clients", &[]).await?;
                self.render_rows(rows, client_line)
            }
            CtlCommand::Clients(ClientsCommand::Show { clientid }) => {
                let client = self.get(&format!("/api/v5/clients/{}", encode(clientid))).await?;
                self.render(client, fields)
            }
            CtlCommand::Clients(ClientsCommand::Kick { clientid }) => {
                let path = format!("/api/v5/clients/{}", encode(clientid));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("client {clientid} kicked")))
            }
            CtlCommand::Subscriptions(SubscriptionsCommand::List { clientid }) => {
                let filter: Vec<(&str, &str)> = clientid.iter().map(|id| ("clientid", id.as_str())).collect();
                let rows = self.list_all("/api/v5/subscriptions", &filter).await?;
                self.render_rows(rows, |s| {
                    format!(
                        "{} -> topic:{} qos:{} nl:{} rap:{}",
                        text(&s["clientid"]),
                        text(&s["topic"]),
                        text(&s["qos"]),
                        text(&s["nl"]),
                        text(&s["rap"])
                    )
                })
            }
            CtlCommand::Topics(TopicsCommand::List) => {
                let rows = self.list_all("/api/v5/topics", &[]).await?;
                self.render_rows(rows, |t| format!("{} -> {}", text(&t["topic"]), text(&t["node"])))
            }
            CtlCommand::Retainer(command) => self.retainer(command).await,
            CtlCommand::Banned(command) => self.banned(command).await,
            CtlCommand::Listeners { action: None } => {
                let rows = self.get("/api/v5/listeners").await?;
                self.render(rows, |rows| lines(rows, listener_line))
            }
            CtlCommand::Listeners { action: Some(action) } => {
                let (id, verb, done) = match action {
                    ListenerAction::Start { id } => (id, "start", "started"),
                    ListenerAction::Stop { id } => (id, "stop", "stopped"),
                    ListenerAction::Restart { id } => (id, "restart", "restarted"),
                };
                let path = format!("/api/v5/listeners/{}/{verb}", encode(id));
                self.call(Method::POST, &path, None).await?;
                Ok(self.done(&format!("listener {id} {done}")))
            }
            CtlCommand::Gateway(command) => self.gateway(command).await,
            CtlCommand::Trace(command) => self.trace(command).await,
            CtlCommand::Data(command) => self.data(command).await,
            CtlCommand::Admins(command) => self.admins(command).await,
            CtlCommand::Users(command) => self.users(command).await,
            CtlCommand::Metrics => {
                let metrics = self.get("/api/v5/metrics?aggregate=true").await?;
                self.render(metrics, fields)
            }
            CtlCommand::Stats => {
                let stats = self.get("/api/v5/stats?aggregate=true").await?;
                self.render(stats, fields)
            }
            CtlCommand::Publish {
                topic,
                payload,
                qos,
                retain,
            } => {
                let body = json!({"topic": topic, "payload": payload, "qos": qos, "retain": retain});
                let answer = self.call(Method::POST, "/api/v5/publish", Some(body)).await?;
                self.render(answer, |a| match a.get("message") {
                    Some(message) => format!("published {} ({})\n", text(&a["id"]), text(message)),
                    None => format!("published {}\n", text(&a["id"])),
                })
            }
        }
    }

    async fn status(&self) -> Result<String, CtlError> {
        let nodes = self.get("/api/v5/nodes").await?;
        let node = nodes.as_array().and_then(|n| n.first()).cloned().unwrap_or(Value::Null);
        self.render(node, |n| {
            let uptime = n["uptime"]
                .as_u64()
                .map_or_else(|| "?".to_owned(), |ms| duration(ms / 1000));
            format!(
                "Node {} {} (portico {})\nuptime: {uptime}\nconnections: {}\n",
                text(&n["node"]),
                text(&n["node_status"]),
                text(&n["version"]),
                text(&n["connections"]),
            )
        })
    }

    async fn retainer(&self, command: &RetainerCommand) -> Result<String, CtlError> {
        match command {
            RetainerCommand::List => {
                let rows = self.list_all("/api/v5/mqtt/retainer/messages", &[]).await?;
                self.render_rows(rows, |m| {
                    format!(
                        "{} qos:{} from:{} at:{}",
                        text(&m["topic"]),
                        text(&m["qos"]),
                        text(&m["from_clientid"]),
                        text(&m["publish_at"])
                    )
                })
            }
            RetainerCommand::Show { topic } => {
                let message = self
                    .get(&format!("/api/v5/mqtt/retainer/message/{}", encode(topic)))
                    .await?;
                self.render(message, |m| {
                    let mut shown = m.clone();
                    if let Some(payload) = m["payload"].as_str() {
                        let decoded = base64::engine::general_purpose::STANDARD.decode(payload).ok();
                        if let Some(utf8) = decoded.and_then(|bytes| String::from_utf8(bytes).ok()) {
                            shown["payload"] = Value::String(utf8);
                        } else {
                            shown["payload"] = Value::String(format!("base64:{payload}"));
                        }
                    }
                    fields(&shown)
                })
            }
            RetainerCommand::Delete { topic } => {
                let path = format!("/api/v5/mqtt/retainer/message/{}", encode(topic));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("retained message on {topic} deleted")))
            }
        }
    }

    async fn banned(&self, command: &BannedCommand) -> Result<String, CtlError> {
        match command {
            BannedCommand::List => {
                let rows = self.list_all("/api/v5/banned", &[]).await?;
                self.render_rows(rows, |b| {
                    format!(
                        "{}:{} by:{} reason:{} at:{} until:{}",
                        text(&b["as"]),
                        text(&b["who"]),
                        text(&b["by"]),
                        text(&b["reason"]),
                        text(&b["at"]),
                        text(&b["until"])
                    )
                })
            }
            BannedCommand::Add {
                kind,
                who,
                reason,
                until,
            } => {
                let mut body = json!({"as": kind, "who": who, "by": "portico_ctl"});
                if let Some(reason) = reason {
                    body["reason"] = json!(reason);
                }
                if let Some(until) = until {
                    body["until"] = json!(until);
                }
                let ban = self.call(Method::POST, "/api/v5/banned", Some(body)).await?;
                self.render(ban, |b| {
                    format!(
                        "banned {}:{} until {}\n",
                        text(&b["as"]),
                        text(&b["who"]),
                        text(&b["until"])
                    )
                })
            }
            BannedCommand::Delete { kind, who } => {
                let path = format!("/api/v5/banned/{}/{}", encode(kind), encode(who));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("ban {kind}:{who} lifted")))
            }
        }
    }

    async fn gateway(&self, command: &GatewayCommand) -> Result<String, CtlError> {
        let (name, enable) = match command {
            GatewayCommand::List => {
                let rows = self.get("/api/v5/gateways").await?;
                return self.render(rows, |rows| {
                    lines(rows, |g| {
                        format!(
                            "Gateway({}, status={}, current_connections={}, started_at={}, stopped_at={})",
                            text(&g["name"]),
                            text(&g["status"]),
                            text(&g["current_connections"]),
                            text(&g["started_at"]),
                            text(&g["stopped_at"])
                        )
                    })
                });
            }
            GatewayCommand::Enable { name } => (name, true),
            GatewayCommand::Disable { name } => (name, false),
        };
        let path = format!("/api/v5/gateways/{}/enable/{enable}", encode(name));
        self.call(Method::PUT, &path, None).await?;
        let done = if enable { "enabled" } else { "disabled" };
        Ok(self.done(&format!("gateway {name} {done}")))
    }
}

fn client_line(c: &Value) -> String {
    format!(
        "Client({}, username={}, ip_address={}, protocol={}, proto_ver={}, clean_start={}, keepalive={}, \
         subscriptions={}, inflight={}, mqueue_len={}, connected={}, connected_at={})",
        text(&c["clientid"]),
        text(&c["username"]),
        text(&c["ip_address"]),
        text(&c["protocol"]),
        text(&c["proto_ver"]),
        text(&c["clean_start"]),
        text(&c["keepalive"]),
        text(&c["subscriptions_cnt"]),
        text(&c["inflight_cnt"]),
        text(&c["mqueue_len"]),
        text(&c["connected"]),
        text(&c["connected_at"])
    )
}

fn listener_line(l: &Value) -> String {
    let state = if l["running"].as_bool() == Some(true) {
        "running"
    } else {
        "stopped"
    };
    format!(
        "{:<24} {:<6} {:<24} {state}",
        text(&l["id"]),
        text(&l["type"]),
        text(&l["bind"])
    )
}
