//! The client worker processes of a scenario: started with their share of the
//! connections and a source address each, told when to start, read for their reports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::worker::WorkerReport;
use super::{
    bin_dir, cores, min_workers_per_target, proc_cpu_s, worker, worker_connect_rate, worker_split,
    Scenario,
};

/// One client worker process (`bench worker`): its stdin (the start signal) and the
/// lines it reports on stdout.
pub(super) struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// How a `clap::ValueEnum` value is spelled on the command line.
pub fn arg_name(v: &impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

pub(super) async fn spawn_worker(a: &worker::WorkerArgs) -> WorkerProc {
    let mut cmd = Command::new(bin_dir().join("bench"));
    cmd.arg("worker")
        .args(["--target", &a.target.to_string()])
        .args(["--source", &a.source.to_string()])
        .args(["--conns", &a.conns.to_string()])
        .args(["--channels", &a.channels.join(",")])
        .args(["--window-ms", &(a.window_us / 1000).to_string()])
        .args(["--connect-rate", &a.connect_rate.to_string()])
        .args(["--sched", &arg_name(&a.sched)]);
    if let Some(cpu) = a.cpu {
        cmd.args(["--cpu", &cpu.to_string()]);
    }
    if a.stalled > 0 {
        cmd.args(["--stalled", &a.stalled.to_string()]);
    }
    if a.raw_tcp {
        cmd.arg("--raw-tcp");
    } else {
        cmd.args(["--protocol", &arg_name(&a.protocol)]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bench worker");
    let stdin = child.stdin.take().expect("stdin");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    WorkerProc {
        child,
        stdin,
        lines,
    }
}

impl WorkerProc {
    pub(super) fn cpu_s(&self) -> f64 {
        self.child.id().map_or(0.0, |pid| proc_cpu_s(pid as i32))
    }

    pub(super) async fn ready(&mut self) -> (u64, u64, u64) {
        let line = tokio::time::timeout(Duration::from_secs(180), self.lines.next_line())
            .await
            .expect("worker ready in time")
            .expect("worker output")
            .expect("worker exited early");
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        (v[0], v[1], v[2])
    }

    pub(super) async fn report(mut self) -> WorkerReport {
        let _ = self.stdin.write_all(b"report\n").await;
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("worker report in time")
            .expect("worker output")
            .unwrap_or_default();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        serde_json::from_str(&line).unwrap_or_default()
    }
}

/// The CPUs pinned client workers take in turn: those this process may run on, or none
/// when the clients are not pinned (or the affinity mask cannot be read: then they run
/// unpinned, and say so).
pub(super) fn client_cpus(pin: bool) -> Vec<usize> {
    if !pin {
        return Vec::new();
    }
    gateway::affinity::allowed_cpus().unwrap_or_else(|e| {
        eprintln!("bench: clients not pinned, affinity unreadable: {e}");
        Vec::new()
    })
}

/// The CPU of client worker `k` when the scenario pins its clients: the allowed CPUs in
/// turn, so the workers spread evenly (`None` when they are not pinned).
pub(super) fn client_cpu(cpus: &[usize], k: usize) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[k % cpus.len()])
}

/// Source address for worker `k`: 127.0.0.2, 127.0.0.3, …
pub(super) fn source(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (k % 250) as u8))
}

/// Worker processes for `conns` connections to `target` ([`worker_split`], one source
/// address each, numbered from `k` on), speaking the scenario's protocol.
pub(super) async fn spawn_workers(
    target: SocketAddr,
    conns: usize,
    channels: &[String],
    s: &Scenario,
    k: &mut usize,
) -> Vec<WorkerProc> {
    let mut workers = Vec::new();
    let cpus = client_cpus(s.pin_clients);
    let split = worker_split(conns, min_workers_per_target(s.gateways, cores()));
    let stalled = stalled_split(s.stalled / s.gateways.max(1), &split);
    for (n, stalled) in split.into_iter().zip(stalled) {
        let w = spawn_worker(&worker::WorkerArgs {
            target,
            source: source(*k),
            conns: n,
            channels: channels.to_vec(),
            connect_rate: worker_connect_rate(s, cores()),
            window_us: s.window_ms * 1000,
            raw_tcp: false,
            protocol: s.server,
            sched: s.clients,
            cpu: client_cpu(&cpus, *k),
            stalled,
        })
        .await;
        workers.push(w);
        *k += 1;
    }
    workers
}

/// `stalled` connections spread over workers of `sizes` connections in proportion, as
/// whole connections that add up to `stalled` (at most each worker's size).
pub(super) fn stalled_split(stalled: usize, sizes: &[usize]) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let stalled = stalled.min(total);
    let mut before = 0;
    let mut cum = 0;
    sizes
        .iter()
        .map(|n| {
            cum += n;
            let upto = stalled * cum / total.max(1);
            let k = upto - before;
            before = upto;
            k
        })
        .collect()
}

/// Waits until every worker has its connections up: (connected, failed, seconds).
pub(super) async fn all_ready(workers: &mut [WorkerProc]) -> (u64, u64, f64) {
    let t0 = Instant::now();
    let (mut connected, mut failed) = (0, 0);
    for w in workers.iter_mut() {
        let (c, f, _) = w.ready().await;
        connected += c;
        failed += f;
    }
    (connected, failed, t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::{client_cpu, stalled_split};

    #[test]
    fn stalled_connections_are_spread_in_proportion() {
        assert_eq!(stalled_split(20, &[100, 100]), [10, 10]);
        assert_eq!(stalled_split(2, &[5, 5]), [1, 1]);
        assert_eq!(
            stalled_split(3, &[5, 5]),
            [1, 2],
            "whole connections, adding up"
        );
        assert_eq!(stalled_split(0, &[250, 250]), [0, 0]);
        assert_eq!(
            stalled_split(99, &[2, 3]),
            [2, 3],
            "at most every connection"
        );
        assert!(stalled_split(1, &[]).is_empty());
    }

    #[test]
    fn pinned_clients_take_the_allowed_cpus_in_turn() {
        let cpus = [2, 5];
        let placed: Vec<_> = (0..5).map(|k| client_cpu(&cpus, k)).collect();
        assert_eq!(placed, [Some(2), Some(5), Some(2), Some(5), Some(2)]);
        assert_eq!(client_cpu(&[], 3), None, "not pinned");
    }
}
