//! What the bench reads from the host and from the processes it measures: the cores, what
//! a system call costs, and a process's CPU time and RSS from `/proc`.

use std::time::Instant;

/// The machine's cores (1 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What one trivial system call (`getppid`) costs on this host, in ns: the median of 5
/// rounds of 200,000. Kernel entry and exit are set by the host's CPU and its speculation
/// mitigations, and every socket write and read pays them. Hosts of the same kind differ
/// (round 9's ran round 8's code about half as fast: docs/PERFORMANCE-HISTORY.md), so each run
/// records this beside the machine, the first figure to compare between two hosts.
pub fn syscall_ns() -> f64 {
    const CALLS: u32 = 200_000;
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..CALLS {
                // SAFETY: getppid takes no arguments, cannot fail and touches no memory.
                #[allow(unsafe_code)]
                let ppid = unsafe { libc::syscall(libc::SYS_getppid) };
                std::hint::black_box(ppid);
            }
            t.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

/// Kernel clock ticks per second, for /proc/<pid>/stat.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU time of a process, seconds: the sum of its threads' `se.sum_exec_runtime`
/// (`/proc/<pid>/task/*/sched`, nanoseconds), which resolves the small totals of the
/// comparison scenarios; `utime + stime` (`/proc/<pid>/stat`, 10 ms ticks) if that is
/// unreadable. Every process measured keeps its threads for the whole run, so no time is
/// lost with an exited thread.
pub fn proc_cpu_s(pid: i32) -> f64 {
    let precise = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("sched")).ok())
                .filter_map(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("se.sum_exec_runtime"))
                        .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse::<f64>().ok())
                })
                .sum::<f64>()
                / 1e3
        });
    match precise {
        Some(s) if s > 0.0 => s,
        _ => proc_ticks_s(pid),
    }
}

/// utime + stime of a process, seconds (10 ms resolution).
fn proc_ticks_s(pid: i32) -> f64 {
    let (user, sys) = proc_user_sys_s(pid);
    user + sys
}

/// Kernel-mode CPU time of a process, seconds: its `stime`. The kernel reports utime and
/// stime scaled so that they add up to the process's precise runtime, split in the
/// proportion its clock ticks fell in user and kernel mode. For a process busy through
/// the window, as the gateway is during a fan-out, that comes near the share of its CPU
/// that went to system calls and the softirqs they ran (for a loopback write, the
/// receiving socket's TCP path too), short of `perf`'s user share by a few points; a
/// process that sleeps and wakes many times a second gets a more skewed split
/// (`bench/cpu_split.sh` prints both; docs/PERFORMANCE-HISTORY.md, round 11).
pub fn proc_sys_s(pid: i32) -> f64 {
    proc_user_sys_s(pid).1
}

/// (utime, stime) of a process, seconds (`/proc/<pid>/stat`; zeros if unreadable).
fn proc_user_sys_s(pid: i32) -> (f64, f64) {
    user_sys_s(&format!("/proc/{pid}/stat"))
}

/// (utime, stime), seconds, from a `stat` file of /proc (a process's or a thread's).
fn user_sys_s(stat_path: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest starts at field 3 (state); utime is field 14, stime 15.
    (ticks(11) / ticks_per_s(), ticks(12) / ticks_per_s())
}

/// CPU time the hypervisor kept from this machine, seconds: the `steal` column of the
/// `cpu` line of /proc/stat, all CPUs together (time a virtual CPU had work and the host
/// ran something else), at the kernel's tick resolution (10 ms). 0 where unreadable.
pub fn steal_s() -> f64 {
    steal_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default()) / ticks_per_s()
}

/// The `steal` column (the 8th number) of the `cpu` line of a /proc/stat text, ticks.
fn steal_ticks(stat: &str) -> f64 {
    stat.lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .and_then(|rest| rest.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `VmRSS` of a process, KiB (`None` if the process is gone or the line unreadable).
pub fn proc_rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The host a run was measured on: what it is, and what its kernel entry costs (measured
/// after the scenarios, on a quiet machine).
pub struct Host {
    pub machine: String,
    pub kernel: String,
    pub syscall_ns: f64,
}

impl Host {
    pub fn measure() -> Self {
        Host {
            machine: machine(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_owned())
                .unwrap_or_default(),
            syscall_ns: syscall_ns(),
        }
    }
}

/// The GNU build ID of the ELF file at `path`, in hex: which build of the gateway a run
/// measured (two builds of one source differ, e.g. `cargo bench`'s, whose dev-dependency
/// features reach the binary). `None` when the file cannot be read or carries no such note.
pub fn build_id(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    // The note sits with the headers, before any code: the first 64 KiB hold it.
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    build_id_in(&head)
}

/// The first `NT_GNU_BUILD_ID` note in `bytes` (little-endian ELF): name size 4, a
/// descriptor of 8 to 64 bytes, type 3, name "GNU\0", then the ID.
fn build_id_in(bytes: &[u8]) -> Option<String> {
    let word = |at: &[u8]| u32::from_le_bytes([at[0], at[1], at[2], at[3]]) as usize;
    bytes.windows(16).enumerate().find_map(|(i, w)| {
        let len = word(&w[4..8]);
        let fits = (8..=64).contains(&len) && i + 16 + len <= bytes.len();
        (word(&w[0..4]) == 4 && word(&w[8..12]) == 3 && &w[12..16] == b"GNU\0" && fits).then(|| {
            bytes[i + 16..i + 16 + len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    })
}

fn machine() -> String {
    let cpus = cores();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!("{cpus} cores ({model}), {} GiB", mem / 1024 / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_build_id_note_is_found_and_its_absence_is_none() {
        let id: Vec<u8> = (1..=20).collect();
        let mut elf = vec![0x7f, b'E', b'L', b'F'];
        elf.extend(std::iter::repeat_n(0xaa, 100));
        for w in [4u32, 20, 3] {
            elf.extend(w.to_le_bytes());
        }
        elf.extend(b"GNU\0");
        elf.extend(&id);
        elf.extend([0; 8]);
        assert_eq!(
            build_id_in(&elf).as_deref(),
            Some("0102030405060708090a0b0c0d0e0f1011121314")
        );
        // A note of another type, or one cut short, is no build ID.
        let mut other = elf.clone();
        other[112] = 1;
        assert_eq!(build_id_in(&other), None);
        assert_eq!(build_id_in(&elf[..130]), None);
        assert_eq!(build_id(std::path::Path::new("/nonexistent/gateway")), None);
        // This test's own binary, linked like every binary of the workspace, has one.
        let own = build_id(&std::env::current_exe().expect("own exe"));
        assert!(own.as_ref().is_some_and(|h| h.len() >= 16), "{own:?}");
    }

    #[test]
    fn steal_is_the_eighth_number_of_the_all_cpus_line() {
        let stat = "cpu  191525 280 73373 585007 10429 0 24487 1113 0 0\n\
                    cpu0 94056 60 35501 297216 3004 0 12017 552 0 0\n\
                    cpu1 97468 220 37871 287790 7424 0 12470 561 0 0\n";
        assert_eq!(steal_ticks(stat), 1113.0);
        // Before the kernel had the column, or an unreadable file: none.
        assert_eq!(steal_ticks("cpu  1 2 3 4 5 6 7\n"), 0.0);
        assert_eq!(steal_ticks(""), 0.0);
        assert!(steal_s() >= 0.0);
    }

    #[test]
    fn a_system_call_costs_between_a_nanosecond_and_a_tenth_of_a_millisecond() {
        let ns = syscall_ns();
        assert!(ns.is_finite() && (1.0..100_000.0).contains(&ns), "{ns} ns");
    }

    #[test]
    fn rss_is_read_for_a_live_process_and_none_for_a_gone_one() {
        let own = proc_rss_kib(std::process::id() as i32);
        assert!(own.is_some_and(|kib| kib > 0), "{own:?}");
        assert_eq!(proc_rss_kib(i32::MAX), None, "no such pid");
    }

    #[test]
    fn kernel_time_counts_system_calls_not_user_work() {
        // This thread's own times, whatever other tests in the process do meanwhile.
        let own = || user_sys_s("/proc/thread-self/stat");
        let deadline = Instant::now() + Duration::from_secs(30);
        // User-mode work only: the kernel share barely moves.
        let (user0, sys0) = own();
        let mut x = 0u64;
        while own().0 - user0 < 0.3 && Instant::now() < deadline {
            // ~1 ms of user work per look at the clock, so the look's own system calls
            // stay a small share.
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        assert_ne!(x, 1);
        let (user1, sys1) = own();
        assert!(user1 - user0 >= 0.3, "no user CPU burnt in 30 s");
        // Kernel work only: each read of /dev/zero clears 1 MiB in the kernel, so the
        // system call's entry and exit, which the ticks may count on the user side, are a
        // small share. (With 4 KiB reads the check below failed once in CI on a Xeon host:
        // "reads counted as user work: 0.3 s user for 0.3 s kernel".)
        let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
        let mut chunk = vec![0u8; 1 << 20];
        while own().1 - sys1 < 0.3 && Instant::now() < deadline {
            for _ in 0..10 {
                std::io::Read::read_exact(&mut &zero, &mut chunk).expect("read /dev/zero");
            }
        }
        let (user2, sys2) = own();
        assert!(sys2 - sys1 >= 0.3, "no kernel CPU in 30 s of reads");
        assert!(
            sys1 - sys0 < (user1 - user0) / 2.0,
            "user work counted as kernel: {} s kernel for {} s user",
            sys1 - sys0,
            user1 - user0
        );
        assert!(
            user2 - user1 < sys2 - sys1,
            "reads counted as user work: {} s user for {} s kernel",
            user2 - user1,
            sys2 - sys1
        );
    }

    #[test]
    fn precise_and_tick_cpu_agree_for_a_busy_process() {
        // A child of its own: this test binary's threads come and go with the other tests,
        // and an exited thread's CPU stays in the process's ticks but leaves its tasks.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        // Until the tick clock shows 0.3 s of the child's CPU (30 s at most).
        let deadline = Instant::now() + Duration::from_secs(30);
        while proc_ticks_s(pid) < 0.3 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let (precise, ticks) = (proc_cpu_s(pid), proc_ticks_s(pid));
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        assert!(ticks >= 0.3, "no CPU burnt in 30 s");
        assert!(
            (precise - ticks).abs() < 0.1,
            "precise {precise} vs ticks {ticks}"
        );
    }
}
