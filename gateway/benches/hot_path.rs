//! Micro-benchmarks of the hot path (`make bench` runs them):
//! - merge + encode: one flushed batch of 100 messages into a JSON frame and a
//!   MessagePack frame (the work done once per batch, whatever the connection count);
//! - shard fan-out: handing one frame to 10,000 connections spread over the shards,
//!   with sockets that accept every write (so it measures the gateway's own cost per
//!   connection: lookup, refcount, queue check, `try_write` call).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gateway::encode::batch_frame;
use gateway::hub::{Encoding, Frames, Hub};
use gateway::metrics::Metrics;
use gateway::ws::io::{Outbox, RawWrite, Socket};

fn messages(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"ts_us":1700000000000000,"seq":{i},"pad":"{}"}}"#,
                "x".repeat(64)
            ))
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let msgs = messages(100);
    let mut g = c.benchmark_group("merge_encode");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("json_frame_100_messages", |b| {
        b.iter(|| batch_frame(Encoding::Json, "bench", &msgs))
    });
    g.bench_function("msgpack_frame_100_messages", |b| {
        b.iter(|| batch_frame(Encoding::Msgpack, "bench", &msgs))
    });
    g.finish();
}

/// A socket that takes everything and does nothing.
struct Sink;

impl RawWrite for Sink {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::hint::black_box(buf).len())
    }
    fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conns = 10_000;
    let hub = rt.block_on(async { Hub::new(8, Metrics::new()) });
    let channel: Arc<str> = Arc::from("bench");
    let mut handles = Vec::new();
    for _ in 0..conns {
        let h = hub.register(
            Encoding::Json,
            Arc::new(Outbox::new(Socket::other(Sink), 64)),
        );
        hub.subscribe(&h, std::slice::from_ref(&channel), 10)
            .expect("subscribe");
        handles.push(h);
    }
    let frame = batch_frame(Encoding::Json, "bench", &messages(100));
    let mut g = c.benchmark_group("shard_fanout");
    g.throughput(Throughput::Elements(conns as u64));
    g.sample_size(20);
    g.bench_function("one_frame_to_10k_connections", |b| {
        b.iter_batched(
            || {
                Arc::new(Frames {
                    json: Some(frame.clone()),
                    msgpack: None,
                })
            },
            |frames| {
                rt.block_on(async {
                    hub.fanout(channel.clone(), frames).await;
                    // Wait until every shard has delivered: fan-out is asynchronous.
                    hub.fanout_barrier().await;
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(handles);
}

criterion_group!(benches, encode, fanout);
criterion_main!(benches);
