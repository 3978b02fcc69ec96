//! The work an order does: CPU burnt in proportion to the search radius, in slices with an
//! `.await` between them, as an async service interleaves it with other requests.

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
/// Slices per piece of work: each ends with an `.await`, where tokio may move the task.
const SLICES: u32 = 4;

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

/// Burns `cpu` of this thread's CPU time in [`SLICES`] polls.
async fn burn(cpu: Duration) {
    let slice = cpu / SLICES;
    for _ in 0..SLICES {
        spin(slice);
        tokio::task::yield_now().await;
    }
}

/// Spins until this thread has used `cpu` more CPU time (wall time would stretch under load).
#[inline(never)]
fn spin(cpu: Duration) {
    let start = cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(start) < cpu {
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
    use super::*;

    #[tokio::test]
    async fn burn_uses_the_cpu_it_is_asked_for() {
        let before = cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID);
        burn(Duration::from_millis(40)).await;
        let used = cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID) - before;
        assert!(used >= Duration::from_millis(40), "used {used:?}");
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
