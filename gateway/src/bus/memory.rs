//! The embedded bus: a publish goes straight into this process's merger queue.

use tokio::sync::mpsc;

use super::{BusError, Outgoing, PUBLISH_TIMEOUT};
use crate::merger::BusMessage;
use crate::wire::now_unix_ms;

/// Single-node bus; see the module docs.
#[derive(Clone)]
pub struct MemoryBus {
    merger: mpsc::Sender<BusMessage>,
}

impl MemoryBus {
    pub fn new(merger: mpsc::Sender<BusMessage>) -> Self {
        MemoryBus { merger }
    }

    pub async fn publish(&self, messages: Vec<Outgoing>) -> Result<usize, BusError> {
        let now = now_unix_ms();
        let n = messages.len();
        let send_all = async {
            for m in messages {
                let msg = BusMessage {
                    channel: m.channel,
                    data: m.data,
                    published_ms: now,
                };
                self.merger
                    .send(msg)
                    .await
                    .map_err(|_| BusError::Unavailable)?;
            }
            Ok(n)
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, send_all)
            .await
            .map_err(|_| BusError::Timeout(PUBLISH_TIMEOUT))?
    }
}
