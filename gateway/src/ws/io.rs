//! A connection's write side, shared by the hub's fan-out and the connection's session.
//! The outbox owns the connection's socket; the session reads it through [`TcpRead`].
//!
//! [`Outbox::send`] writes a prebuilt frame straight to the socket (`try_write`, no task
//! hop) when nothing is queued; whatever the socket does not take at once is queued, and
//! the session finishes it when the socket is writable. Every write happens under one
//! short lock, so frames never interleave, and a frame started is always finished before
//! the next one (or the close frame) goes out.
//!
//! The queue is bounded (`--queue-frames`). Overflow policy: **disconnect** — `send`
//! reports [`Full`] and the caller closes the connection with 1013.
//!
//! The frame reader ([`super::reader`]) parses what is read (through [`ReadSide`]) and
//! sends its pong replies to client pings into the same outbox.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A socket that can be written without awaiting (`try_write`) and polled for writability.
pub trait RawWrite: Send + Sync + 'static {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The fan-out's first attempt at a frame, made only while nothing is queued: the
    /// write itself, without first consulting the runtime's readiness for the socket
    /// (one cache line less per connection and frame). A `WouldBlock` here leaves the
    /// runtime's readiness as it was, which is safe: the session's next [`try_write`]
    /// then meets the `WouldBlock` itself and waits for the socket properly.
    ///
    /// [`try_write`]: RawWrite::try_write
    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
}

impl RawWrite for TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        // tokio's socket is non-blocking; MSG_NOSIGNAL: a closed peer is an error, not
        // a signal.
        socket2::SockRef::from(self).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }
}

/// The socket of an [`Outbox`]. A connection's TCP stream is kept inline, descriptor
/// included, so the fan-out reaches it without following a pointer or a virtual call
/// first (two dependent cache misses less per connection and frame than a boxed write
/// half); its reads go through [`TcpRead`]. Any other [`RawWrite`] (the tests' in-memory
/// sockets) is boxed.
pub enum Socket {
    Tcp(TcpStream),
    Other(Box<dyn RawWrite>),
}

impl Socket {
    pub fn other(io: impl RawWrite) -> Socket {
        Socket::Other(Box::new(io))
    }

    #[inline]
    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(w) => w.write_now(buf),
            Socket::Other(w) => w.write_now(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(w) => w.try_write(buf),
            Socket::Other(w) => w.try_write(buf),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(w) => w.poll_write_ready(cx),
            Socket::Other(w) => w.poll_write_ready(cx),
        }
    }
}

/// The outbound queue is full: the client is not reading.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// How [`Outbox::send`] disposed of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Written to the socket completely, at once.
    Written,
    /// Queued (whole or its unwritten rest) for the session to finish.
    Queued,
    /// Dropped: the socket has failed, or the connection's close frame is queued (nothing
    /// may follow it: RFC 6455 §5.5.1).
    Dropped,
}

#[derive(Default)]
struct State {
    /// Frames (or the unwritten rest of one) waiting for the socket.
    queue: VecDeque<Bytes>,
    /// Whether the front of `queue` is a frame already partly written.
    front_started: bool,
    /// The socket failed; everything is dropped from now on.
    broken: bool,
    /// The close frame is queued ([`Outbox::finish_with`]): what comes later is dropped.
    closed: bool,
}

/// See the module docs. The fields the fan-out touches for every frame (the lock, the
/// queue's length, the socket) come first and next to each other.
#[repr(C)]
pub struct Outbox {
    state: Mutex<State>,
    io: Socket,
    max_frames: usize,
    /// Wakes the connection's session when something was queued.
    pub queued: Notify,
}

/// What one attempt to write the queue achieved.
pub enum Drain {
    /// Everything is written.
    Done,
    /// The socket is full; wait until it is writable.
    Blocked,
    /// The socket failed.
    Broken,
}

impl Outbox {
    pub fn new(io: Socket, max_frames: usize) -> Outbox {
        Outbox {
            io,
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            max_frames: max_frames.max(1),
        }
    }

    /// Asks the CPU to fetch what [`Outbox::send`] touches first (the lock with the queue,
    /// and the socket's descriptor: one or two cache lines, as the allocation falls) while
    /// the caller is still busy elsewhere. The fan-out calls it for the next connection
    /// before writing to the current one: each write's system call leaves the cache cold,
    /// and the lock would otherwise miss in every `send` (round 19's profile: ~96 % of
    /// `send`'s own time, ~0.3 µs a frame).
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            prefetch_for_write(&self.state);
            prefetch_for_write(&self.io);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `frame` now if the socket takes it, else queues it. `Err(Full)` when the
    /// queue already holds `max_frames`.
    pub fn send(&self, frame: &Bytes) -> Result<Sent, Full> {
        let mut st = self.lock();
        if st.broken || st.closed {
            return Ok(Sent::Dropped);
        }
        if !st.queue.is_empty() {
            if st.queue.len() >= self.max_frames {
                return Err(Full);
            }
            st.queue.push_back(frame.clone());
            return Ok(Sent::Queued);
        }
        // Written from a borrowed frame: the shared bytes are only refcounted again if
        // part of them must wait in the queue (the fan-out's common case costs nothing).
        let mut off = 0;
        while off < frame.len() {
            match self.io.write_now(&frame[off..]) {
                Ok(0) => {
                    st.broken = true;
                    return Ok(Sent::Dropped);
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    st.broken = true;
                    return Ok(Sent::Dropped);
                }
            }
        }
        if off == frame.len() {
            return Ok(Sent::Written);
        }
        st.front_started = off > 0;
        st.queue.push_back(frame.slice(off..));
        drop(st);
        self.queued.notify_one();
        Ok(Sent::Queued)
    }

    /// Whether the queue holds `max_frames` (the session stops reading the client then).
    pub fn is_full(&self) -> bool {
        self.lock().queue.len() >= self.max_frames
    }

    /// Like [`Outbox::send`] but never refused: for replies to client commands. Still
    /// bounded: the session stops reading commands while the queue is full, so replies
    /// exceed `max_frames` by at most one.
    pub fn send_reply(&self, frame: Bytes) {
        let mut st = self.lock();
        if st.broken || st.closed {
            return;
        }
        if st.queue.is_empty() {
            drop(st);
            // An empty queue cannot be full.
            let _ = self.send(&frame);
            return;
        }
        st.queue.push_back(frame);
    }

    /// Writes as much of the queue as the socket takes.
    pub fn drain(&self) -> Drain {
        let mut st = self.lock();
        if st.broken {
            return Drain::Broken;
        }
        loop {
            let Some(front) = st.queue.front_mut() else {
                return Drain::Done;
            };
            match self.io.try_write(front) {
                Ok(0) => {
                    st.broken = true;
                    return Drain::Broken;
                }
                Ok(n) => {
                    front.advance(n);
                    if front.is_empty() {
                        st.queue.pop_front();
                        st.front_started = false;
                    } else {
                        st.front_started = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
                Err(_) => {
                    st.broken = true;
                    return Drain::Broken;
                }
            }
        }
    }

    /// Drops queued frames that have not started, keeping a partly written one, then
    /// queues `last` (the close frame), after which nothing more is sent (RFC 6455
    /// §5.5.1): the frame reader's pong replies while the session waits for the client's
    /// close are dropped, as is anything else offered, not written after the close frame.
    /// Used when closing; the session has taken the connection out of the hub's fan-out
    /// just before (`Hub::retire`), so batches are no longer offered at all.
    pub fn finish_with(&self, last: Bytes) {
        let mut st = self.lock();
        let keep = if st.front_started { 1 } else { 0 };
        st.queue.truncate(keep);
        st.queue.push_back(last);
        st.closed = true;
    }

    /// An outbox writing to `stream`, and the reader of the same stream.
    pub fn tcp(stream: TcpStream, max_frames: usize) -> (Arc<Outbox>, TcpRead) {
        let out = Arc::new(Outbox::new(Socket::Tcp(stream), max_frames));
        (out.clone(), TcpRead(out))
    }

    /// Completes when the socket may take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.io.poll_write_ready(cx)).await
    }
}

/// A hint, never a fault: a prefetch with write intent of a valid reference's address
/// (`prefetchw` where the build targets it; `prefetcht0` on the default x86-64 target).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline]
fn prefetch_for_write<T>(at: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
    // SAFETY: a prefetch reads nothing into the program and cannot fault; the address is
    // that of a live reference.
    unsafe { _mm_prefetch::<_MM_HINT_ET0>((at as *const T).cast()) }
}

/// The read side of a TCP stream kept in an [`Outbox`] (see [`Outbox::tcp`]).
pub struct TcpRead(Arc<Outbox>);

impl AsyncRead for TcpRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Socket::Tcp(stream) = &self.0.io else {
            // `Outbox::tcp` is the only way to make a `TcpRead`.
            return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
        };
        loop {
            std::task::ready!(stream.poll_read_ready(cx))?;
            // A `WouldBlock` clears the readiness, so the next poll waits for the socket.
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The read half as the frame reader sees it: the bytes hyper had already read past the
/// upgrade request first, then the socket.
pub struct ReadSide<R> {
    inner: R,
    prefix: Bytes,
}

impl<R> ReadSide<R> {
    pub fn new(inner: R, prefix: Bytes) -> Self {
        ReadSide { inner, prefix }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A socket that takes `budget` bytes, then blocks.
    struct Budget {
        budget: AtomicUsize,
        written: Mutex<Vec<u8>>,
    }

    impl RawWrite for Arc<Budget> {
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            let left = self.budget.load(Ordering::SeqCst);
            if left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = left.min(buf.len());
            self.budget.fetch_sub(n, Ordering::SeqCst);
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn outbox(budget: usize, max: usize) -> (Outbox, Arc<Budget>) {
        let b = Arc::new(Budget {
            budget: AtomicUsize::new(budget),
            written: Mutex::new(Vec::new()),
        });
        (Outbox::new(Socket::other(b.clone()), max), b)
    }

    #[test]
    fn writes_directly_then_queues_then_finishes_frames_in_order() {
        let (o, b) = outbox(5, 2);
        assert_eq!(o.send(&Bytes::from_static(b"abc")), Ok(Sent::Written));
        assert_eq!(o.send(&Bytes::from_static(b"defg")), Ok(Sent::Queued)); // 2 bytes go
        assert_eq!(o.send(&Bytes::from_static(b"hi")), Ok(Sent::Queued)); // behind it
        assert_eq!(
            o.send(&Bytes::from_static(b"x")),
            Err(Full),
            "queue of 2 is full"
        );
        assert_eq!(&b.written.lock().unwrap()[..], b"abcde");
        b.budget.store(100, Ordering::SeqCst);
        assert!(matches!(o.drain(), Drain::Done));
        assert_eq!(&b.written.lock().unwrap()[..], b"abcdefghi");
    }

    #[test]
    fn replies_are_never_refused_and_full_is_reported() {
        let (o, b) = outbox(1, 2);
        o.send(&Bytes::from_static(b"ab")).unwrap(); // "a" written, "b" queued
        o.send(&Bytes::from_static(b"cd")).unwrap(); // queued: 2 frames, full
        assert!(o.is_full());
        assert_eq!(o.send(&Bytes::from_static(b"x")), Err(Full));
        o.send_reply(Bytes::from_static(b"R")); // a reply still goes in, behind the rest
        b.budget.store(100, Ordering::SeqCst);
        assert!(matches!(o.drain(), Drain::Done));
        assert!(!o.is_full());
        assert_eq!(&b.written.lock().unwrap()[..], b"abcdR");
    }

    #[test]
    fn closing_keeps_only_a_started_frame() {
        let (o, b) = outbox(2, 8);
        o.send(&Bytes::from_static(b"1234")).unwrap(); // "12" written, "34" queued, started
        o.send(&Bytes::from_static(b"5678")).unwrap(); // queued, not started
        o.finish_with(Bytes::from_static(b"C"));
        // Nothing follows the close frame: a later batch or reply is dropped.
        assert_eq!(o.send(&Bytes::from_static(b"late")), Ok(Sent::Dropped));
        o.send_reply(Bytes::from_static(b"R"));
        b.budget.store(100, Ordering::SeqCst);
        assert!(matches!(o.drain(), Drain::Done));
        assert_eq!(&b.written.lock().unwrap()[..], b"1234C");
        // Nor once the close frame is out and the queue empty.
        assert_eq!(o.send(&Bytes::from_static(b"later")), Ok(Sent::Dropped));
        assert!(matches!(o.drain(), Drain::Done));
        assert_eq!(&b.written.lock().unwrap()[..], b"1234C");
    }

    /// The outbox's own TCP stream: the session's reads (through `TcpRead`) wait for the
    /// peer and see its bytes and its end, while the outbox writes to the same socket.
    #[tokio::test]
    async fn tcp_read_and_outbox_share_one_stream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::time::timeout;
        const T: std::time::Duration = std::time::Duration::from_secs(10);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (out, mut read) = Outbox::tcp(server, 4);

        // A read started before anything arrives is woken by the peer's bytes.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = read.read(&mut buf).await.unwrap();
            (read, buf[..n].to_vec())
        });
        tokio::task::yield_now().await;
        peer.write_all(b"ping").await.unwrap();
        let (mut read, got) = timeout(T, reader).await.expect("read woken").unwrap();
        assert_eq!(got, b"ping");

        assert_eq!(out.send(&Bytes::from_static(b"frame")), Ok(Sent::Written));
        let mut buf = [0u8; 5];
        timeout(T, peer.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"frame");

        peer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let n = timeout(T, read.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the peer's end is an end of stream");
    }
}
