//! The regional instances: child processes of this executable, each configured through its
//! environment alone, so that what the demo runs is exactly what `rideshare` runs in a
//! container.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::cpu_profiles::ProfilesVia;
use super::scenario::{HOTSPOT_REGION, WORK_SCALE};
use telemetry_capture::{OTLP_PROFILES_PATH, unused_loopback_addr};

/// Longest wait for an instance to answer after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a region is started before its failure to start ends the demo.
const START_ATTEMPTS: u32 = 3;
/// How long an instance may take to exit after SIGTERM: its 5 s request grace plus the 4 s flush.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts every region and waits until each answers. Must run on the thread that outlives
/// them: the parent-death signal the children ask for is tied to the spawning thread.
pub fn start_all(
    runtime: &tokio::runtime::Runtime,
    exe: &Path,
    receiver: &str,
    via: ProfilesVia,
    interval: Duration,
    logs: &Path,
) -> Result<Vec<Region>, String> {
    let mut regions: Vec<Region> = Vec::new();
    for name in crate::vocabulary::REGIONS {
        let mut attempt = 1;
        loop {
            let mut region = Region::spawn(exe, name, receiver, via, interval, logs)?;
            match runtime.block_on(region.wait_ready()) {
                Ok(()) => {
                    regions.push(region);
                    break;
                }
                // The free port it was given may have been taken meanwhile: another one.
                Err(_) if attempt < START_ATTEMPTS && region.exited() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(regions)
}

/// SIGTERM to every region at once (they flush their last spans and profile on the way out),
/// then waits for each; what went wrong, one line per region, for the user.
pub fn stop_all(regions: &mut [Region]) -> Vec<String> {
    for region in regions.iter() {
        region.sigterm();
    }
    let mut problems = Vec::new();
    for region in regions {
        match region.wait_exit(EXIT_TIMEOUT) {
            Ok(s) if s.success() => {}
            Ok(s) => problems.push(format!(
                "{} exited with {s}; its log is in {}",
                region.name,
                region.log.display()
            )),
            Err(e) => problems.push(format!("{}: {e}", region.name)),
        }
    }
    problems
}

/// One regional instance: a child process of this executable. Killed if still running when
/// dropped, so an error on the way never leaves a service behind.
pub struct Region {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Region {
    fn spawn(
        exe: &Path,
        name: &'static str,
        receiver: &str,
        via: ProfilesVia,
        interval: Duration,
        logs: &Path,
    ) -> Result<Region, String> {
        let addr = unused_loopback_addr();
        let log = logs.join(format!("{name}.log"));
        let file =
            fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let hotspot = if name == HOTSPOT_REGION { "on" } else { "off" };
        let mut command = Command::new(exe);
        // Only what the demo sets: the caller's OTEL_* or PYROSCOPE_* must not send the demo's
        // data elsewhere.
        command
            // Out of the terminal's process group: Ctrl-C reaches the demo, which ends the
            // load and stops the regions in order.
            .process_group(0)
            .env_clear()
            .env("REGION", name)
            .env("RIDESHARE_LISTEN_ADDR", addr.to_string())
            .env("RIDESHARE_WORK_SCALE", WORK_SCALE)
            .env("RIDESHARE_MUTEX_HOTSPOT", hotspot)
            .env("PYROSCOPE_SERVER_ADDRESS", receiver)
            .env(
                "PYROSCOPE_UPLOAD_INTERVAL",
                format!("{}s", interval.as_secs()),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
            .env("OTEL_BSP_SCHEDULE_DELAY", "1000")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "65536")
            .env("RUST_LOG", "warn")
            .envs(profiles_env(via, receiver))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
            unsafe {
                command.pre_exec(|| {
                    // Should the demo die without cleaning up, its regions end too.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} for {name}: {e}", exe.display()))?;
        Ok(Region {
            name,
            addr,
            child,
            log,
        })
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let url = format!("http://{}/", self.addr);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before it answered: {}",
                    self.name,
                    self.log_tail()
                ));
            }
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer on {} within {READY_TIMEOUT:?}: {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child, which is not reaped before `wait_exit`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the exit; kills the process after `within`.
    fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "did not exit within {within:?} of SIGTERM and was killed: its last profile may be missing"
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot wait for the process: {e}")),
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() {
            format!("nothing in {}", self.log.display())
        } else {
            tail
        }
    }
}

/// The push needs nothing beyond `PYROSCOPE_SERVER_ADDRESS` (the service's default exporter).
/// For OTLP profiles the signal's own variables are spelled out, full path included, so that
/// the profiles reach the capture's profiles receiver whatever the span settings become.
fn profiles_env(via: ProfilesVia, receiver: &str) -> Vec<(&'static str, String)> {
    match via {
        ProfilesVia::Pyroscope => Vec::new(),
        ProfilesVia::Otlp => vec![
            ("OTEL_PROFILES_EXPORTER", "otlp".to_owned()),
            (
                "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT",
                format!("{}{OTLP_PROFILES_PATH}", receiver.trim_end_matches('/')),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL",
                "http/protobuf".to_owned(),
            ),
        ],
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
