//! `--pin-workers`: one runtime worker thread per CPU the process may run on, each kept on
//! its own CPU.
//!
//! Without it the kernel places the worker threads, and on a small machine it sometimes
//! keeps two of them on one CPU for a whole fan-out while the other CPU idles or runs
//! something else (seen on the project's 2-core machine: a batch whose fan-out ran on one
//! core took up to 1.8 times as long as the others: a worker woken by its sibling is
//! placed on the sibling's CPU and stays there; docs/PERFORMANCE-HISTORY.md, rounds 23
//! and 24). Pinned, the workers cannot share a CPU, and work stealing still moves tasks
//! from a busy worker to an idle one. Meant for a gateway that
//! has its CPUs to itself (a dedicated VM, or a Kubernetes Guaranteed pod under the static
//! CPU manager policy, whose allowed set is its CPUs): where other processes share those
//! CPUs, a pinned worker cannot move away from a busy one. Where a CPU quota (a cgroup
//! limit) allows fewer CPUs than the mask holds, as for a pod with CPU limits on a shared
//! node, the gateway does not pin ([`can_pin`]).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The CPUs this process may run on (its affinity mask, as `taskset` shows it).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = get_affinity()?;
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| {
            #[allow(unsafe_code)]
            // SAFETY: CPU_ISSET reads bit `cpu` of the set, and cpu < CPU_SETSIZE.
            unsafe {
                libc::CPU_ISSET(cpu, &set)
            }
        })
        .collect())
}

/// Whether to pin one worker to each CPU of the affinity mask, given the parallelism the
/// process may use (`std::thread::available_parallelism`, which also counts a cgroup CPU
/// quota): not when the quota is smaller than the mask, since one worker per CPU of the
/// mask would then oversubscribe the quota, and those CPUs are shared.
pub fn can_pin(allowed: &[usize], parallelism: usize) -> bool {
    !allowed.is_empty() && parallelism >= allowed.len()
}

/// Which CPUs the `n`-th thread the runtime starts may run on: the runtime starts its
/// workers first, one per CPU, so thread `n < cpus.len()` gets CPU `cpus[n]`; any later
/// thread (the runtime's blocking pool) may run on all of them (it would otherwise inherit
/// the mask of the worker that started it).
pub fn placement(cpus: &[usize], n: usize) -> Vec<usize> {
    match cpus.get(n) {
        Some(&cpu) => vec![cpu],
        None => cpus.to_vec(),
    }
}

/// Pins each thread the runtime starts, in start order (`on_thread_start`).
pub struct Pinner {
    cpus: Vec<usize>,
    started: AtomicUsize,
}

impl Pinner {
    /// A pinner for a runtime of `cpus.len()` workers.
    pub fn new(cpus: Vec<usize>) -> Self {
        Self {
            cpus,
            started: AtomicUsize::new(0),
        }
    }

    /// The worker threads to build the runtime with: one per allowed CPU.
    pub fn workers(&self) -> usize {
        self.cpus.len().max(1)
    }

    /// Called on each new runtime thread. A failure is logged, not fatal: the thread runs
    /// where the kernel puts it, as without the flag.
    pub fn on_thread_start(&self) {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let cpus = placement(&self.cpus, n);
        if let Err(e) = set_affinity(&cpus) {
            tracing::warn!(thread = n, ?cpus, error = %e, "--pin-workers: cannot set the thread's CPU affinity");
        }
    }
}

#[allow(unsafe_code)]
fn get_affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it. Pid 0 is the calling thread.
    unsafe {
        let mut set = std::mem::zeroed::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Restricts the calling thread to `cpus` (also `bench stalls`' pinning).
#[allow(unsafe_code)]
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in get_affinity; CPU_SET writes bit `cpu` only for cpu < CPU_SETSIZE.
    unsafe {
        let mut set = std::mem::zeroed::<libc::cpu_set_t>();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_below_the_mask_means_no_pinning() {
        assert!(can_pin(&[0, 1], 2));
        assert!(can_pin(&[4, 5, 6, 7], 4));
        let node: Vec<usize> = (0..64).collect();
        assert!(!can_pin(&node, 2), "2 CPUs of quota on a 64-CPU node");
        assert!(!can_pin(&[], 2));
    }

    #[test]
    fn workers_get_one_cpu_each_and_later_threads_all_of_them() {
        let cpus = [2, 5, 7];
        assert_eq!(placement(&cpus, 0), vec![2]);
        assert_eq!(placement(&cpus, 1), vec![5]);
        assert_eq!(placement(&cpus, 2), vec![7]);
        assert_eq!(placement(&cpus, 3), vec![2, 5, 7], "a blocking-pool thread");
        assert_eq!(placement(&cpus, 40), vec![2, 5, 7]);
    }

    #[test]
    fn a_thread_started_by_the_pinner_runs_only_on_its_cpu_and_the_next_on_all() {
        let cpus = allowed_cpus().expect("affinity");
        assert!(!cpus.is_empty());
        let pinner = std::sync::Arc::new(Pinner::new(cpus.clone()));
        let run = |p: std::sync::Arc<Pinner>| {
            std::thread::spawn(move || {
                p.on_thread_start();
                allowed_cpus().expect("affinity")
            })
            .join()
            .expect("thread")
        };
        let first = run(pinner.clone());
        assert_eq!(
            first,
            vec![cpus[0]],
            "the first worker is on the first allowed CPU"
        );
        for _ in 1..pinner.workers() {
            run(pinner.clone());
        }
        assert_eq!(
            run(pinner),
            cpus,
            "past the workers, a thread may run anywhere"
        );
    }
}
