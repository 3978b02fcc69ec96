//! Running the real binaries from integration tests: a service process on a free loopback port,
//! its output kept in a file for the tests to read.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use telemetry_capture::unused_loopback_addr;

pub const SERVICE: &str = env!("CARGO_BIN_EXE_rideshare");
pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A `rideshare` process.
pub struct Service {
    pub child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Service {
    /// Starts the service with only `env` (plus its listen address and `RUST_LOG=warn` unless
    /// given) and waits until it answers.
    pub async fn start(env: &[(&str, String)]) -> Service {
        let addr = unused_loopback_addr();
        let log = std::env::temp_dir().join(format!("rideshare-test-{}.log", addr.port()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(SERVICE);
        command
            .env_clear()
            .env("RIDESHARE_LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start rideshare");
        let service = Service { child, addr, log };
        service.wait_ready().await;
        service
    }

    /// A client whose connection has already served a request, so a request sent on it next is
    /// read by the server at once (a graceful stop closes connections with no request read yet).
    pub async fn warm_client(&self) -> reqwest::Client {
        let client = reqwest::Client::new();
        let response = client.get(self.url("/")).send().await.unwrap();
        assert!(response.status().is_success());
        client
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "service at {} did not become ready: {}",
            self.addr,
            self.output()
        );
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to end; kills it and panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        wait_exit(&mut self.child, within)
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits for `child` to end; kills it and panics after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the service binary with `args` and `env` only, to completion: (exit code, stderr).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(SERVICE)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rideshare");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code(), text)
}
