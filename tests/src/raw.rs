//! A raw WebSocket client over a plain TCP socket, for sending what real clients never
//! send: unmasked frames, reserved opcodes, absurd lengths, endless fragments.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::within;

/// A socket after a successful (or attempted) upgrade.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read past the HTTP response head.
    buf: Vec<u8>,
    /// The HTTP status of the upgrade response.
    pub status: u16,
    /// The upgrade response's head (status line and headers).
    pub head: String,
}

/// Builds one client frame. `mask` should be true for a well-behaved client.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if mask {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    /// Sends an upgrade request for `path` with extra headers and reads the response head.
    pub async fn connect(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = within("upgrade response", async {
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        RawWs {
            stream,
            buf: buf[head_end..].to_vec(),
            status,
            head,
        }
    }

    /// Reads the rest of a non-101 response (its body) until the server closes.
    pub async fn body(&mut self) -> String {
        let mut rest = Vec::new();
        let _ = within("response body", self.stream.read_to_end(&mut rest)).await;
        let mut all = std::mem::take(&mut self.buf);
        all.extend_from_slice(&rest);
        String::from_utf8_lossy(&all).into_owned()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed; later reads tell what it said.
        let _ = self.stream.write_all(bytes).await;
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// Next server frame as (opcode, payload); `None` at end of stream.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within("a server frame", async {
            if !self.fill(2).await {
                return None;
            }
            let opcode = self.buf[0] & 0x0f;
            let (len, hdr) = match self.buf[1] & 0x7f {
                126 => {
                    if !self.fill(4).await {
                        return None;
                    }
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => {
                    if !self.fill(10).await {
                        return None;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n as usize, 2),
            };
            if !self.fill(hdr + len).await {
                return None;
            }
            let payload = self.buf[hdr..hdr + len].to_vec();
            self.buf.drain(..hdr + len);
            Some((opcode, payload))
        })
        .await
    }

    /// Reads until a close frame and returns its code (`None` if the stream just ended).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let (op, payload) = self.read_frame().await?;
            if op == 8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }

    /// Reads the next text frame as JSON (skipping pings).
    pub async fn json(&mut self) -> serde_json::Value {
        loop {
            let (op, payload) = self.read_frame().await.expect("stream ended");
            match op {
                1 => return serde_json::from_slice(&payload).unwrap(),
                9 | 10 => continue,
                other => panic!("unexpected opcode {other}"),
            }
        }
    }
}
