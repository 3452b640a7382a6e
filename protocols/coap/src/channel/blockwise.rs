//! RFC 7959 block-wise transfers (gateway-semantics §2.7): Block1 uploads are reassembled before
//! the request is served (2.31 Continue for each block but the last), and a response or
//! notification over `max_block_size` (or over the size a Block2 option of the request or the
//! observation's registration asks for, RFC 7959 §2.4) goes out as its first Block2 block, the
//! rest fetched by GET with Block2. A response's body is kept for `exchange_lifetime`; a
//! notification's is the message layer's, which sends nothing else until its blocks are
//! fetched ([`crate::exchange`]).
//!
//! Per client at most [`MAX_UPLOADS`] uploads and [`MAX_DOWNLOADS`] bodies are kept; the
//! oldest make room.

use std::time::Instant;

use bytes::Bytes;

use super::{CoapChannel, Out};
use crate::block::{Block, Block1Assembler, Block1Step, block2_slice};
use crate::message::{Code, Message};

/// Uploads in progress per client at most.
pub(super) const MAX_UPLOADS: usize = 4;

/// Large bodies kept per client for Block2 follow-ups at most.
pub(super) const MAX_DOWNLOADS: usize = 8;

#[derive(Debug)]
struct Upload {
    /// Request URI (path and query): blocks of one body share it (RFC 7959 §2.5).
    key: String,
    assembler: Block1Assembler,
    expires: Instant,
}

#[derive(Debug)]
struct Download {
    path: String,
    body: Bytes,
    expires: Instant,
}

/// One client's block-wise transfers.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    uploads: Vec<Upload>,
    downloads: Vec<Download>,
}

impl Transfers {
    /// Forgets transfers past their lifetime.
    pub(super) fn expire(&mut self, now: Instant) {
        self.uploads.retain(|u| u.expires > now);
        self.downloads.retain(|d| d.expires > now);
    }

    /// When the next transfer expires.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        let uploads = self.uploads.iter().map(|u| u.expires);
        let downloads = self.downloads.iter().map(|d| d.expires);
        uploads.chain(downloads).min()
    }

    fn keep_download(&mut self, path: &str, body: Bytes, expires: Instant) {
        self.downloads.retain(|d| d.path != path);
        if self.downloads.len() >= MAX_DOWNLOADS {
            self.downloads.remove(0);
        }
        self.downloads.push(Download {
            path: path.to_owned(),
            body,
            expires,
        });
    }
}

fn upload_key(request: &Message) -> String {
    let mut key = request.uri_path_joined().unwrap_or_default();
    for entry in request.options.uri_query().flatten() {
        key.push('?');
        key.push_str(entry);
    }
    key
}

impl CoapChannel {
    fn largest_block(&self) -> Block {
        let szx = Block::szx_for_size(self.settings.blockwise.max_block_size).unwrap_or(6);
        Block::new(0, false, szx).unwrap_or_else(|_| unreachable!("szx_for_size gives 0..=6"))
    }

    /// Takes a Block1 block of an upload: `Some(request)` with the whole body once it is
    /// complete (or at once without Block1), `None` when it was answered (2.31 or an error).
    pub(super) fn assemble_upload(&mut self, mut request: Message, now: Instant, out: &mut Out) -> Option<Message> {
        let Some(block) = request.options.block1() else {
            return Some(request);
        };
        let blockwise = self.settings.blockwise;
        if !blockwise.enable {
            self.refuse(&request, Code::BAD_OPTION, "block-wise transfers are disabled", out);
            return None;
        }
        if request
            .options
            .size1()
            .is_some_and(|s| s as usize > blockwise.max_body_size)
        {
            self.refuse(
                &request,
                Code::REQUEST_ENTITY_TOO_LARGE,
                "Request Entity Too Large",
                out,
            );
            return None;
        }
        if block.size() > blockwise.max_block_size {
            // RFC 7959 §2.9.3: 4.13 with the block size we take.
            let mut response = Message::response_to(&request, Code::REQUEST_ENTITY_TOO_LARGE, self.layer.next_id());
            response.options.set_block1(self.largest_block());
            out.send(response);
            return None;
        }
        let key = upload_key(&request);
        let position = self.transfers.uploads.iter().position(|u| u.key == key);
        let index = match position {
            Some(i) => i,
            None if block.num() == 0 => {
                if self.transfers.uploads.len() >= MAX_UPLOADS {
                    self.transfers.uploads.remove(0);
                }
                self.transfers.uploads.push(Upload {
                    key,
                    assembler: Block1Assembler::new(blockwise.max_body_size),
                    expires: now + blockwise.exchange_lifetime,
                });
                self.transfers.uploads.len() - 1
            }
            None => {
                self.refuse(
                    &request,
                    Code::REQUEST_ENTITY_INCOMPLETE,
                    "Request Entity Incomplete",
                    out,
                );
                return None;
            }
        };
        let upload = &mut self.transfers.uploads[index];
        upload.expires = now + blockwise.exchange_lifetime;
        match upload.assembler.push(block, &request.payload) {
            Ok(Block1Step::Continue(echo)) => {
                let mut response = Message::response_to(&request, Code::CONTINUE, self.layer.next_id());
                response.options.set_block1(echo);
                if request.mtype == crate::message::Type::Con {
                    self.layer.record_response(request.message_id, &response);
                }
                out.send(response);
                None
            }
            Ok(Block1Step::Complete { body, block }) => {
                self.transfers.uploads.remove(index);
                request.payload = body;
                request.options.remove(crate::options::number::BLOCK1);
                self.block1_echo = Some(block);
                Some(request)
            }
            Err(error) => {
                self.transfers.uploads.remove(index);
                self.refuse(&request, error.code(), &error.to_string(), out);
                None
            }
        }
    }

    /// Serves a GET with Block2 NUM > 0 from the large notification being fetched or a body
    /// kept for it; false if it is no such request.
    pub(super) fn serve_download(&mut self, request: &Message, now: Instant, out: &mut Out) -> bool {
        let Some(block) = request.options.block2().filter(|b| b.num() > 0) else {
            return false;
        };
        if request.code != Code::GET || !self.settings.blockwise.enable {
            return false;
        }
        let path = request.uri_path_joined().unwrap_or_default();
        let fetching = self.layer.transfer_token().and_then(|t| self.observation_path(t));
        if fetching == Some(path.as_str()) {
            let Some(reply) = self.layer.take_block(block, now) else {
                self.refuse(request, Code::REQUEST_ENTITY_INCOMPLETE, "no such block", out);
                return true;
            };
            let mut response = Message::response_to(request, Code::CONTENT, self.layer.next_id());
            response.options.set_etag(&reply.etag);
            response.options.set_block2(reply.block);
            response
                .options
                .set_size2(u32::try_from(reply.total).unwrap_or(u32::MAX));
            let response = response.with_payload(reply.payload);
            if request.mtype == crate::message::Type::Con {
                self.layer.record_response(request.message_id, &response);
            }
            out.send(response);
            // After its last block, what waited behind the notification goes.
            self.layer.flush(now, out);
            return true;
        }
        let found = self
            .transfers
            .downloads
            .iter()
            .find(|d| d.path == path && d.expires > now)
            .and_then(|d| block2_slice(&d.body, block).map(|slice| (slice, d.body.len())));
        match found {
            Some(((slice, block), total)) => {
                let mut response = Message::response_to(request, Code::CONTENT, self.layer.next_id());
                response.options.set_block2(block);
                response.options.set_size2(u32::try_from(total).unwrap_or(u32::MAX));
                let response = response.with_payload(slice);
                if request.mtype == crate::message::Type::Con {
                    self.layer.record_response(request.message_id, &response);
                }
                out.send(response);
            }
            None => self.refuse(request, Code::REQUEST_ENTITY_INCOMPLETE, "no such block", out),
        }
        true
    }

    /// Puts `payload` into `response` to `request`, as its first block if it is too large (the
    /// body is kept for the client's GETs of the next blocks).
    pub(super) fn set_body(&mut self, message: &mut Message, request: &Message, payload: Bytes) {
        let blockwise = self.settings.blockwise;
        let largest = self.largest_block();
        // A smaller size the request asks for (early negotiation, RFC 7959 §2.4).
        let first = request
            .options
            .block2()
            .filter(|b| b.szx() < largest.szx())
            .and_then(|b| Block::new(0, false, b.szx()).ok())
            .unwrap_or(largest);
        if !blockwise.enable || payload.len() <= first.size() {
            message.payload = payload;
            return;
        }
        let Some((slice, block)) = block2_slice(&payload, first) else {
            message.payload = payload;
            return;
        };
        message.options.set_block2(block);
        message
            .options
            .set_size2(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        message.payload = slice;
        let path = request.uri_path_joined().unwrap_or_default();
        self.transfers
            .keep_download(&path, payload, self.now + blockwise.exchange_lifetime);
    }
}
