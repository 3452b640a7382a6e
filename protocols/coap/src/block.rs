//! Block-wise transfers (RFC 7959), as pure helpers with no I/O and no clock.
//!
//! - [`Block`]: the Block1/Block2 option value (NUM, M, SZX);
//! - [`Block1Assembler`]: puts one request body back together from its Block1 blocks and says
//!   what to answer to each (2.31 Continue, or the whole body; 4.08 and 4.13 as EMQX does);
//! - [`block2_slice`]: cuts block NUM out of a response body larger than one block.
//!
//! Expiry is the caller's job: it keeps its assemblers (and any Block2 body it serves) in a map
//! keyed by peer and request, each with a deadline `exchange_lifetime` (EMQX: 247 s) after its
//! last block, and drops those past it.

use bytes::{Bytes, BytesMut};

use crate::message::Code;
use crate::options::decode_uint;

/// The largest SZX: 6, a block of 1024 bytes; 7 is reserved (RFC 7959 §2.2).
pub const MAX_SZX: u8 = 6;

/// The largest block number: NUM has 20 bits in a 3-byte value.
pub const MAX_NUM: u32 = (1 << 20) - 1;

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number NUM, the "more blocks" flag M,
/// and the size exponent SZX (the block holds `16 << szx` bytes). Only valid values exist: NUM
/// fits 20 bits and SZX is at most 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    num: u32,
    more: bool,
    szx: u8,
}

/// Why a value is not a block option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Longer than the three bytes a block option may have.
    #[error("a block option value has at most 3 bytes, this one has {0}")]
    TooLong(usize),
    /// SZX 7 is reserved (RFC 7959 §2.2); a request carrying it gets 4.00.
    #[error("block size exponent 7 is reserved")]
    ReservedSzx,
    /// NUM does not fit in 20 bits.
    #[error("block number {0} does not fit in 20 bits")]
    NumTooLarge(u32),
}

impl Block {
    /// The block NUM of size `16 << szx`, with `more` blocks after it.
    pub const fn new(num: u32, more: bool, szx: u8) -> Result<Block, BlockError> {
        if szx > MAX_SZX {
            return Err(BlockError::ReservedSzx);
        }
        if num > MAX_NUM {
            return Err(BlockError::NumTooLarge(num));
        }
        Ok(Block { num, more, szx })
    }

    /// Decodes an option value: a uint of 0..3 bytes `NUM << 4 | M << 3 | SZX`.
    pub fn from_value(value: &[u8]) -> Result<Block, BlockError> {
        if value.len() > 3 {
            return Err(BlockError::TooLong(value.len()));
        }
        Block::from_uint(decode_uint(value).unwrap_or_default())
    }

    /// Decodes the uint `NUM << 4 | M << 3 | SZX`.
    pub const fn from_uint(value: u32) -> Result<Block, BlockError> {
        Block::new(value >> 4, value & 0b1000 != 0, (value & 0b111) as u8)
    }

    /// The uint `NUM << 4 | M << 3 | SZX` (at most 24 bits).
    pub const fn to_uint(self) -> u32 {
        (self.num << 4) | ((self.more as u32) << 3) | self.szx as u32
    }

    /// The block number.
    pub const fn num(self) -> u32 {
        self.num
    }

    /// More blocks follow (in a request or response body); in a 2.31 Block1 echo, the server
    /// is still collecting.
    pub const fn more(self) -> bool {
        self.more
    }

    /// The size exponent (0..=6).
    pub const fn szx(self) -> u8 {
        self.szx
    }

    /// The block size in bytes: `16 << szx`, 16..=1024.
    pub const fn size(self) -> usize {
        16 << self.szx
    }

    /// Where this block starts in the body.
    pub const fn offset(self) -> usize {
        self.num as usize * self.size()
    }

    /// The same block with another M flag.
    pub const fn with_more(self, more: bool) -> Block {
        Block { more, ..self }
    }

    /// The SZX of a block size, if it is a power of two in 16..=1024 (e.g. a configured
    /// `max_block_size`).
    pub const fn szx_for_size(size: usize) -> Option<u8> {
        if size < 16 || size > 1024 || !size.is_power_of_two() {
            return None;
        }
        Some((size.trailing_zeros() - 4) as u8)
    }
}

/// Why a Block1 body cannot be assembled; [`Block1Error::code`] is the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Block1Error {
    /// Not the block that was expected next (also: a first block that is not block 0).
    #[error("block {got} arrived while block {expected} was expected")]
    OutOfOrder {
        /// The next block number.
        expected: u32,
        /// The number received.
        got: u32,
    },
    /// The block size changed in the middle of a body. RFC 7959 §2.3 lets the client shrink
    /// it after a server asked; we never ask, and EMQX answers 4.08 to any change.
    #[error("block size changed from {was} to {now} bytes in the middle of a body")]
    SizeChanged {
        /// The size of the earlier blocks.
        was: usize,
        /// The size of this one.
        now: usize,
    },
    /// A block that is not the last one must fill its size exactly, and the last one cannot
    /// be larger (RFC 7959 §2.2): otherwise the offsets of the blocks are wrong.
    #[error("block {num} carries {len} bytes, its size is {size}")]
    WrongPayloadLength {
        /// The block number.
        num: u32,
        /// The payload's length.
        len: usize,
        /// The block size.
        size: usize,
    },
    /// The body would exceed the configured maximum.
    #[error("the body exceeds the {max} bytes allowed")]
    TooLarge {
        /// The configured `max_body_size`.
        max: usize,
    },
}

impl Block1Error {
    /// The response code (EMQX: 4.08 for order and size changes, 4.13 when too large).
    pub const fn code(&self) -> Code {
        match self {
            Block1Error::OutOfOrder { .. } | Block1Error::SizeChanged { .. } => Code::REQUEST_ENTITY_INCOMPLETE,
            Block1Error::WrongPayloadLength { .. } => Code::BAD_REQUEST,
            Block1Error::TooLarge { .. } => Code::REQUEST_ENTITY_TOO_LARGE,
        }
    }
}

/// What to answer to a Block1 block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block1Step {
    /// Not the last block: answer 2.31 Continue with this Block1 (the block echoed, M set).
    Continue(Block),
    /// The last block: the whole body, and the Block1 to echo in the final response (M clear).
    Complete {
        /// The reassembled body.
        body: Bytes,
        /// The Block1 option for the response.
        block: Block,
    },
}

/// Reassembles one request body from its Block1 blocks (RFC 7959 §2.5), in order.
///
/// Block 0 (re)starts the body; each later block must be the next number with the same size.
/// After an error the assembler is reset and the caller should drop it; after `Complete` it is
/// ready for a new body. A body of one block is returned without a copy.
#[derive(Debug, Clone)]
pub struct Block1Assembler {
    max_body_size: usize,
    body: BytesMut,
    /// The size exponent and the next block number, once block 0 arrived.
    next: Option<(u8, u32)>,
}

impl Block1Assembler {
    /// An assembler for bodies of at most `max_body_size` bytes (EMQX default 4 MB).
    pub fn new(max_body_size: usize) -> Block1Assembler {
        Block1Assembler {
            max_body_size,
            body: BytesMut::new(),
            next: None,
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.body.len()
    }

    /// The next block number expected, if a body is in progress.
    pub fn expected(&self) -> Option<u32> {
        self.next.map(|(_, num)| num)
    }

    fn reset(&mut self) {
        self.body = BytesMut::new();
        self.next = None;
    }

    /// Takes `block` (the request's Block1) with its `payload`.
    pub fn push(&mut self, block: Block, payload: &Bytes) -> Result<Block1Step, Block1Error> {
        let result = self.accept(block, payload);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn accept(&mut self, block: Block, payload: &Bytes) -> Result<Block1Step, Block1Error> {
        if block.num() == 0 {
            self.reset();
        } else {
            match self.next {
                None => {
                    return Err(Block1Error::OutOfOrder {
                        expected: 0,
                        got: block.num(),
                    });
                }
                Some((_, expected)) if expected != block.num() => {
                    return Err(Block1Error::OutOfOrder {
                        expected,
                        got: block.num(),
                    });
                }
                Some((szx, _)) if szx != block.szx() => {
                    return Err(Block1Error::SizeChanged {
                        was: 16 << szx,
                        now: block.size(),
                    });
                }
                Some(_) => {}
            }
        }
        let fits = if block.more() {
            payload.len() == block.size()
        } else {
            payload.len() <= block.size()
        };
        if !fits {
            return Err(Block1Error::WrongPayloadLength {
                num: block.num(),
                len: payload.len(),
                size: block.size(),
            });
        }
        if self.body.len() + payload.len() > self.max_body_size {
            return Err(Block1Error::TooLarge {
                max: self.max_body_size,
            });
        }
        if !block.more() {
            let body = if self.body.is_empty() {
                payload.clone()
            } else {
                self.body.extend_from_slice(payload);
                std::mem::take(&mut self.body).freeze()
            };
            self.reset();
            return Ok(Block1Step::Complete { body, block });
        }
        if block.num() == MAX_NUM {
            // No block can follow the last number: the body can never be completed.
            return Err(Block1Error::TooLarge {
                max: self.max_body_size,
            });
        }
        self.body.extend_from_slice(payload);
        self.next = Some((block.szx(), block.num() + 1));
        Ok(Block1Step::Continue(block))
    }
}

/// Block NUM of `body` cut in blocks of `requested.size()` bytes, with the Block2 option to send
/// with it (`M` set when more follow; the request's own `M` is ignored, RFC 7959 §2.2). `None`
/// when the block starts past the end of the body; block 0 of an empty body is the empty last
/// block. The slice shares `body`'s buffer.
pub fn block2_slice(body: &Bytes, requested: Block) -> Option<(Bytes, Block)> {
    let start = requested.offset();
    if start > body.len() || (start == body.len() && requested.num() > 0) {
        return None;
    }
    let end = body.len().min(start + requested.size());
    Some((body.slice(start..end), requested.with_more(end < body.len())))
}
