//! A real WebSocket client (tokio-tungstenite) with test-friendly helpers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::within;

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected client.
pub struct Client {
    pub ws: Stream,
}

/// What the server sent, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame parsed as JSON, or a binary frame decoded from MessagePack.
    Json(serde_json::Value),
    /// A close frame's code.
    Close(u16),
    /// The stream ended without a close frame.
    End,
}

impl Client {
    /// Connects to `url`, offering `protocol` if given. Panics on failure.
    pub async fn connect(url: &str, protocol: Option<&str>) -> Client {
        Self::try_connect(url, protocol)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connects, returning the handshake error (e.g. an HTTP 503 response).
    pub async fn try_connect(
        url: &str,
        protocol: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if let Some(p) = protocol {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        let (ws, _resp) =
            within("websocket connect", tokio_tungstenite::connect_async(req)).await?;
        Ok(Client { ws })
    }

    pub async fn send_json(&mut self, v: serde_json::Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_owned())).await.unwrap();
    }

    pub async fn send_msgpack(&mut self, v: serde_json::Value) {
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// Next raw message, skipping pings and pongs.
    pub async fn ws_next_raw(&mut self) -> Message {
        within("a raw frame", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => return m,
                    other => panic!("stream ended: {other:?}"),
                }
            }
        })
        .await
    }

    /// Next data or close frame (pings and pongs are skipped), bounded by the test wait.
    pub async fn next(&mut self) -> Frame {
        within("a frame from the gateway", self.next_inner()).await
    }

    /// Like [`Client::next`] with a custom bound; `None` when nothing came in time.
    pub async fn next_within(&mut self, d: Duration) -> Option<Frame> {
        tokio::time::timeout(d, self.next_inner()).await.ok()
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            match self.ws.next().await {
                None | Some(Err(_)) => return Frame::End,
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(&t).unwrap())
                }
                Some(Ok(Message::Binary(b))) => {
                    return Frame::Json(rmp_serde::from_slice(&b).unwrap())
                }
                Some(Ok(Message::Close(f))) => {
                    return Frame::Close(f.map_or(1005, |f| f.code.into()))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Next frame, which must be JSON (or MessagePack).
    pub async fn json(&mut self) -> serde_json::Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a data frame, got {other:?}"),
        }
    }

    /// Reads until a close frame (skipping data) and returns its code; then keeps reading
    /// until the stream ends, as a real client does, so the close reply goes out.
    pub async fn close_code(&mut self) -> Option<u16> {
        within("a close frame", async {
            let code = loop {
                match self.next_inner().await {
                    Frame::Close(c) => break Some(c),
                    Frame::End => return None,
                    Frame::Json(_) => continue,
                }
            };
            while self.ws.next().await.is_some() {}
            code
        })
        .await
    }

    /// Sends a ping command and waits for its pong; proves the connection works and that
    /// everything queued before the pong has been read.
    pub async fn roundtrip(&mut self, id: u64) -> Vec<serde_json::Value> {
        self.send_json(serde_json::json!({"op": "ping", "id": id}))
            .await;
        let mut before = Vec::new();
        loop {
            let v = self.json().await;
            if v["op"] == "pong" && v["id"] == id {
                return before;
            }
            before.push(v);
        }
    }
}
