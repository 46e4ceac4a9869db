//! The `cart-service` binary: reads the configuration, starts telemetry, builds the
//! application and runs it until SIGTERM or SIGINT. Nothing else lives here.

use std::process::ExitCode;
use std::time::Duration;

use cart_service::config::{Cli, Command};
use cart_service::startup::shutdown_signal;
use cart_service::{Application, healthcheck, telemetry};
use clap::Parser;

// mimalloc: the request path allocates many small, short-lived objects across two worker
// threads; glibc malloc spent about a fifth of the CPU on them under load (perf, `add`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asked for transparent huge pages on its heap, and each 2 MiB region touched
    // then counted whole in the RSS: 10 of the 19.5 MiB an idle process held. A heap this
    // small gains nothing from them (no throughput change measured), so mimalloc is built
    // not to ask (`no_thp`), and this turns them off for the process where the kernel
    // gives them unasked (`transparent_hugepage=always`).
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cart-service: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // Dropping the runtime would wait for blocking tasks still running (a `/stress` past
    // SHUTDOWN_TIMEOUT_SECONDS); the deadline has passed, so leave them behind.
    runtime.shutdown_background();
    code
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;

    if let Some(Command::Healthcheck { url, timeout_ms }) = cli.command {
        let url = url.unwrap_or_else(|| healthcheck::default_url(config.http.listen_addr));
        return match healthcheck::probe(&url, Duration::from_millis(timeout_ms)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cart-service healthcheck: {error}");
                ExitCode::FAILURE
            }
        };
    }

    if let Err(error) = config.validate() {
        eprintln!("cart-service: {error}");
        return ExitCode::from(2);
    }
    let telemetry = match telemetry::init(&config) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("cart-service: {error}");
            return ExitCode::from(2);
        }
    };
    let listen = config.http.listen_addr;
    let application = match Application::build(config).await {
        Ok(application) => application,
        // A setting that parsed but cannot be used, such as an unreadable
        // AUTH_PUBLIC_KEY_FILE: the same answer as for a bad value.
        Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("cart-service: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            tracing::error!(error = %error, %listen, "cannot start: check LISTEN_ADDR and REDIS_URL");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        port = application.port(),
        "cart-service started"
    );
    let stopped = application.run_until_stopped(shutdown_signal()).await;
    // Export the spans still batched (this blocks), close Redis, then flush the log file
    // as the guard drops, so the last lines reach it.
    let telemetry = tokio::task::spawn_blocking(move || {
        let mut telemetry = telemetry;
        telemetry.flush_spans();
        telemetry
    })
    .await;
    stopped.close();
    drop(telemetry);
    ExitCode::SUCCESS
}
