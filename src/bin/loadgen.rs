//! `loadgen [--duration 30s] [--concurrency N] URL...`

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use rideshare::config::{ProfileMode, one_line};
use rideshare::loadgen::{self, LoadgenArgs};
use rideshare::telemetry::{Telemetry, TelemetrySetup};

fn main() -> ExitCode {
    let args = match LoadgenArgs::try_parse() {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("loadgen: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let service_name = args
            .telemetry
            .otel_service_name
            .clone()
            .unwrap_or_else(|| loadgen::SERVICE_NAME.to_owned());
        let telemetry = match Telemetry::init(TelemetrySetup {
            args: &args.telemetry,
            service_name,
            resource: vec![],
            profile_tags: vec![],
            profile_mode: ProfileMode::Off,
            label_fields: &[],
        }) {
            Ok(t) => t,
            Err(message) => {
                eprintln!("loadgen: {message}");
                return ExitCode::from(2);
            }
        };
        let report = loadgen::run(&args, rideshare::shutdown::signal()).await;
        print!("{}", loadgen::render(&report));
        let _ = tokio::task::spawn_blocking(move || {
            telemetry.shutdown(rideshare::telemetry::FLUSH_DEADLINE)
        })
        .await;
        ExitCode::SUCCESS
    })
}
