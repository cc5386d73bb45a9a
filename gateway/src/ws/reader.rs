//! Client → server WebSocket frames (RFC 6455 §5, server side), read by the gateway itself.
//!
//! tungstenite's reader keeps a read buffer per connection for the connection's whole life,
//! grown to the largest frame it ever saw. Clients mostly send nothing but pongs, so this
//! reader holds **no buffer while nothing is pending**: it reads into a stack buffer, keeps
//! only the unparsed bytes of a frame in progress, and lets go of them (and of a large
//! frame's allocation) as soon as the frame is parsed. It yields tungstenite's [`Message`]
//! and [`WsError`] so the session's handling and close codes stay the same:
//!
//! - a frame, or a message's fragments together, over `max_message` bytes: `Capacity` (1009);
//! - unmasked frames, reserved bits, unknown opcodes, fragmented or oversized control
//!   frames, stray or missing continuations, a bad close frame: `Protocol` (1002);
//! - text that is not UTF-8: `Utf8` (1007).
//!
//! A ping is answered with a pong through the [`Outbox`] (dropped when it is full: the
//! connection is then being closed as a slow consumer). A close frame ends the stream
//! after it is yielded; the session sends the closing reply. After an error the stream
//! ends too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::io::Outbox;

/// Bytes read from the socket per call (on the stack, not kept per connection).
const READ_CHUNK: usize = 4096;

/// A data message being received in fragments.
struct Partial {
    binary: bool,
    bytes: BytesMut,
}

/// Reads client frames from `R`; see the module docs.
pub struct FrameReader<R> {
    read: R,
    /// Unparsed bytes: empty (and unallocated) between frames.
    pending: BytesMut,
    partial: Option<Partial>,
    /// Largest frame, and largest message its fragments make together (bytes).
    max_message: usize,
    out: Arc<Outbox>,
    /// A close frame or an error was yielded, or the peer closed the socket.
    done: bool,
}

impl<R> FrameReader<R> {
    pub fn new(read: R, max_message: usize, out: Arc<Outbox>) -> Self {
        FrameReader {
            read,
            pending: BytesMut::new(),
            partial: None,
            max_message,
            out,
            done: false,
        }
    }

    /// Bytes kept for unparsed input (0 while no frame is in progress).
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.pending.capacity() + self.partial.as_ref().map_or(0, |p| p.bytes.capacity())
    }

    /// The next complete message in `pending`, if there is one.
    fn parse(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let Some(frame) = self.next_frame()? else {
                return Ok(None);
            };
            if let Some(msg) = self.on_frame(frame)? {
                return Ok(Some(msg));
            }
        }
    }

    /// Takes one whole frame off `pending`: (fin, opcode, unmasked payload).
    fn next_frame(&mut self) -> Result<Option<(bool, u8, BytesMut)>, WsError> {
        let buf = &self.pending[..];
        if buf.len() < 2 {
            return Ok(None);
        }
        let (fin, rsv, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x70, buf[0] & 0x0f);
        if rsv != 0 {
            return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
        }
        match opcode {
            0..=2 | 8..=10 => {}
            3..=7 => {
                return Err(WsError::Protocol(ProtocolError::UnknownDataFrameType(
                    opcode,
                )))
            }
            _ => {
                return Err(WsError::Protocol(ProtocolError::UnknownControlFrameType(
                    opcode,
                )))
            }
        }
        if buf[1] & 0x80 == 0 {
            return Err(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient));
        }
        let (len, at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.check_message(len)?;
        if opcode >= 8 {
            if !fin {
                return Err(WsError::Protocol(ProtocolError::FragmentedControlFrame));
            }
            if len > 125 {
                return Err(WsError::Protocol(ProtocolError::ControlFrameTooBig));
            }
        }
        let head = at + 4;
        if self.pending.len() < head + len {
            // Room for the whole frame at once (bounded by `max_message` above).
            self.pending.reserve(head + len - self.pending.len());
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let mut frame = self.pending.split_to(head + len);
        frame.advance(head);
        for (i, b) in frame.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        if self.pending.is_empty() {
            // Nothing left over: give the allocation back (the frame keeps its part).
            self.pending = BytesMut::new();
        } else if self.pending.capacity() > READ_CHUNK {
            // The start of the next frame: keep it, not a large frame's whole allocation.
            self.pending = BytesMut::from(&self.pending[..]);
        }
        Ok(Some((fin, opcode, frame)))
    }

    /// Applies one frame; a message when it completes one.
    fn on_frame(
        &mut self,
        (fin, opcode, payload): (bool, u8, BytesMut),
    ) -> Result<Option<Message>, WsError> {
        match opcode {
            9 => {
                let _ = self.out.send(&crate::frame::pong(&payload));
                Ok(Some(Message::Ping(payload.freeze())))
            }
            10 => Ok(Some(Message::Pong(payload.freeze()))),
            8 => {
                check_close(&payload)?;
                self.done = true;
                Ok(Some(Message::Close(None)))
            }
            0 => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(WsError::Protocol(ProtocolError::UnexpectedContinueFrame));
                };
                self.check_message(partial.bytes.len() + payload.len())?;
                partial.bytes.extend_from_slice(&payload);
                if fin {
                    message(partial.binary, partial.bytes.freeze()).map(Some)
                } else {
                    self.partial = Some(partial);
                    Ok(None)
                }
            }
            _ => {
                if self.partial.is_some() {
                    let data = if opcode == 1 {
                        Data::Text
                    } else {
                        Data::Binary
                    };
                    return Err(WsError::Protocol(ProtocolError::ExpectedFragment(data)));
                }
                self.check_message(payload.len())?;
                if fin {
                    message(opcode == 2, payload.freeze()).map(Some)
                } else {
                    self.partial = Some(Partial {
                        binary: opcode == 2,
                        bytes: payload,
                    });
                    Ok(None)
                }
            }
        }
    }

    fn check_message(&self, size: usize) -> Result<(), WsError> {
        if size > self.max_message {
            return Err(WsError::Capacity(CapacityError::MessageTooLong {
                size,
                max_size: self.max_message,
            }));
        }
        Ok(())
    }
}

/// A complete data message; text must be UTF-8.
fn message(binary: bool, bytes: Bytes) -> Result<Message, WsError> {
    if binary {
        return Ok(Message::Binary(bytes));
    }
    Utf8Bytes::try_from(bytes)
        .map(Message::Text)
        .map_err(|e| WsError::Utf8(e.to_string()))
}

/// A close frame's payload: empty, or a code that may be sent plus a UTF-8 reason.
fn check_close(payload: &[u8]) -> Result<(), WsError> {
    if payload.is_empty() {
        return Ok(());
    }
    if payload.len() < 2 {
        return Err(WsError::Protocol(ProtocolError::InvalidCloseSequence));
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(WsError::Protocol(ProtocolError::InvalidCloseSequence));
    }
    std::str::from_utf8(&payload[2..]).map_err(|e| WsError::Utf8(e.to_string()))?;
    Ok(())
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.parse() {
                Ok(Some(msg)) => return Poll::Ready(Some(Ok(msg))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            if let Err(e) = ready!(Pin::new(&mut this.read).poll_read(cx, &mut rb)) {
                this.done = true;
                return Poll::Ready(Some(Err(WsError::Io(e))));
            }
            if rb.filled().is_empty() {
                // The peer closed its side without a close frame.
                this.done = true;
                return Poll::Ready(None);
            }
            this.pending.extend_from_slice(rb.filled());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::io::{RawWrite, Socket};
    use futures_util::StreamExt;
    use std::sync::Mutex;

    /// Records what the reader writes (its pongs).
    #[derive(Default)]
    struct Sink(Mutex<Vec<u8>>);

    impl RawWrite for Arc<Sink> {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    const MAX_MESSAGE: usize = 1024;

    /// A masked client frame of any size.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [9, 8, 7, 6];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// A reader over `input`, delivered `step` bytes per read; and what it wrote.
    fn reader(input: Vec<u8>, step: usize) -> (FrameReader<Trickle>, Arc<Sink>) {
        let sink = Arc::new(Sink::default());
        let out = Arc::new(Outbox::new(Socket::other(sink.clone()), 8));
        (
            FrameReader::new(Trickle { data: input, step }, MAX_MESSAGE, out),
            sink,
        )
    }

    /// Hands out its bytes `step` at a time, then end of stream.
    struct Trickle {
        data: Vec<u8>,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            let head: Vec<u8> = self.data.drain(..n).collect();
            buf.put_slice(&head);
            Poll::Ready(Ok(()))
        }
    }

    async fn all(mut r: FrameReader<Trickle>) -> Vec<Result<Message, String>> {
        let mut v = Vec::new();
        while let Some(m) = r.next().await {
            v.push(m.map_err(|e| e.to_string()));
        }
        v
    }

    #[tokio::test]
    async fn messages_arrive_whole_however_the_bytes_are_cut() {
        let mut input = frame(true, 1, br#"{"op":"ping"}"#);
        input.extend(frame(false, 2, b"ab"));
        input.extend(frame(true, 9, b"hi")); // a ping between fragments
        input.extend(frame(false, 0, b"cd"));
        input.extend(frame(true, 0, b"ef"));
        input.extend(frame(true, 1, &[b'x'; 300]));
        input.extend(frame(true, 8, &[0x03, 0xe8, b'o', b'k']));
        input.extend(frame(true, 1, b"after close: not read"));
        for step in [1, 3, 7, 4096] {
            let (r, sink) = reader(input.clone(), step);
            let got = all(r).await;
            assert_eq!(
                got,
                vec![
                    Ok(Message::text(r#"{"op":"ping"}"#)),
                    Ok(Message::Ping(Bytes::from_static(b"hi"))),
                    Ok(Message::Binary(Bytes::from_static(b"abcdef"))),
                    Ok(Message::text("x".repeat(300))),
                    Ok(Message::Close(None)),
                ],
                "step {step}"
            );
            assert_eq!(
                &sink.0.lock().unwrap()[..],
                &[0x8a, 2, b'h', b'i'],
                "the pong"
            );
        }
    }

    #[tokio::test]
    async fn nothing_is_kept_between_frames() {
        let mut input = frame(true, 2, &[7u8; 1000]);
        input.extend(frame(true, 10, b""));
        let (mut r, _) = reader(input, 4096);
        assert_eq!(r.buffered_capacity(), 0, "nothing before the first byte");
        let big = r.next().await.unwrap().unwrap();
        assert_eq!(big.len(), 1000);
        // The pong's bytes are still pending: a small buffer, not the 1000-byte frame's.
        assert!(r.buffered_capacity() < 64, "{}", r.buffered_capacity());
        assert!(matches!(r.next().await, Some(Ok(Message::Pong(_)))));
        assert_eq!(r.buffered_capacity(), 0, "released once parsed");
        assert!(r.next().await.is_none(), "end of stream");
    }

    #[tokio::test]
    async fn the_next_frame_s_start_does_not_keep_a_large_frame_s_buffer() {
        let mut input = frame(true, 2, &[1u8; 20_000]);
        input.extend(frame(true, 10, b"p"));
        let sink = Arc::new(Sink::default());
        let out = Arc::new(Outbox::new(Socket::other(sink), 8));
        // Read in pieces that end inside the pong, so its start is left over.
        let mut r = FrameReader::new(
            Trickle {
                data: input,
                step: 3000,
            },
            65_536,
            out,
        );
        assert_eq!(r.next().await.unwrap().unwrap().len(), 20_000);
        assert!(r.buffered_capacity() < 64, "{}", r.buffered_capacity());
        assert!(matches!(r.next().await, Some(Ok(Message::Pong(_)))));
    }

    #[tokio::test]
    async fn bad_frames_get_their_errors_and_end_the_stream() {
        let unmasked = {
            let mut f = frame(true, 1, b"x");
            f[1] &= 0x7f;
            f.truncate(2);
            f.push(b'x');
            f
        };
        let huge = {
            let mut f = vec![0x82, 0x80 | 127];
            f.extend_from_slice(&u64::MAX.to_be_bytes());
            f
        };
        let long_message = {
            let mut f = frame(false, 1, &[b'a'; 1000]);
            f.extend(frame(false, 0, &[b'a'; 1000]));
            f.extend(frame(true, 0, &[b'a'; 1000]));
            f
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("not UTF-8", frame(true, 1, b"\xff\xfe"), "UTF-8"),
            ("unmasked", unmasked, "unmasked"),
            (
                "reserved bits",
                {
                    let mut f = frame(true, 1, b"x");
                    f[0] |= 0x40;
                    f
                },
                "reserved",
            ),
            (
                "data opcode 3",
                frame(true, 3, b"x"),
                "Unknown data frame type",
            ),
            (
                "control opcode 11",
                frame(true, 11, b"x"),
                "Unknown control frame type",
            ),
            (
                "fragmented ping",
                frame(false, 9, b"x"),
                "Fragmented control frame",
            ),
            (
                "ping of 126",
                frame(true, 9, &[0; 126]),
                "Control frame too big",
            ),
            ("stray continuation", frame(true, 0, b"x"), "Continue frame"),
            (
                "text inside a message",
                {
                    let mut f = frame(false, 1, b"a");
                    f.extend(frame(true, 1, b"b"));
                    f
                },
                "fragment",
            ),
            (
                "frame over max_message",
                frame(true, 2, &[0; 1025]),
                "Space limit exceeded",
            ),
            ("2^64 length", huge, "Space limit exceeded"),
            (
                "fragments over max_message",
                long_message,
                "Space limit exceeded",
            ),
            ("1-byte close", frame(true, 8, &[3]), "close"),
            ("close code 1005", frame(true, 8, &[0x03, 0xed]), "close"),
            (
                "close reason not UTF-8",
                frame(true, 8, &[0x03, 0xe8, 0xff]),
                "UTF-8",
            ),
        ];
        for (name, mut input, want) in cases {
            input.extend(frame(true, 1, b"never read"));
            let got = all(reader(input, 4096).0).await;
            assert_eq!(got.len(), 1, "{name}: one error, then the end: {got:?}");
            let err = got[0].clone().unwrap_err();
            assert!(
                err.to_lowercase().contains(&want.to_lowercase()),
                "{name}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn the_peer_closing_ends_the_stream_mid_frame() {
        let mut input = frame(true, 1, b"whole");
        input.extend(&frame(true, 1, b"cut short")[..5]);
        assert_eq!(
            all(reader(input, 2).0).await,
            vec![Ok(Message::text("whole"))]
        );
    }
}
