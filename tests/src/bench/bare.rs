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
pub fn run(sockets: usize, frame_bytes: usize, rounds: u32, gap: Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    let mut socks = Vec::with_capacity(sockets);
    while socks.len() < sockets {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                socks.push(s);
            }
            Err(e) => {
                eprintln!("bare: accept failed: {e}");
                break;
            }
        }
    }
    // A WebSocket text frame header (unmasked, 64-bit length) and a payload.
    let mut frame = vec![0x81, 127];
    frame.extend_from_slice(&(frame_bytes as u64).to_be_bytes());
    frame.extend(std::iter::repeat_n(b'x', frame_bytes));
    let started_cpu = self_cpu_s();
    let mut writes = 0u64;
    for _ in 0..rounds {
        let round = Instant::now();
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
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
}
