//! `loadgen [--duration 30s] [--concurrency N] URL...`

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use rideshare::config::LoadgenArgs;
use rideshare::config::{ProfileMode, one_line};
use rideshare::loadgen;
use rideshare::telemetry::{Telemetry, TelemetrySetup};

fn main() -> ExitCode {
    let args = match LoadgenArgs::try_parse() {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => return usage_error(&one_line(&e)),
    };
    if let Err(message) = args.telemetry.validate() {
        return usage_error(&message);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let telemetry = match Telemetry::init(TelemetrySetup {
            args: &args.telemetry,
            service_name: args.telemetry.service_name(loadgen::SERVICE_NAME),
            resource: vec![],
            profile_tags: vec![],
            profile_mode: ProfileMode::Off,
            label_fields: &[],
        }) {
            Ok(t) => t,
            Err(message) => return usage_error(&message),
        };
        let report = loadgen::run(args.plan(), rideshare::shutdown::signal()).await;
        print!("{}", loadgen::render(&report));
        let _ = tokio::task::spawn_blocking(move || {
            telemetry.shutdown(rideshare::telemetry::FLUSH_DEADLINE)
        })
        .await;
        ExitCode::SUCCESS
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::from(2)
}
