//! A small LwM2M client (a test device) on Portico's CoAP codec: it registers at `/rd` over
//! UDP, keeps the registration up to date, de-registers on SIGTERM or ctrl-c, and serves
//! Device (3) and Temperature (3303) to the server's Device Management and Information
//! Reporting interfaces. The interop tests (`interop-tests/test_lwm2m.py`) drive it.
//!
//! ```text
//! lwm2m-device <server host:port> <endpoint> [lifetime seconds, default 60]
//!     [--binding U|UQ] [--lwm2m 1.0|1.1] [--notify-every <ms>] [--awake <ms>]
//! ```
//!
//! - Updates go at lifetime/2, on SIGUSR1, on a line `update` on stdin, and (with the new
//!   object list) after a create or delete. A line `temp <celsius>` sets every temperature;
//!   `quit` de-registers and exits.
//! - `--notify-every` moves the temperature every so many ms, so observations notify.
//! - `--binding UQ` is queue mode: after each message it sends, the device listens for
//!   `--awake` ms (default 3000), then sleeps: what arrives while asleep is not heard.
//! - Reads answer in TLV unless the request's Accept asks for text (0), OMA JSON (11543) or,
//!   with `--lwm2m 1.1`, SenML JSON (110) or CBOR (112).
//! - What happens is printed one event a line on stdout (`registered /rd/ep`, `updated`,
//!   `asleep`, `request GET /3/0 -> 2.05`, `notify /3303/0/5700 seq 2`, `deregistered`), for
//!   the tests to wait on.

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout)]

#[path = "lwm2m-device/handler.rs"]
mod handler;
#[path = "lwm2m-device/objects.rs"]
mod objects;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use portico_coap::message::{Code, Message, Token, Type};
use tokio::io::AsyncBufReadExt;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use handler::{Effect, Handler};

/// RFC 7252 §4.8 transmission parameters, for the device's own confirmable messages.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u32 = 4;
/// Responses kept to answer a retransmitted request again (RFC 7252 §4.5).
const DEDUP_ENTRIES: usize = 64;

#[derive(Debug, Clone)]
struct Args {
    server: SocketAddr,
    endpoint: String,
    lifetime: u32,
    queue_mode: bool,
    v1_1: bool,
    notify_every: Option<Duration>,
    awake: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut args = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 5783)),
        endpoint: String::new(),
        lifetime: 60,
        queue_mode: false,
        v1_1: false,
        notify_every: None,
        awake: Duration::from_millis(3000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--binding" => {
                args.queue_mode = match value()?.as_str() {
                    "U" => false,
                    "UQ" => true,
                    other => return Err(format!("--binding U or UQ, not {other}")),
                }
            }
            "--lwm2m" => {
                args.v1_1 = match value()?.as_str() {
                    "1.0" => false,
                    "1.1" => true,
                    other => return Err(format!("--lwm2m 1.0 or 1.1, not {other}")),
                }
            }
            "--notify-every" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--notify-every: {e}"))?;
                args.notify_every = Some(Duration::from_millis(ms.max(1)));
            }
            "--awake" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--awake: {e}"))?;
                args.awake = Duration::from_millis(ms);
            }
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => positional.push(arg),
        }
    }
    match positional.as_slice() {
        [server, endpoint, rest @ ..] if rest.len() <= 1 => {
            args.server = server.parse().map_err(|e| format!("server address {server:?}: {e}"))?;
            args.endpoint.clone_from(endpoint);
            if let Some(lt) = rest.first() {
                args.lifetime = lt.parse().map_err(|e| format!("lifetime {lt:?}: {e}"))?;
            }
            Ok(args)
        }
        _ => Err(
            "usage: lwm2m-device <server host:port> <endpoint> [lifetime] [--binding U|UQ] \
                  [--lwm2m 1.0|1.1] [--notify-every ms] [--awake ms]"
                .to_owned(),
        ),
    }
}

/// What a confirmable message of ours is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    Update,
    Deregister,
    Notify,
}

/// A confirmable message awaiting its ACK (and, for a request, its response).
#[derive(Debug)]
struct Pending {
    purpose: Purpose,
    message_id: u16,
    token: Token,
    bytes: Bytes,
    attempts: u32,
    timeout: Duration,
    /// `None` once an empty ACK came: the response will come separately.
    resend_at: Option<Instant>,
}

struct Device {
    args: Args,
    socket: UdpSocket,
    handler: Handler,
    location: Option<String>,
    /// The location before a reboot's registration.
    previous_location: Option<String>,
    next_message_id: u16,
    pending: Vec<Pending>,
    next_update: Option<Instant>,
    next_measure: Option<Instant>,
    /// Queue mode: listening until then.
    awake_until: Option<Instant>,
    asleep: bool,
    answered: VecDeque<(u16, Bytes)>,
    exit: Option<ExitCode>,
}

impl Device {
    fn message(&mut self, mtype: Type, code: Code) -> Message {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        Message::new(mtype, code, self.next_message_id)
    }

    async fn transmit(&mut self, bytes: &Bytes, now: Instant) {
        if let Err(e) = self.socket.send(bytes).await {
            println!("send failed: {e}");
        }
        if self.args.queue_mode {
            self.awake_until = Some(now + self.args.awake);
            if self.asleep {
                self.asleep = false;
                println!("awake");
            }
        }
    }

    async fn send_confirmable(&mut self, message: Message, purpose: Purpose, now: Instant) {
        let Ok(bytes) = portico_coap::encode_to_bytes(&message) else {
            println!("cannot encode {purpose:?}");
            return;
        };
        let timeout = ACK_TIMEOUT.mul_f64(1.0 + rand::random::<f64>() * 0.5);
        self.pending.push(Pending {
            purpose,
            message_id: message.message_id,
            token: message.token,
            bytes: bytes.clone(),
            attempts: 0,
            timeout,
            resend_at: Some(now + timeout),
        });
        self.transmit(&bytes, now).await;
    }

    fn registration_request(&mut self, code: Code) -> Message {
        let mut m = self.message(Type::Con, code);
        m.token = Token::from_u64(u64::from(rand::random::<u32>()) | 1);
        m
    }

    async fn register(&mut self, now: Instant) {
        self.pending.retain(|p| p.purpose == Purpose::Notify);
        let mut m = self.registration_request(Code::POST);
        m.options.push_uri_path("rd");
        let a = &self.args;
        for q in [
            format!("ep={}", a.endpoint),
            format!("lt={}", a.lifetime),
            format!("lwm2m={}", if a.v1_1 { "1.1" } else { "1.0" }),
            format!("b={}", if a.queue_mode { "UQ" } else { "U" }),
        ] {
            m.options.push_uri_query(&q);
        }
        m.options.set_content_format(portico_lwm2m::content::LINK_FORMAT);
        let mut links = self.handler.objects.object_links();
        if a.v1_1 {
            // LwM2M 1.1 announces the root and its preferred format (Core §6.2.1).
            links = format!("</>;rt=\"oma.lwm2m\";ct=110,{links}");
        }
        let m = m.with_payload(links);
        self.send_confirmable(m, Purpose::Register, now).await;
    }

    async fn update(&mut self, with_objects: bool, now: Instant) {
        let Some(location) = self.location.clone() else { return };
        if self.pending.iter().any(|p| p.purpose != Purpose::Notify) {
            // A registration exchange is under way; its answer schedules the next update.
            return;
        }
        let mut m = self.registration_request(Code::POST);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            m.options.push_uri_path(segment);
        }
        if with_objects {
            m.options.set_content_format(portico_lwm2m::content::LINK_FORMAT);
            m.payload = Bytes::from(self.handler.objects.object_links());
        }
        self.send_confirmable(m, Purpose::Update, now).await;
    }

    async fn deregister(&mut self, now: Instant) {
        let Some(location) = self.location.take() else {
            self.exit = Some(ExitCode::SUCCESS);
            return;
        };
        self.pending.clear();
        let mut m = self.registration_request(Code::DELETE);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            m.options.push_uri_path(segment);
        }
        self.send_confirmable(m, Purpose::Deregister, now).await;
    }

    /// The answer to one of our requests (piggybacked or separate).
    async fn on_response(&mut self, purpose: Purpose, response: &Message, now: Instant) {
        let code = code_text(response.code);
        match purpose {
            // A registration from an address the gateway already has registered (after a
            // reboot here) is answered 2.04 without a location, as EMQX does: the location
            // stays the one it gave before.
            Purpose::Register if response.code == Code::CREATED || response.code == Code::CHANGED => {
                let location: String = response
                    .options
                    .location_path()
                    .filter_map(Result::ok)
                    .map(|s| format!("/{s}"))
                    .collect();
                let location = match (location.is_empty(), self.previous_location.take()) {
                    (true, Some(previous)) => previous,
                    _ => location,
                };
                println!("registered {location} ({code})");
                self.location = Some(location);
                self.schedule_update(now);
            }
            Purpose::Register => {
                println!("register failed {code} {}", String::from_utf8_lossy(&response.payload));
                self.exit = Some(ExitCode::from(2));
            }
            Purpose::Update if response.code == Code::CHANGED => {
                println!("updated");
                self.schedule_update(now);
            }
            Purpose::Update if response.code == Code::NOT_FOUND => {
                // The server forgot the registration (Core §6.2.2): register again.
                println!("update refused {code}; registering again");
                self.location = None;
                self.register(now).await;
            }
            Purpose::Update => {
                println!("update failed {code}");
                self.schedule_update(now);
            }
            Purpose::Deregister => {
                println!("deregistered {code}");
                self.exit = Some(ExitCode::SUCCESS);
            }
            Purpose::Notify => {}
        }
    }

    fn schedule_update(&mut self, now: Instant) {
        let half = Duration::from_secs(u64::from(self.args.lifetime.max(2)) / 2);
        self.next_update = Some(now + half);
    }

    async fn on_datagram(&mut self, datagram: Bytes, now: Instant) {
        let Ok(message) = portico_coap::decode(datagram) else {
            println!("undecodable datagram ignored");
            return;
        };
        // ACK and RST answer our confirmable messages.
        if matches!(message.mtype, Type::Ack | Type::Rst) {
            let Some(i) = self.pending.iter().position(|p| p.message_id == message.message_id) else {
                return;
            };
            if message.mtype == Type::Rst {
                let p = self.pending.remove(i);
                if p.purpose == Purpose::Notify && self.handler.cancel(p.token) {
                    println!("observation cancelled by RST");
                } else if p.purpose != Purpose::Notify {
                    println!("{:?} reset", p.purpose);
                }
                return;
            }
            if message.code.is_empty() {
                if self.pending[i].purpose == Purpose::Notify {
                    self.pending.remove(i);
                } else {
                    self.pending[i].resend_at = None;
                }
                return;
            }
            let p = self.pending.remove(i);
            return self.on_response(p.purpose, &message, now).await;
        }
        if message.is_response() {
            // A separate response to one of our requests.
            if message.mtype == Type::Con {
                let ack = Message::ack_for(&message);
                if let Ok(bytes) = portico_coap::encode_to_bytes(&ack) {
                    self.transmit(&bytes, now).await;
                }
            }
            if let Some(i) = self
                .pending
                .iter()
                .position(|p| p.token == message.token && p.purpose != Purpose::Notify)
            {
                let p = self.pending.remove(i);
                self.on_response(p.purpose, &message, now).await;
            }
            return;
        }
        if !message.is_request() {
            if message.mtype == Type::Con {
                // A CoAP ping: answered with RST (RFC 7252 §4.3).
                if let Ok(bytes) = portico_coap::encode_to_bytes(&Message::reset_for(message.message_id)) {
                    self.transmit(&bytes, now).await;
                }
            }
            return;
        }
        if message.mtype == Type::Con
            && let Some((_, again)) = self.answered.iter().find(|(id, _)| *id == message.message_id)
        {
            let again = again.clone();
            return self.transmit(&again, now).await;
        }
        self.next_message_id = self.next_message_id.wrapping_add(1);
        let (response, effect) = self.handler.handle(&message, self.next_message_id, now.into_std());
        println!(
            "request {} {} -> {}",
            method_name(message.code),
            uri_path(&message),
            code_text(response.code)
        );
        let Ok(bytes) = portico_coap::encode_to_bytes(&response) else {
            return;
        };
        if message.mtype == Type::Con {
            if self.answered.len() == DEDUP_ENTRIES {
                self.answered.pop_front();
            }
            self.answered.push_back((message.message_id, bytes.clone()));
        }
        self.transmit(&bytes, now).await;
        match effect {
            Effect::None => {}
            Effect::ObjectsChanged => self.update(true, now).await,
            Effect::Reboot => {
                println!("rebooting");
                self.handler = Handler::new(now.into_std(), self.args.v1_1);
                self.previous_location = self.location.take();
                self.register(now).await;
            }
        }
        self.send_notifications(now).await;
    }

    async fn send_notifications(&mut self, now: Instant) {
        for n in self.handler.notifications(now.into_std()) {
            let mut m = self.message(Type::Con, n.code);
            m.token = n.token;
            m.options.set_observe(n.seq);
            if n.code == Code::CONTENT {
                m.options.set_content_format(n.format);
            }
            m.payload = Bytes::from(n.payload);
            println!("notify {} seq {} {}", n.path, n.seq, code_text(n.code));
            // A notification replaces an unacknowledged older one (RFC 7641 §4.5.2).
            self.pending
                .retain(|p| !(p.purpose == Purpose::Notify && p.token == n.token));
            self.send_confirmable(m, Purpose::Notify, now).await;
        }
    }

    async fn on_timer(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut given_up = Vec::new();
        for p in &mut self.pending {
            if p.resend_at.is_some_and(|at| at <= now) {
                if p.attempts >= MAX_RETRANSMIT {
                    given_up.push(p.message_id);
                    continue;
                }
                p.attempts += 1;
                p.timeout *= 2;
                p.resend_at = Some(now + p.timeout);
                resend.push(p.bytes.clone());
            }
        }
        for bytes in resend {
            self.transmit(&bytes, now).await;
        }
        for id in given_up {
            let Some(i) = self.pending.iter().position(|p| p.message_id == id) else {
                continue;
            };
            let p = self.pending.remove(i);
            println!("{:?} not acknowledged; given up", p.purpose);
            match p.purpose {
                Purpose::Register => self.exit = Some(ExitCode::from(3)),
                Purpose::Deregister => self.exit = Some(ExitCode::SUCCESS),
                Purpose::Update => self.schedule_update(now),
                Purpose::Notify => {
                    self.handler.cancel(p.token);
                }
            }
        }
        if self.next_update.is_some_and(|at| at <= now) {
            self.next_update = None;
            self.update(false, now).await;
        }
        if let (Some(at), Some(every)) = (self.next_measure, self.args.notify_every)
            && at <= now
        {
            self.next_measure = Some(now + every);
            // Between 20 and 30 °C in half-degree steps: every value differs from the last.
            self.handler.objects.measure(|v| if v >= 30.0 { 20.0 } else { v + 0.5 });
            self.send_notifications(now).await;
        }
        if !self.asleep && self.awake_until.is_some_and(|at| at <= now) {
            self.asleep = true;
            println!("asleep");
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let awake = self.awake_until.filter(|_| !self.asleep);
        self.pending
            .iter()
            .filter_map(|p| p.resend_at)
            .chain(self.next_update)
            .chain(self.next_measure)
            .chain(awake)
            .min()
    }

    async fn on_line(&mut self, line: &str, now: Instant) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("update"), _) => self.update(false, now).await,
            (Some("temp"), Some(v)) => match v.parse::<f64>() {
                Ok(celsius) => {
                    self.handler.objects.measure(|_| celsius);
                    self.send_notifications(now).await;
                }
                Err(e) => println!("temp: {e}"),
            },
            (Some("quit"), _) => self.deregister(now).await,
            (None, _) => {}
            _ => println!("unknown command {line:?}"),
        }
    }
}

fn code_text(code: Code) -> String {
    format!("{}.{:02}", code.class(), code.detail())
}

fn method_name(code: Code) -> &'static str {
    match code {
        Code::GET => "GET",
        Code::POST => "POST",
        Code::PUT => "PUT",
        Code::DELETE => "DELETE",
        _ => "?",
    }
}

fn uri_path(m: &Message) -> String {
    let path: String = m.options.uri_path().map(|s| format!("/{}", s.unwrap_or("?"))).collect();
    if path.is_empty() { "/".to_owned() } else { path }
}

async fn run(args: Args) -> std::io::Result<ExitCode> {
    let bind: SocketAddr = if args.server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(args.server).await?;
    let now = Instant::now();
    let mut device = Device {
        handler: Handler::new(now.into_std(), args.v1_1),
        next_measure: args.notify_every.map(|every| now + every),
        args,
        socket,
        location: None,
        previous_location: None,
        next_message_id: rand::random(),
        pending: Vec::new(),
        next_update: None,
        awake_until: None,
        asleep: false,
        answered: VecDeque::new(),
        exit: None,
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 65_536];
    device.register(now).await;
    loop {
        if let Some(code) = device.exit {
            return Ok(code);
        }
        let deadline = device.next_deadline();
        tokio::select! {
            received = device.socket.recv(&mut buf) => {
                let now = Instant::now();
                match received {
                    // A sleeping radio hears nothing.
                    Ok(_) if device.asleep => println!("asleep: datagram not heard"),
                    Ok(n) => device.on_datagram(Bytes::copy_from_slice(&buf[..n]), now).await,
                    // ICMP port unreachable while the server is down: keep trying.
                    Err(e) => println!("receive failed: {e}"),
                }
            }
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => device.on_timer(Instant::now()).await,
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => device.on_line(&line, Instant::now()).await,
                Ok(None) | Err(_) => stdin_open = false,
            },
            _ = usr1.recv() => device.update(false, Instant::now()).await,
            _ = term.recv() => device.deregister(Instant::now()).await,
            _ = tokio::signal::ctrl_c() => device.deregister(Instant::now()).await,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Stdin is read on a blocking thread that never returns while stdin stays open: do not
    // wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lwm2m-device: {e}");
            ExitCode::FAILURE
        }
    }
}
