//! `gateway`: parse the configuration, bind, print where to connect, run until SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use gateway::config::{Config, LoadError, LogFormat, EXIT_CONFIG};
use gateway::{run, Listeners};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSHFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a container's log stream gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cfg = match Config::load() {
        Ok(cfg) => cfg,
        Err(LoadError::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(LoadError::Invalid(msg)) => {
            eprintln!("gateway: {msg}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    init_tracing(cfg.log_format);
    match gateway::files::raise() {
        Ok((before, after)) => {
            if after.soft > before.soft {
                tracing::info!(
                    from = before.soft,
                    to = after.soft,
                    "raised the open-file limit to its hard limit"
                );
            }
            if let Some(fit) = gateway::files::shortfall(cfg.max_connections, after) {
                tracing::warn!(
                    "--max-connections {} needs about {} open files, but this process may open {} \
                     (its hard limit {}): past about {fit} connections accepts fail (EMFILE) and \
                     new clients wait; raise the limit (ulimit -n, systemd's LimitNOFILE=, the \
                     container runtime's nofile) or lower --max-connections",
                    cfg.max_connections,
                    cfg.max_connections as u64 + gateway::files::RESERVE,
                    after.soft,
                    after.hard
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if cfg.pin_workers {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        match gateway::affinity::allowed_cpus() {
            Ok(cpus) if !gateway::affinity::can_pin(&cpus, parallelism) => {
                tracing::warn!(
                    ?cpus,
                    parallelism,
                    "--pin-workers: a CPU quota allows fewer CPUs than the process may run on (a shared node): workers not pinned"
                );
            }
            Ok(cpus) => {
                tracing::info!(
                    ?cpus,
                    "--pin-workers: one worker thread per CPU, each pinned to its own"
                );
                let pinner = std::sync::Arc::new(gateway::affinity::Pinner::new(cpus));
                builder.worker_threads(pinner.workers());
                builder.on_thread_start(move || pinner.on_thread_start());
            }
            Err(e) => tracing::warn!(
                error = %e,
                "--pin-workers: cannot read the CPU affinity: workers not pinned"
            ),
        }
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let listeners = Listeners::bind(&cfg)?;
        let public = listeners.public.local_addr().map_err(|e| gateway::RunError::Bind("listen", cfg.listen, e))?;
        let internal = listeners
            .internal
            .local_addr()
            .map_err(|e| gateway::RunError::Bind("internal-listen", cfg.internal_listen, e))?;
        let bus = if cfg.redis_url.is_some() { "redis" } else { "memory (embedded)" };
        println!("gateway listening: public=http://{public} internal=http://{internal} bus={bus}");
        let host = |a: std::net::SocketAddr| {
            if a.ip().is_unspecified() {
                format!("127.0.0.1:{}", a.port())
            } else {
                a.to_string()
            }
        };
        println!("  browser:   http://{}/?channel=news", host(public));
        println!("  websocket: ws://{}/ws?channels=news", host(public));
        println!(
            "  publish:   curl -X POST http://{}/api/publish -H 'content-type: application/json' -d '{{\"channel\":\"news\",\"data\":{{\"hello\":\"world\"}}}}'",
            host(internal)
        );
        println!("  metrics:   http://{}/metrics", host(internal));
        run(cfg.clone(), listeners, gateway::shutdown::signals()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(match e {
                gateway::RunError::Redis(_) | gateway::RunError::Auth(_) => EXIT_CONFIG as u8,
                gateway::RunError::Bind(..) => 1,
            })
        }
    }
}
