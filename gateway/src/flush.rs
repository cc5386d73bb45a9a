//! The merger's real sink: encode a batch once per encoding in use, then fan it out.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::encode::batch_frame;
use crate::hub::{Channel, Encoding, Frames, Hub};
use crate::merger::{BatchSink, Trigger};
use crate::metrics::Metrics;

/// Encodes each flushed batch exactly once per encoding some connection uses, and hands
/// the refcounted frames to every hub shard.
pub struct HubSink {
    hub: Hub,
    metrics: Metrics,
}

impl HubSink {
    pub fn new(hub: Hub, metrics: Metrics) -> Self {
        HubSink { hub, metrics }
    }
}

impl BatchSink for HubSink {
    fn accepts(&self, channel: &str) -> bool {
        self.metrics.messages_in.inc();
        let wanted = self.hub.has_subscribers(channel);
        if !wanted {
            self.metrics
                .messages_dropped
                .get_or_create(&[("reason", "no_subscribers")])
                .inc();
        }
        wanted
    }

    async fn flush(&mut self, channel: Channel, messages: Vec<Bytes>, trigger: Trigger) {
        let started = Instant::now();
        let mut frames = Frames::default();
        for enc in Encoding::ALL {
            if !self.hub.encoding_in_use(enc) {
                continue;
            }
            let frame = Some(batch_frame(enc, &channel, &messages));
            match enc {
                Encoding::Json => frames.json = frame,
                Encoding::Msgpack => frames.msgpack = frame,
            }
            self.metrics
                .serializations
                .get_or_create(&[("encoding", enc.label())])
                .inc();
        }
        self.metrics
            .batches_flushed
            .get_or_create(&[("trigger", trigger.label())])
            .inc();
        self.hub.fanout(channel, Arc::new(frames)).await;
        self.metrics
            .flush_duration
            .observe(started.elapsed().as_secs_f64());
    }
}
