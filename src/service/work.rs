//! The work an order does: CPU burnt in proportion to the search radius, in slices of at most
//! [`SLICE`] of CPU with an `.await` between them, as an async service interleaves it with other
//! requests.
//!
//! The slices are cut by time, not by count: a worker thread that polls a slice does nothing
//! else meanwhile (no accepting, no `GET /`, no 503 for excess orders, no export task, no
//! request timeout, which can only fire at an `.await`), so the longest poll bounds how long
//! every other task on that worker waits, at any radius and any `RIDESHARE_WORK_SCALE`.

use std::time::Duration;

use tracing::Instrument;

use super::frames::{self, framed};
use crate::config::Hotspot;
use crate::vocabulary::frame::{
    CHECK_DRIVER_AVAILABILITY, FIND_NEAREST_VEHICLE, MUTEX_LOCK, ORDER_BIKE, ORDER_CAR,
    ORDER_SCOOTER,
};
use crate::vocabulary::{HOTSPOT_REGION, VEHICLE_LABEL, Vehicle};

/// CPU per unit of search radius for `find_nearest_vehicle` and `check_driver_availability`.
const SEARCH_COST: Duration = Duration::from_millis(200);
/// CPU per unit of search radius spent holding the eu-north car lock.
const LOCK_COST: Duration = Duration::from_millis(4000);
/// Most thread CPU one poll of a piece of work burns before it yields: each slice ends with an
/// `.await`, where tokio may move the task, poll the others and the I/O driver. A queue of `n`
/// busy orders on `w` workers is served round-robin, one round in about `n / w` slices; short
/// enough that 64 radius-10 orders on 2 cores leave `GET /` well under 100 ms, long enough
/// that the cost of a poll (span enter and exit, a clock read) stays a fraction of a percent.
const SLICE: Duration = Duration::from_millis(2);

/// One instance's order processing.
pub(super) struct Work {
    scale: f64,
    hotspot_region: bool,
    hotspot: Hotspot,
    /// The lock every car order of a hotspot region takes: a real mutex, so waiting for it shows
    /// as latency and holding it as CPU.
    car_lock: tokio::sync::Mutex<()>,
}

impl Work {
    pub(super) fn new(region: &str, scale: f64, hotspot: Hotspot) -> Self {
        Work {
            scale,
            hotspot_region: region == HOTSPOT_REGION,
            hotspot,
            car_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Processes one order inside its `order_<vehicle>` span and frame. The frame is the outer
    /// of the two, so the span's enter and exit (where its labels switch on and off) happen
    /// inside the frame too: every sample that carries `vehicle=V` has `order_V` on its stack.
    pub(super) async fn order(&self, vehicle: Vehicle, radius: u32) {
        let span = order_span(vehicle);
        match vehicle {
            Vehicle::Bike | Vehicle::Scooter => {
                framed(
                    frames::order(vehicle),
                    self.find_nearest_vehicle(radius).instrument(span),
                )
                .await
            }
            Vehicle::Car => {
                let work = async {
                    self.find_nearest_vehicle(radius).await;
                    self.check_driver_availability(radius).await;
                };
                framed(frames::order(vehicle), work.instrument(span)).await
            }
        }
    }

    async fn find_nearest_vehicle(&self, radius: u32) {
        let span = tracing::info_span!(FIND_NEAREST_VEHICLE, search_radius = radius);
        let work = burn(self.scaled(SEARCH_COST * radius));
        framed(frames::find_nearest_vehicle, work.instrument(span)).await
    }

    async fn check_driver_availability(&self, radius: u32) {
        let span = tracing::info_span!(CHECK_DRIVER_AVAILABILITY, search_radius = radius);
        let work = async {
            burn(self.scaled(SEARCH_COST * radius)).await;
            if self.hotspot_active() {
                self.mutex_lock(radius).await;
            }
        };
        framed(frames::check_driver_availability, work.instrument(span)).await
    }

    async fn mutex_lock(&self, radius: u32) {
        let span = tracing::info_span!(MUTEX_LOCK, search_radius = radius);
        let work = async {
            let _held = self.car_lock.lock().await;
            burn(self.scaled(LOCK_COST * radius)).await;
        };
        framed(frames::mutex_lock, work.instrument(span)).await
    }

    /// Whether car orders take the lock now: in eu-north, always, never, or every fourth
    /// minute of the wall clock.
    fn hotspot_active(&self) -> bool {
        self.hotspot_region
            && match self.hotspot {
                Hotspot::On => true,
                Hotspot::Off => false,
                Hotspot::Periodic => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    (now.as_secs() / 60) % 4 == 0
                }
            }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }
}

/// The span of an order of `vehicle`, named as its frame and labelled with the vehicle.
/// (A span's name is static, fixed where it is created: one `info_span!` a vehicle.)
fn order_span(vehicle: Vehicle) -> tracing::Span {
    let name = vehicle.name();
    match vehicle {
        Vehicle::Bike => tracing::info_span!(ORDER_BIKE, { VEHICLE_LABEL } = name),
        Vehicle::Scooter => tracing::info_span!(ORDER_SCOOTER, { VEHICLE_LABEL } = name),
        Vehicle::Car => tracing::info_span!(ORDER_CAR, { VEHICLE_LABEL } = name),
    }
}

/// Burns `cpu` of thread CPU time in slices of at most [`SLICE`], yielding after each one (at
/// least once, so every piece of work has an `.await` the request timeout can fire at). Each
/// slice subtracts the CPU it really used, so the total is `cpu` however it is cut.
async fn burn(cpu: Duration) {
    let mut left = cpu;
    loop {
        left = left.saturating_sub(spin(left.min(SLICE)));
        tokio::task::yield_now().await;
        if left.is_zero() {
            return;
        }
    }
}

/// Spins until this thread has used `cpu` more CPU time (wall time would stretch under load),
/// and returns how much it used: `cpu` plus at most one round of arithmetic.
#[inline(never)]
fn spin(cpu: Duration) -> Duration {
    let start = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    loop {
        let used = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(start);
        if used >= cpu {
            return used;
        }
        // About 2 us of arithmetic per clock read, so the flame graph shows the burn, not the
        // clock.
        for _ in 0..1024 {
            x = x.rotate_left(7) ^ x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        }
        std::hint::black_box(x);
    }
}

/// CPU time of `clock` (this thread's or this process's).
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the CPU-time clocks exist on Linux and macOS.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[tokio::test]
    async fn burn_uses_the_cpu_it_is_asked_for() {
        let before = cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID);
        burn(Duration::from_millis(40)).await;
        let used = cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID) - before;
        assert!(used >= Duration::from_millis(40), "used {used:?}");
    }

    /// One order polled to completion on this thread: its thread CPU in total, in its longest
    /// poll, and how many polls it took.
    fn run_measured(work: &Work, vehicle: Vehicle, radius: u32) -> (Duration, Duration, u32) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut order = std::pin::pin!(work.order(vehicle, radius));
        let (mut longest, mut polls) = (Duration::ZERO, 0);
        let start = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID);
        runtime.block_on(std::future::poll_fn(|cx| {
            let before = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID);
            let poll = order.as_mut().poll(cx);
            longest = longest.max(cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID) - before);
            polls += 1;
            poll
        }));
        let total = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID) - start;
        (total, longest, polls)
    }

    /// Cutting by time changes neither what an order costs nor the ratios between vehicles and
    /// regions the profiles show, and no poll holds its worker longer than a slice: checked in
    /// thread CPU, so a loaded machine cannot make it flake.
    #[test]
    fn an_order_costs_radius_times_cost_in_polls_of_at_most_a_slice() {
        let (scale, radius) = (0.01, 10);
        let search = SEARCH_COST * radius;
        let cases = [
            ("us-east", Vehicle::Bike, search),
            ("us-east", Vehicle::Scooter, search),
            ("us-east", Vehicle::Car, search * 2),
            ("eu-north", Vehicle::Car, search * 2 + LOCK_COST * radius),
        ];
        for (region, vehicle, cost) in cases {
            let work = Work::new(region, scale, Hotspot::On);
            let expected = cost.mul_f64(scale);
            let (total, longest, polls) = run_measured(&work, vehicle, radius);
            let case = format!(
                "{region} {vehicle:?}: {total:?} in {polls} polls, longest {longest:?}, expected {expected:?}"
            );
            assert!(total >= expected, "{case}");
            assert!(total <= expected.mul_f64(1.1), "{case}");
            assert!(longest <= SLICE + Duration::from_millis(1), "{case}");
            assert!(polls >= expected.div_duration_f64(SLICE) as u32, "{case}");
        }
    }

    /// A `GET /` on a one-worker runtime busy with a long order (1 s of CPU) is answered in
    /// milliseconds: the order yields every [`SLICE`], where the worker accepts and serves the
    /// probe. (With four slices a piece, each poll held the worker 250 ms.) Bounds in wall time,
    /// generous for a loaded 2-core machine: median under 50 ms, none over 250 ms.
    #[tokio::test]
    async fn get_index_is_answered_while_a_long_order_runs() {
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = std::sync::Arc::new(crate::service::AppState::new(
            "test".into(),
            "us-east".into(),
            0.5,
            Hotspot::Off,
        ));
        let app = crate::service::router(
            state,
            crate::service::Limits::new(8, Duration::from_secs(60)),
            crate::service::KnownMethods::default(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        server.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await
        });
        // A new connection per probe, as a health check makes: accepting is part of answering.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let order = tokio::spawn(client.get(format!("{base}/bike?search_radius=10")).send());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut latencies = Vec::new();
        while !order.is_finished() {
            let start = std::time::Instant::now();
            let response = client.get(format!("{base}/")).send().await.unwrap();
            assert!(response.status().is_success());
            latencies.push(start.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(order.await.unwrap().unwrap().status().is_success());
        server.shutdown_background();
        latencies.sort();
        assert!(!latencies.is_empty(), "the order ended before any probe");
        let median = latencies[latencies.len() / 2];
        let max = latencies[latencies.len() - 1];
        eprintln!("GET / while the order ran: median {median:?}, max {max:?} of {latencies:?}");
        assert!(
            median < Duration::from_millis(50),
            "median {median:?}: {latencies:?}"
        );
        assert!(
            max < Duration::from_millis(250),
            "max {max:?}: {latencies:?}"
        );
    }

    #[test]
    fn an_order_span_is_named_as_its_frame_and_labelled_with_its_vehicle() {
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry());
        for vehicle in Vehicle::ALL {
            let span = order_span(vehicle);
            let metadata = span.metadata().expect("the span is enabled");
            assert_eq!(metadata.name(), vehicle.order_frame());
            let fields: Vec<&str> = metadata.fields().iter().map(|f| f.name()).collect();
            assert_eq!(fields, [VEHICLE_LABEL]);
        }
    }

    #[test]
    fn hotspot_only_in_eu_north() {
        assert!(Work::new("eu-north", 1.0, Hotspot::On).hotspot_active());
        assert!(!Work::new("us-east", 1.0, Hotspot::On).hotspot_active());
        assert!(!Work::new("eu-north", 1.0, Hotspot::Off).hotspot_active());
    }
}
