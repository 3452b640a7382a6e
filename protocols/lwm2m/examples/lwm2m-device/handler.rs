//! The Device Management and Information Reporting interfaces: one CoAP request from the
//! server in, one response out (Core §5.4, §5.5, §6.4), and the observations it holds. Pure:
//! no socket, the clock is a parameter, so the tests drive it message by message.

use std::time::Instant;

use bytes::Bytes;
use portico_coap::message::{Code, Message, Token};
use portico_coap::observe;
use portico_lwm2m::content::{self, LINK_FORMAT, LWM2M_JSON, LWM2M_TLV, SENML_CBOR, SENML_JSON, TEXT_PLAIN};
use portico_lwm2m::{Item, Path};

use crate::objects::{Executed, Objects, Types};

/// What the device must do after answering, beyond sending the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// Reboot was executed: start again from the defaults and register anew.
    Reboot,
    /// An object instance was created or deleted: the registration's object list changed.
    ObjectsChanged,
}

/// One observation (RFC 7641): the server's token, what it watches, in which format, and
/// the last payload sent (a notification goes out when the payload changes).
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub(crate) token: Token,
    pub(crate) path: Path,
    format: u16,
    last: Vec<u8>,
    seq: u32,
}

/// A notification to send: the observation's token, its sequence number, the response.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub(crate) token: Token,
    pub(crate) seq: u32,
    pub(crate) code: Code,
    pub(crate) format: u16,
    pub(crate) payload: Vec<u8>,
    pub(crate) path: Path,
}

/// The device's server-facing state.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) objects: Objects,
    pub(crate) observations: Vec<Observation>,
    /// LwM2M 1.1 (SenML formats) or 1.0.
    v1_1: bool,
}

type Reply = Result<(Code, Option<(u16, Vec<u8>)>), Code>;

impl Handler {
    pub(crate) fn new(now: Instant, v1_1: bool) -> Handler {
        Handler {
            objects: Objects::new(now),
            observations: Vec::new(),
            v1_1,
        }
    }

    /// Answers `request`; `message_id` is the id of a NON response.
    pub(crate) fn handle(&mut self, request: &Message, message_id: u16, now: Instant) -> (Message, Effect) {
        let mut effect = Effect::None;
        let mut observe_seq = None;
        let mut location = None;
        let outcome: Reply = match parse_path(request) {
            None => Err(Code::NOT_FOUND),
            Some(path) => match request.code {
                Code::GET if request.options.accept() == Some(LINK_FORMAT) => self
                    .objects
                    .discover(&path)
                    .map(|links| (Code::CONTENT, Some((LINK_FORMAT, links.into_bytes())))),
                Code::GET => self.get(request, &path, now, &mut observe_seq),
                Code::PUT if request.options.content_format().is_none() && request.payload.is_empty() => {
                    let query: Vec<(String, String)> = request
                        .options
                        .query_pairs()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    if query.is_empty() {
                        Err(Code::BAD_REQUEST)
                    } else {
                        self.objects
                            .write_attributes(&path, &query, now)
                            .map(|()| (Code::CHANGED, None))
                    }
                }
                Code::PUT | Code::POST if path.depth() == 2 || (request.code == Code::PUT && path.depth() >= 3) => {
                    let replace = request.code == Code::PUT;
                    decode(request, &path)
                        .and_then(|items| self.objects.write(&path, &items, replace, now))
                        .map(|()| (Code::CHANGED, None))
                }
                Code::POST if path.depth() == 1 => {
                    let items = if request.payload.is_empty() {
                        Ok(Vec::new())
                    } else {
                        decode(request, &path)
                    };
                    items.and_then(|items| self.objects.create(&path, &items)).map(|id| {
                        effect = Effect::ObjectsChanged;
                        location = Some((path.object_id(), id));
                        (Code::CREATED, None)
                    })
                }
                Code::POST if path.depth() == 3 => self.objects.execute(&path).map(|done| {
                    if done == Executed::Reboot {
                        effect = Effect::Reboot;
                    }
                    (Code::CHANGED, None)
                }),
                Code::DELETE => self.objects.delete(&path).map(|()| {
                    effect = Effect::ObjectsChanged;
                    self.observations.retain(|o| !o.path.starts_with(&path));
                    (Code::DELETED, None)
                }),
                _ => Err(Code::METHOD_NOT_ALLOWED),
            },
        };
        let (code, body) = outcome.unwrap_or_else(|code| (code, None));
        let mut response = Message::response_to(request, code, message_id);
        if let Some(seq) = observe_seq {
            response.options.set_observe(seq);
        }
        if let Some((object, id)) = location {
            response.options.push_location_path(&object.to_string());
            response.options.push_location_path(&id.to_string());
        }
        if let Some((format, payload)) = body {
            response.options.set_content_format(format);
            response.payload = Bytes::from(payload);
        }
        (response, effect)
    }

    /// Read, Observe (Observe 0) and Cancel Observation (Observe 1).
    fn get(&mut self, request: &Message, path: &Path, now: Instant, observe_seq: &mut Option<u32>) -> Reply {
        let format = request.options.accept().unwrap_or(LWM2M_TLV);
        let senml = matches!(format, SENML_JSON | SENML_CBOR);
        let plain = matches!(format, TEXT_PLAIN | LWM2M_TLV | LWM2M_JSON);
        if !(plain || senml && self.v1_1) {
            return Err(Code::NOT_ACCEPTABLE);
        }
        let payload = self.encode(path, format, now)?;
        match request.options.observe() {
            Some(observe::REGISTER) => {
                self.observations.retain(|o| o.token != request.token);
                let seq = 1;
                self.observations.push(Observation {
                    token: request.token,
                    path: *path,
                    format,
                    last: payload.clone(),
                    seq,
                });
                *observe_seq = Some(seq);
            }
            Some(observe::DEREGISTER) => {
                self.cancel(request.token);
            }
            _ => {}
        }
        Ok((Code::CONTENT, Some((format, payload))))
    }

    fn encode(&self, path: &Path, format: u16, now: Instant) -> Result<Vec<u8>, Code> {
        let items = self.objects.read(path, now)?;
        // Text holds one value: a multiple resource or an instance cannot be sent in it.
        content::encode(format, path, &items).map_err(|_| Code::NOT_ACCEPTABLE)
    }

    /// Ends the observation of `token` (Observe 1, or a RST to one of its notifications).
    pub(crate) fn cancel(&mut self, token: Token) -> bool {
        let before = self.observations.len();
        self.observations.retain(|o| o.token != token);
        before != self.observations.len()
    }

    /// The notifications due: every observation whose value changed (its payload differs
    /// from the last one sent). An observed path that is gone gets a final 4.04.
    pub(crate) fn notifications(&mut self, now: Instant) -> Vec<Notification> {
        let mut due = Vec::new();
        let mut gone = Vec::new();
        for o in &mut self.observations {
            let (code, payload) = match self.objects.read(&o.path, now) {
                Ok(items) => match content::encode(o.format, &o.path, &items) {
                    Ok(payload) => (Code::CONTENT, payload),
                    Err(_) => (Code::NOT_ACCEPTABLE, Vec::new()),
                },
                Err(code) => (code, Vec::new()),
            };
            if code == Code::CONTENT && payload == o.last {
                continue;
            }
            if code != Code::CONTENT {
                gone.push(o.token);
            }
            o.seq = (o.seq + 1) & observe::MAX_SEQUENCE;
            o.last.clone_from(&payload);
            due.push(Notification {
                token: o.token,
                seq: o.seq,
                code,
                format: o.format,
                payload,
                path: o.path,
            });
        }
        self.observations.retain(|o| !gone.contains(&o.token));
        due
    }
}

/// The request's Uri-Path as an LwM2M path (`None`: not one, so 4.04).
fn parse_path(request: &Message) -> Option<Path> {
    let mut ids = Vec::new();
    for segment in request.options.uri_path() {
        ids.push(segment.ok()?.parse::<u16>().ok()?);
    }
    Path::new(&ids).ok()
}

/// The items of a write or create payload, by its Content-Format.
fn decode(request: &Message, path: &Path) -> Result<Vec<Item>, Code> {
    let format = request.options.content_format().ok_or(Code::BAD_REQUEST)?;
    if content::Format::from_content_format(format).is_none() {
        return Err(Code::UNSUPPORTED_CONTENT_FORMAT);
    }
    let records = content::decode(format, &request.payload, path, &Types).map_err(|_| Code::BAD_REQUEST)?;
    records
        .into_iter()
        .map(|r| r.value.map(|v| Item::new(r.path, v)).ok_or(Code::BAD_REQUEST))
        .collect()
}
