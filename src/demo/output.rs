//! The files the demo writes. Only its own: the output directory may be one the user keeps
//! other things in, so a rerun removes what an earlier run wrote and nothing else.

use std::fs;
use std::path::{Path, PathBuf};

use super::cpu_profiles::CpuProfile;
use super::report::Report;
use super::{html, otlp_json};
use telemetry_capture::CapturedSpan;

/// Creates the output directory and removes what an earlier run of the demo left in it (only
/// files the demo writes: the directory may hold anything else).
pub fn prepare_out_dir(out: &Path) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", out.display());
    fs::create_dir_all(out).map_err(|e| fail("create", e))?;
    for dir in ["profiles", "logs"] {
        let dir = out.join(dir);
        if dir.is_dir() {
            for entry in fs::read_dir(&dir).map_err(|e| fail("read", e))?.flatten() {
                let path = entry.path();
                let ours = path
                    .extension()
                    .is_some_and(|ext| ext == "pprof" || ext == "log");
                if ours {
                    fs::remove_file(&path).map_err(|e| fail("clean", e))?;
                }
            }
        }
        fs::create_dir_all(&dir).map_err(|e| fail("create", e))?;
    }
    Ok(())
}

/// Writes the report and the raw captures beside it; the path of `index.html`, for the terminal.
pub fn write_outputs(
    out: &Path,
    report: &Report,
    spans: &[CapturedSpan],
    profiles: &[CpuProfile],
) -> Result<PathBuf, String> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    for (listed, profile) in report.profiles.iter().zip(profiles) {
        if let (Some(file), Some(pprof)) = (&listed.file, &profile.raw_pprof) {
            write(file, pprof)?;
        }
    }
    let traces = otlp_json::export_request(spans);
    write(
        "traces.json",
        &serde_json::to_vec(&traces).map_err(|e| format!("cannot encode the traces: {e}"))?,
    )?;
    write(
        "report.json",
        &serde_json::to_vec_pretty(report).map_err(|e| format!("cannot encode the report: {e}"))?,
    )?;
    let page = html::render(report)?;
    write("index.html", page.as_bytes())?;
    let index = out.join("index.html");
    Ok(fs::canonicalize(&index).unwrap_or(index))
}
