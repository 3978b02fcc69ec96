//! The real pyroscope-rs agent, as the service configures it, pushing into the HTTP receiver.
//!
//! pprof-rs allows one profiler per process: no other test in this crate may run an agent
//! concurrently with this one.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::PyroscopeAgentBuilder;

use super::{PATIENCE, any_port};
use crate::{Behaviour, Capture, Endpoint};

/// Spins for `duration` in a frame the profile must show.
#[inline(never)]
fn capture_test_burn_cpu(duration: Duration) -> u64 {
    let started = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while started.elapsed() < duration {
        for _ in 0..10_000 {
            x = black_box(x.rotate_left(5) ^ x.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
    }
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_pushes_decodable_cpu_profiles() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    // Also proves the agent's credentials reach the wire the way Grafana Cloud checks them.
    receiver.set_behaviour(Behaviour::RequireAuth {
        basic: Some(("12345".into(), "glc_token".into())),
        tenant: Some("team-a".into()),
    });
    let url = receiver.url();

    let agent_run = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let agent = PyroscopeAgentBuilder::new(
            url,
            "capture-test-app",
            100,
            "pyroscope-rs",
            "test",
            pprof_backend(PprofConfig { sample_rate: 100 }, BackendConfig::default()),
        )
        .tags(vec![("region", "eu-north")])
        .basic_auth("12345", "glc_token")
        .tenant_id("team-a".into())
        .upload_interval(Duration::from_secs(1))
        .build()
        .and_then(|agent| agent.start())
        .map_err(|e| format!("start agent: {e}"))?;
        black_box(capture_test_burn_cpu(Duration::from_millis(1500)));
        // stop() pushes the last profile and waits for the push to be handed over.
        let ready = agent.stop().map_err(|e| format!("stop agent: {e}"))?;
        ready.shutdown();
        Ok(())
    });
    tokio::time::timeout(PATIENCE, agent_run)
        .await
        .expect("agent finishes in time")
        .expect("agent thread")
        .expect("agent runs");

    let found = capture
        .wait_for(
            |c| {
                c.profiles()
                    .iter()
                    .any(|p| p.has_frame("capture_test_burn_cpu"))
            },
            PATIENCE,
        )
        .await;
    let profiles = capture.profiles();
    assert!(
        found.is_ok(),
        "no profile shows the burn; {} profiles, rejections {:#?}",
        profiles.len(),
        capture.rejections()
    );
    assert!(
        capture.rejections().is_empty(),
        "{:#?}",
        capture.rejections()
    );

    for profile in &profiles {
        assert_eq!(profile.profile_name(), Some("process_cpu"));
        assert_eq!(profile.service_name(), Some("capture-test-app"));
        assert_eq!(profile.series_label("region"), Some("eu-north"));
        assert_eq!(
            profile.sample_types(),
            [("cpu".to_owned(), "nanoseconds".to_owned())]
        );
        assert_eq!(
            profile.period_type(),
            Some(("cpu".to_owned(), "nanoseconds".to_owned()))
        );
        assert_eq!(profile.period(), 10_000_000);
        assert!(profile.duration_nanos() > 0 && profile.time_unix_nanos() > 0);
        assert!(!profile.raw_pprof.is_empty());
        assert_eq!(
            profile.headers.basic_credentials(),
            Some(("12345".to_owned(), "glc_token".to_owned()))
        );
        assert_eq!(profile.headers.scope_org_id.as_deref(), Some("team-a"));
        assert_eq!(profile.headers.content_encoding.as_deref(), Some("gzip"));
        assert!(
            profile
                .headers
                .user_agent
                .as_deref()
                .is_some_and(|ua| ua.starts_with("pyroscope-rs/")),
            "{:?}",
            profile.headers.user_agent
        );
    }

    let burning: Vec<_> = profiles
        .iter()
        .flat_map(|p| p.samples())
        .filter(|s| s.has_frame("capture_test_burn_cpu"))
        .collect();
    let sample = &burning[0];
    assert!(
        sample.value > 0 && sample.value % 10_000_000 == 0,
        "{sample:?}"
    );
    // Root first: the burn sits below the thread's entry point, not above it.
    let burn_at = sample
        .stack
        .iter()
        .position(|f| f.contains("capture_test_burn_cpu"))
        .expect("burn frame");
    assert!(burn_at > 0, "{:?}", sample.stack);
    let burned: i64 = burning.iter().map(|s| s.value).sum();
    assert!(
        burned >= 300_000_000,
        "expected most of 1.5 s of CPU in the burn, got {burned} ns"
    );

    let stats = capture.stats(Endpoint::PyroscopePush);
    assert_eq!(stats.accepted, stats.received);
    tokio::time::timeout(PATIENCE, receiver.shutdown())
        .await
        .expect("shutdown in time");
}
