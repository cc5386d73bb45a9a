//! The baseline: the cost of a bare socket write of the same frame to the same number of
//! sockets, measured in the same run. One thread, blocking sockets, `write_all` of a
//! prebuilt frame to each socket in turn: a floor no gateway can beat.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the baseline measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BareReport {
    pub sockets: usize,
    pub frame_bytes: usize,
    pub writes: u64,
    pub cpu_s: f64,
    pub cpu_us_per_write: f64,
    /// Per write, as the readers saw it: receive time − round start (WebSocket readers
    /// only; filled in by the orchestrator).
    #[serde(default)]
    pub latency_p50_ms: f64,
    #[serde(default)]
    pub latency_p99_ms: f64,
    /// Per round, in order: p50, p99 and max (ms), as the gateway's batches are reported.
    #[serde(default)]
    pub per_round_ms: Vec<[f64; 3]>,
    /// The same to the frames' arrival on the readers' sockets (see
    /// `Outcome::arrival_ms`).
    #[serde(default)]
    pub arrival_p99_ms: f64,
    #[serde(default)]
    pub per_round_arrival_ms: Vec<[f64; 3]>,
}

/// Reads one HTTP upgrade request and answers 101 (blocking, 5 s at most).
fn upgrade(s: &mut std::net::TcpStream) -> std::io::Result<()> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || req.len() > 8192 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    s.set_read_timeout(None)
}

/// A deep accept queue (std listens with a short one), and `accept` that gives up after
/// 10 s without a new connection (`SO_RCVTIMEO` applies to `accept` on Linux).
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let fd = listener.as_raw_fd();
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };
    // SAFETY: `fd` is a listening socket owned by `listener` for the whole call; listen
    // on a listening socket only changes its backlog; setsockopt reads `timeout` by size.
    #[allow(unsafe_code)]
    unsafe {
        libc::listen(fd, 4096);
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// This process's CPU time (user + system), seconds.
pub fn self_cpu_s() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    #[allow(unsafe_code)]
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Listens, prints `listening <addr>`, accepts `sockets` connections, then writes a
/// `frame_bytes` frame to every socket `rounds` times, `gap` apart, and prints the report.
/// With `websocket`, every accepted socket first answers a WebSocket upgrade, so the
/// readers can be the same WebSocket clients the gateway is measured with.
pub fn run(sockets: usize, frame_bytes: usize, rounds: u32, gap: Duration, websocket: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    widen_backlog(&listener);
    println!("listening {}", listener.local_addr().expect("addr"));
    let mut socks = Vec::with_capacity(sockets);
    while socks.len() < sockets {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nodelay(true);
                if websocket {
                    if let Err(e) = upgrade(&mut s) {
                        eprintln!("bare: upgrade failed: {e}");
                        continue;
                    }
                }
                socks.push(s);
            }
            Err(e) => {
                // A connection lost to a full accept queue never arrives (the raw
                // readers send nothing that would complete it): go on with the rest.
                eprintln!("bare: accept stopped at {} of {sockets}: {e}", socks.len());
                break;
            }
        }
    }
    // A WebSocket text frame header (unmasked, 64-bit length) and a payload that starts
    // with the round's start time, so the same readers time the baseline as they time
    // the gateway: `{"ts_us":<16 digits>,"seq":0,"pad":"xxx…"}`.
    let mut frame = vec![0x81, 127];
    frame.extend_from_slice(&(frame_bytes as u64).to_be_bytes());
    let head = frame.len();
    let mut payload = format!(
        r#"{{"ts_us":{:016},"seq":0,"pad":""#,
        super::worker::now_us()
    )
    .into_bytes();
    let ts_at = head + r#"{"ts_us":"#.len();
    payload.resize(frame_bytes.saturating_sub(2).max(payload.len()), b'x');
    payload.extend_from_slice(b"\"}");
    frame.extend_from_slice(&payload);
    let len = (frame.len() - head) as u64;
    frame[2..10].copy_from_slice(&len.to_be_bytes());
    let started_cpu = self_cpu_s();
    let mut writes = 0u64;
    for _ in 0..rounds {
        let round = Instant::now();
        let ts = format!("{:016}", super::worker::now_us());
        frame[ts_at..ts_at + 16].copy_from_slice(&ts.as_bytes()[..16]);
        for s in socks.iter_mut() {
            if s.write_all(&frame).is_ok() {
                writes += 1;
            }
        }
        if let Some(rest) = gap.checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let cpu_s = self_cpu_s() - started_cpu;
    let report = BareReport {
        sockets: socks.len(),
        frame_bytes: frame.len(),
        writes,
        cpu_s,
        cpu_us_per_write: if writes > 0 {
            cpu_s * 1e6 / writes as f64
        } else {
            0.0
        },
        ..BareReport::default()
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
}
