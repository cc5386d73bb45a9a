//! The socket split for pre-framed writes.
//!
//! The writer task owns the socket's write half and writes prebuilt frame bytes as they
//! are. tungstenite parses the read half; the few frames it wants to write itself (pong
//! replies to client pings, the close reply) go through [`ControlOut`] to the writer,
//! which sends them between its own frames, so frames never interleave.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Most bytes of control frames waiting for the writer. Policy when full: **drop** the
/// write (whole pong frames; a client pinging faster than it reads loses pongs).
pub const CONTROL_OUT_MAX: usize = 4096;

/// Frames tungstenite wrote on the read side, waiting for the writer.
#[derive(Debug, Default)]
pub struct ControlOut {
    buf: Mutex<BytesMut>,
    pub notify: Notify,
}

impl ControlOut {
    /// Takes everything queued.
    pub fn take(&self) -> Bytes {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        b.split().freeze()
    }

    fn push(&self, data: &[u8]) {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() + data.len() <= CONTROL_OUT_MAX {
            b.extend_from_slice(data);
            drop(b);
            self.notify.notify_one();
        }
    }
}

/// The read half as tungstenite sees it: reads come from the socket (after any bytes
/// hyper had already read), writes go to [`ControlOut`].
pub struct ReadSide<R> {
    inner: R,
    prefix: Bytes,
    out: std::sync::Arc<ControlOut>,
}

impl<R> ReadSide<R> {
    pub fn new(inner: R, prefix: Bytes, out: std::sync::Arc<ControlOut>) -> Self {
        ReadSide { inner, prefix, out }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ReadSide<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for ReadSide<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.out.push(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
