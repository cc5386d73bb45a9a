//! `bench stalls`: when did a core stop running this machine's work? One thread per CPU,
//! pinned to it, under `SCHED_FIFO` so that nothing in the guest keeps it from running
//! when its sleep ends, sleeps 1 ms at a time and reports every wake-up that came more
//! than `threshold` late. A late wake-up of a real-time thread means the core ran no
//! task of the guest in that time: the hypervisor had taken the virtual CPU away, or the
//! kernel ran with preemption off that long. Diagnostic only (it preempts everything it
//! shares a core with, 1,000 times a second per core); no scenario runs it.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::worker::now_us;

const TICK: Duration = Duration::from_millis(1);

/// One late wake-up.
#[derive(Debug, Serialize)]
pub struct Stall {
    pub cpu: usize,
    /// Wall clock at the late wake-up, µs since the epoch (as the bench's publish times).
    pub woke_at_us: u64,
    /// How much later than asked the thread woke, µs.
    pub late_us: u64,
}

/// Each CPU's wake-ups, its stalls, and the longest of them.
#[derive(Debug, Default, Serialize)]
pub struct CpuSummary {
    pub cpu: usize,
    pub wakeups: u64,
    pub stalls: u64,
    pub stalled_ms: f64,
    pub max_late_us: u64,
}

/// How late a wake-up came, µs, when over `threshold`: a sleep of `asked` took `slept`.
fn late(asked: Duration, slept: Duration, threshold: Duration) -> Option<u64> {
    let over = slept.saturating_sub(asked);
    (over > threshold).then_some(over.as_micros() as u64)
}

/// Runs one pinned real-time thread per CPU this process may run on for `seconds`; prints each stall as a JSON
/// line, then one summary line per CPU. Fails if the thread cannot be pinned or made
/// real-time (it needs `CAP_SYS_NICE`): without that it would measure the scheduler, not
/// the core.
pub fn run(seconds: u64, threshold: Duration) -> Result<(), String> {
    let cpus = gateway::affinity::allowed_cpus().map_err(|e| format!("CPU affinity: {e}"))?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = cpus
        .into_iter()
        .map(|cpu| std::thread::spawn(move || watch(cpu, end, threshold)))
        .collect();
    for t in threads {
        let summary = t
            .join()
            .map_err(|_| "stall thread panicked".to_string())??;
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    }
    Ok(())
}

fn watch(cpu: usize, end: Instant, threshold: Duration) -> Result<CpuSummary, String> {
    pin_realtime(cpu)?;
    let mut s = CpuSummary {
        cpu,
        ..CpuSummary::default()
    };
    while Instant::now() < end {
        let t0 = Instant::now();
        std::thread::sleep(TICK);
        s.wakeups += 1;
        if let Some(late_us) = late(TICK, t0.elapsed(), threshold) {
            let stall = Stall {
                cpu,
                woke_at_us: now_us(),
                late_us,
            };
            println!("{}", serde_json::to_string(&stall).unwrap_or_default());
            s.stalls += 1;
            s.stalled_ms += late_us as f64 / 1000.0;
            s.max_late_us = s.max_late_us.max(late_us);
        }
    }
    Ok(s)
}

#[allow(unsafe_code)]
fn pin_realtime(cpu: usize) -> Result<(), String> {
    gateway::affinity::set_affinity(&[cpu]).map_err(|e| format!("pin to cpu {cpu}: {e}"))?;
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler reads `param` and changes only this thread's policy.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        return Err(format!("SCHED_FIFO: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wake_up_later_than_the_threshold_is_a_stall() {
        let ms = Duration::from_millis;
        assert_eq!(late(ms(1), ms(1), ms(2)), None);
        assert_eq!(
            late(ms(1), ms(3), ms(2)),
            None,
            "2 ms late is not over 2 ms"
        );
        assert_eq!(late(ms(1), ms(5), ms(2)), Some(4_000));
        assert_eq!(
            late(ms(1), Duration::ZERO, ms(2)),
            None,
            "early never counts"
        );
    }
}
