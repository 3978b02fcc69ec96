//! The push client against servers that misbehave at the HTTP level: a redirect is not followed
//! (it would turn the POST into a GET and carry the tenant and credentials elsewhere), one
//! `Authorization` header goes out even with credentials in the URL as well, and a huge error
//! body is not read whole.
//!
//! One process, one SIGPROF: the tests take turns through [`SERIAL`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing_span_profiles::ProfilerConfig;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a raw server saw: each request's head, lowercased.
type Seen = Arc<Mutex<Vec<String>>>;

/// Answers every request with `response` (a whole HTTP/1.1 response head, then `body_len` bytes
/// of body) and records request heads.
async fn raw_server(response: String, body_len: usize) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (response, record) = (response.clone(), record.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_lowercase());
                let _ = stream.write_all(response.as_bytes()).await;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < body_len && stream.write_all(&chunk).await.is_ok() {
                    sent += chunk.len();
                }
            });
        }
    });
    (addr, seen)
}

/// Runs a profiler against `server` for a little over one upload and shuts it down.
async fn push_once(config: ProfilerConfig) -> Vec<tracing_span_profiles::PushTotals> {
    let profiler = config
        .with_upload_interval(Duration::from_secs(1))
        .start()
        .expect("profiler starts");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    tokio::task::spawn_blocking(move || profiler.shutdown(Duration::from_secs(2)))
        .await
        .unwrap()
        .expect("shut down in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let _serial = SERIAL.lock().await;
    let (elsewhere, elsewhere_seen) =
        raw_server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into(), 0).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere}/push.v1.PusherService/Push\r\ncontent-length: 0\r\n\r\n"
    );
    let (server, seen) = raw_server(redirect, 0).await;
    let totals = push_once(
        ProfilerConfig::new("svc")
            .with_server_address(format!("http://{server}"))
            .with_tenant_id("tenant-a"),
    )
    .await;
    assert!(!seen.lock().unwrap().is_empty(), "the server was asked");
    assert!(
        elsewhere_seen.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(
        totals[0].pushed, 0,
        "a redirect is no delivery: {}",
        totals[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_and_in_the_settings_make_one_authorization_header() {
    let _serial = SERIAL.lock().await;
    let (server, seen) = raw_server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into(), 0).await;
    push_once(
        ProfilerConfig::new("svc")
            .with_server_address(format!("http://url-user:url-pass@{server}"))
            .with_basic_auth("user", "pass"),
    )
    .await;
    let heads = seen.lock().unwrap();
    assert!(!heads.is_empty());
    for head in heads.iter() {
        let authorizations = head
            .lines()
            .filter(|l| l.starts_with("authorization:"))
            .count();
        assert_eq!(authorizations, 1, "{head}");
        // base64("user:pass")
        assert!(head.contains("authorization: basic dxnlcjpwyxnz"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_body_is_not_read_whole() {
    let _serial = SERIAL.lock().await;
    // A 500 whose body never ends: reading it whole would hang until the push timeout and hold
    // it all in memory.
    let endless = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\r\n";
    let (server, seen) = raw_server(endless.into(), usize::MAX).await;
    let started = std::time::Instant::now();
    let totals =
        push_once(ProfilerConfig::new("svc").with_server_address(format!("http://{server}"))).await;
    assert!(!seen.lock().unwrap().is_empty());
    assert!(totals[0].failed_attempts >= 1, "{}", totals[0]);
    // 1.3 s of running, then a last attempt that fails at once; reading the body whole would
    // hold each attempt for the 750 ms push timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "took {:?}",
        started.elapsed()
    );
}
