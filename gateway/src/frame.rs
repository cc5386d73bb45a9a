//! Server → client WebSocket frames, built once as bytes (RFC 6455 §5.2).
//!
//! Server frames are never masked, so one frame's bytes are the same for every connection:
//! a batch is framed once and every socket gets a refcounted `Bytes` of it, written as is.

use bytes::{BufMut, Bytes, BytesMut};

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Length of the header for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Writes a FIN frame header for `opcode` and a payload of `len` bytes.
pub fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | (opcode & 0x0f));
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// A complete frame around `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// An empty ping.
pub fn ping() -> Bytes {
    Bytes::from_static(&[0x80 | OP_PING, 0])
}

/// The answer to a client's ping: a pong with the same payload (at most 125 bytes, as
/// every control frame).
pub fn pong(payload: &[u8]) -> Bytes {
    frame(OP_PONG, payload)
}

/// A close frame with a status code and a short reason (cut to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut r = reason.as_bytes();
    if r.len() > 123 {
        r = &r[..123];
    }
    let mut payload = Vec::with_capacity(2 + r.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(r);
    frame(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(&frame(OP_TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = frame(OP_BINARY, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = frame(OP_TEXT, &vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(
            &close(1001, "bye")[..],
            &[0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']
        );
        assert_eq!(close(1000, &"x".repeat(500)).len(), 2 + 125);
    }
}
