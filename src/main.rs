//! `rideshare`: the service (default), or `rideshare healthcheck`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use clap::error::ErrorKind;
use opentelemetry::KeyValue;
use rideshare::config::{Cli, Command, ServeArgs, one_line};
use rideshare::service::{self, AppState, Limits, ServeOptions};
use rideshare::telemetry::{Telemetry, TelemetrySetup};
use rideshare::vocabulary::{DEFAULT_SERVICE_NAME, REGION_LABEL, VEHICLE_LABEL};

/// jemalloc rather than glibc's allocator: telemetry allocates a few dozen small objects a request
/// (span data, each span's OTLP encoding), some freed on another thread (the span export), and
/// under glibc that cost more CPU per request and a longer latency tail, at the same resident
/// memory (mimalloc was as fast but held twice the memory). The figures are in README,
/// Benchmark ("The allocator (fifth round)"). The library crates leave the choice to the application.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => return usage_error(&one_line(&e)),
    };
    match cli.command {
        Some(Command::Healthcheck { url }) => healthcheck(url),
        Some(Command::Demo(args)) => rideshare::demo::main(args),
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("rideshare: {message}");
    ExitCode::from(2)
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(message) = args.telemetry.validate() {
        return usage_error(&message);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rideshare: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // Telemetry threads are done; do not wait for idle blocking threads.
    runtime.shutdown_background();
    code
}

async fn run(args: ServeArgs) -> ExitCode {
    let service_name = args.telemetry.service_name(DEFAULT_SERVICE_NAME);
    let telemetry = match Telemetry::init(TelemetrySetup {
        args: &args.telemetry,
        service_name: service_name.clone(),
        resource: vec![
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("cloud.region", args.region.clone()),
        ],
        profile_tags: vec![(REGION_LABEL, args.region.as_str())],
        profile_mode: args.profile_mode(),
        label_fields: &[VEHICLE_LABEL],
    }) {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %args.listen_addr, error = %e, "cannot listen");
            flush(telemetry).await;
            return ExitCode::FAILURE;
        }
    };
    let state = Arc::new(AppState::new(
        service_name.clone(),
        args.region.clone(),
        args.work_scale,
        args.mutex_hotspot,
    ));
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        region = %args.region,
        service = %service_name,
        traces = %rideshare::config::without_credentials(&args.telemetry.traces_endpoint()),
        profiles = %rideshare::config::without_credentials(&args.telemetry.pyroscope_server_address),
        "rideshare listening"
    );
    service::fit_open_files(args.max_connections as usize);
    let drained = service::serve(
        listener,
        service::router(
            state,
            Limits::new(args.max_in_flight as usize, args.request_timeout),
            args.known_methods.clone(),
        ),
        rideshare::shutdown::signal(),
        ServeOptions {
            shutdown_grace: args.shutdown_grace,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections as usize,
        },
    )
    .await;
    if !drained {
        tracing::warn!(grace = ?args.shutdown_grace, "in-flight requests did not finish within the grace period");
    }
    flush(telemetry).await;
    ExitCode::SUCCESS
}

async fn flush(telemetry: Telemetry) {
    let _ = tokio::task::spawn_blocking(move || {
        telemetry.shutdown(rideshare::telemetry::FLUSH_DEADLINE)
    })
    .await;
}

fn healthcheck(url: url::Url) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let ok = runtime.is_ok_and(|rt| {
        rt.block_on(async {
            let client = reqwest::Client::new();
            let response = client
                .get(url.as_str())
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await;
            response.is_ok_and(|r| r.status().is_success())
        })
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
