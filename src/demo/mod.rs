//! `rideshare demo`: the whole drilldown on one machine, with no Docker and no backends.

use std::process::ExitCode;

use crate::config::DemoArgs;

/// Runs the demo; the exit code for `main`.
pub fn main(args: DemoArgs) -> ExitCode {
    eprintln!("rideshare demo: not built yet ({:?})", args.out);
    ExitCode::FAILURE
}
