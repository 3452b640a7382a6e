//! Reading a PROXY header from a socket within a deadline, and handing on the bytes read past it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::{Parsed, ProxyError, ProxyHeader, V2_FIXED_LEN, V2_SIGNATURE, parse};

/// First read size; enough for any v1 header and common v2 headers in one read.
const FIRST_READ: usize = 256;

/// Reads a PROXY header from `stream` within `timeout` (the listener's
/// `proxy_protocol_timeout`). Returns the header and the bytes read past it, which belong to the
/// client's protocol: wrap the stream with [`Prefixed::new`] to hand them on.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(ProxyHeader, BytesMut), ProxyError> {
    let mut buf = BytesMut::new();
    let result = tokio::time::timeout(timeout, read_until_parsed(stream, &mut buf)).await;
    match result {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout {
            after: timeout,
            received: buf.len(),
        }),
    }
}

async fn read_until_parsed<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(ProxyHeader, BytesMut), ProxyError> {
    loop {
        if let Parsed::Complete { header, consumed } = parse(buf)? {
            buf.advance(consumed);
            return Ok((header, buf.split()));
        }
        // A v2 header announces its length: read the rest in as few calls as possible.
        let want = if buf.len() >= V2_FIXED_LEN && buf.starts_with(&V2_SIGNATURE) {
            V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]])) - buf.len()
        } else {
            FIRST_READ
        };
        buf.reserve(want);
        if stream.read_buf(buf).await? == 0 {
            return Err(ProxyError::Eof { received: buf.len() });
        }
    }
}

/// A stream that yields `prefix` before the bytes of `inner`, e.g. the client bytes read along
/// with a PROXY header. Writes go straight to `inner`. The prefix buffer is freed once read.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Reads `prefix` first, then `inner`.
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// Bytes of the prefix not yet read.
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream (reading from it directly skips the prefix).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The unread prefix and the stream.
    pub fn into_parts(self) -> (BytesMut, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // Drop the allocation (it may be the whole header read buffer).
            this.prefix = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
