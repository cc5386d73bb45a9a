//! The bus carries published messages to every gateway. Two implementations:
//! [`memory`] (embedded, one node; the default) and, with `--redis-url`, Redis pub/sub.
//!
//! The gateway tells the bus which channels have local subscribers
//! ([`Bus::channels_active`] / [`Bus::channels_inactive`]), so a fleet bus subscribes
//! only to what this node needs. Incoming messages go to the merger's bounded queue.

pub mod memory;
pub mod redis;

use std::time::Duration;

use bytes::Bytes;

use crate::hub::Channel;

/// How long a publish may wait on the bus before the API answers 503.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// One message to publish on one channel (`*` for broadcast). `data` is valid JSON.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Channel,
    pub data: Bytes,
}

/// Why a publish failed; every variant maps to HTTP 503.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is not connected")]
    Unavailable,
    #[error("the bus did not accept the message within {0:?}")]
    Timeout(Duration),
}

/// The bus in use.
#[derive(Clone)]
pub enum Bus {
    Memory(memory::MemoryBus),
    Redis(redis::RedisBus),
}

impl Bus {
    /// Publishes every message; returns how many were accepted.
    pub async fn publish(&self, messages: Vec<Outgoing>) -> Result<usize, BusError> {
        match self {
            Bus::Memory(b) => b.publish(messages).await,
            Bus::Redis(b) => b.publish(messages).await,
        }
    }

    /// These channels just got their first local subscriber.
    pub fn channels_active(&self, channels: Vec<Channel>) {
        match self {
            // Every message already reaches the local merger.
            Bus::Memory(_) => drop(channels),
            Bus::Redis(b) => channels.into_iter().for_each(|c| b.channel_changed(c)),
        }
    }

    /// These channels just lost their last local subscriber.
    pub fn channels_inactive(&self, channels: Vec<Channel>) {
        match self {
            Bus::Memory(_) => drop(channels),
            Bus::Redis(b) => channels.into_iter().for_each(|c| b.channel_changed(c)),
        }
    }

    /// Whether the bus is connected (drives `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::Memory(_) => true,
            Bus::Redis(b) => b.is_ready(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Bus::Memory(_) => "memory",
            Bus::Redis(_) => "redis",
        }
    }
}
