//! Real gateway processes started from the workspace's `target/` directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::within;

/// Path of a workspace binary next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// Whether command-line `args` set `flag`, as `--flag value` or `--flag=value`.
pub fn sets_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| {
        a.strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

/// Options for a gateway process.
#[derive(Default, Clone)]
pub struct GatewayBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    dir: Option<PathBuf>,
    launcher: Option<(PathBuf, Vec<String>)>,
    capture_log: bool,
}

impl GatewayBuilder {
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }

    /// Run the `gateway` found in `dir` (e.g. `target/release` for benchmarks).
    pub fn binary_dir(mut self, dir: PathBuf) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Start the gateway through `exe pre…` (e.g. `bench gateway --`), a program that runs
    /// it with the flags that follow `pre`.
    pub fn launcher(mut self, exe: PathBuf, pre: &[&str]) -> Self {
        self.launcher = Some((exe, pre.iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Keep the gateway's log lines (stderr, still echoed to the test's stderr) for
    /// [`Gateway::wait_log`].
    pub fn capture_log(mut self) -> Self {
        self.capture_log = true;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_owned(), v.to_owned()));
        self
    }

    pub async fn start(self) -> Gateway {
        let mut cmd = match (&self.launcher, &self.dir) {
            (Some((exe, pre)), _) => {
                let mut cmd = Command::new(exe);
                cmd.args(pre);
                cmd
            }
            (None, Some(d)) => Command::new(d.join("gateway")),
            (None, None) => Command::new(binary("gateway")),
        };
        for flag in ["--listen", "--internal-listen"] {
            if !sets_flag(&self.args, flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("PUSHFLEET_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if self.capture_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn gateway");
        let log = self.capture_log.then(|| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
            let kept = lines.clone();
            tokio::spawn(async move {
                while let Ok(Some(l)) = stderr.next_line().await {
                    eprintln!("{l}");
                    kept.lock().unwrap().push(l);
                }
            });
            lines
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = within("the gateway's listening line", async {
            loop {
                match lines.next_line().await.unwrap() {
                    Some(l) if l.starts_with("gateway listening:") => return l,
                    Some(_) => continue,
                    None => panic!("gateway exited before listening"),
                }
            }
        })
        .await;
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.strip_prefix("http://"))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Gateway {
            public: addr("public="),
            internal: addr("internal="),
            child,
            log,
        }
    }
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub child: Child,
    /// Its log lines so far, when started with [`GatewayBuilder::capture_log`].
    log: Option<Arc<Mutex<Vec<String>>>>,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    pub async fn start() -> Gateway {
        GatewayBuilder::default().start().await
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).unwrap_or(0)
    }

    /// `ws://…/ws` with an optional query.
    pub fn ws_url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/ws", self.public)
        } else {
            format!("ws://{}/ws?{query}", self.public)
        }
    }

    /// Publishes a JSON body; returns the response.
    pub async fn publish(&self, body: serde_json::Value) -> crate::http::Response {
        crate::http::post_json(self.internal, "/api/publish", &body.to_string()).await
    }

    /// Publishes and asserts 202.
    pub async fn publish_ok(&self, body: serde_json::Value) -> u64 {
        let r = self.publish(body).await;
        assert_eq!(r.status, 202, "publish failed: {}", r.body);
        r.json()["published"].as_u64().unwrap()
    }

    /// The value of one metric sample (0 when absent).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = crate::http::get(self.internal, "/metrics").await.body;
        gateway::metrics::sample(&text, name, labels).unwrap_or(0.0)
    }

    /// Waits until a metric reaches `want`.
    pub async fn wait_metric(&self, name: &str, labels: &str, want: f64) {
        crate::eventually(&format!("{name}{{{labels}}} == {want}"), || async {
            (self.metric(name, labels).await == want).then_some(())
        })
        .await
    }

    /// Waits until a metric is at least `min`.
    pub async fn wait_metric_at_least(&self, name: &str, labels: &str, min: f64) {
        crate::eventually(&format!("{name}{{{labels}}} >= {min}"), || async {
            (self.metric(name, labels).await >= min).then_some(())
        })
        .await
    }

    /// Waits for a log line containing `needle` (the gateway must have been started with
    /// [`GatewayBuilder::capture_log`]) and returns it.
    pub async fn wait_log(&self, needle: &str) -> String {
        let log = self.log.as_ref().expect("started without capture_log()");
        crate::eventually(&format!("a log line with {needle:?}"), || async {
            log.lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        })
        .await
    }

    /// Resident memory of the process, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        crate::bench::proc_rss_kib(self.pid())
            .unwrap_or_else(|| panic!("no VmRSS for gateway pid {}", self.pid()))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let rc = unsafe_kill(self.pid(), libc::SIGTERM);
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, bounded by `limit`; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }
}

/// Runs `pushctl` with `args` and extra environment, to completion (bounded).
pub async fn pushctl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(binary("pushctl"));
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    within("pushctl", cmd.output()).await.expect("run pushctl")
}

/// Runs `pushctl` with `args` and `input` on its stdin, to completion (bounded). A write
/// the process cut short by exiting is not an error: its output says what it did.
pub async fn pushctl_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(binary("pushctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run pushctl");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = within("pushctl's stdin", stdin.write_all(input)).await;
    drop(stdin);
    within("pushctl", child.wait_with_output())
        .await
        .expect("run pushctl")
}

/// Like [`pushctl`], asserting success.
pub async fn pushctl_ok(args: &[&str], env: &[(&str, &str)]) {
    let out = pushctl(args, env).await;
    assert!(
        out.status.success(),
        "pushctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kill(2)`; the only unsafe call in the tests, kept in one place.
#[allow(unsafe_code)]
fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // SAFETY: kill has no memory-safety preconditions; pid is a child we started.
    unsafe { libc::kill(pid, sig) }
}
