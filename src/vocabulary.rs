//! The service's vocabulary, in one place: what it sells, where it runs, and the names its
//! telemetry uses for them.
//!
//! The same words reach the wire (routes, JSON bodies, span names and attributes), the profiles
//! (series labels, frame names) and whatever reads them back (the demo's report, the compose
//! stack's dashboards). Defining each word once keeps those from drifting apart.

/// The Pyroscope profile type id Grafana queries for CPU profiles pushed by this service.
pub const PROFILE_TYPE_ID: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Default service name, for both the trace resource's `service.name` and the profile series
/// label `service_name`.
pub const DEFAULT_SERVICE_NAME: &str = "rust-ride-sharing-app";
/// Static profile series label naming the instance's region.
pub const REGION_LABEL: &str = "region";
/// Span field (and pprof label) naming the ordered vehicle.
pub const VEHICLE_LABEL: &str = "vehicle";

/// The regions the compose stack runs.
pub const REGIONS: [&str; 3] = ["us-east", "eu-north", "ap-south"];
/// The region whose car orders take a shared lock (`--mutex-hotspot` says when): the slow
/// requests the walkthrough finds.
pub const HOTSPOT_REGION: &str = REGIONS[1];

/// Largest accepted `search_radius`.
pub const MAX_RADIUS: u32 = 10;

/// The ordered vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vehicle {
    Bike,
    Scooter,
    Car,
}

impl Vehicle {
    /// Every vehicle, in the order the service lists its routes.
    pub const ALL: [Vehicle; 3] = [Vehicle::Bike, Vehicle::Scooter, Vehicle::Car];

    /// The vehicle's name: its route's last segment and its `vehicle` span attribute and label.
    pub const fn name(self) -> &'static str {
        match self {
            Vehicle::Bike => "bike",
            Vehicle::Scooter => "scooter",
            Vehicle::Car => "car",
        }
    }

    /// The search radius an order uses when the request does not give one.
    pub const fn default_radius(self) -> u32 {
        match self {
            Vehicle::Bike => 1,
            Vehicle::Scooter => 2,
            Vehicle::Car => 3,
        }
    }

    /// The route that orders this vehicle: `/{name}`.
    pub const fn route(self) -> &'static str {
        match self {
            Vehicle::Bike => "/bike",
            Vehicle::Scooter => "/scooter",
            Vehicle::Car => "/car",
        }
    }
}

/// The vehicles as `(name, default radius)`, for code that wants plain data.
pub const VEHICLES: [(&str, u32); Vehicle::ALL.len()] = {
    let mut vehicles = [("", 0); Vehicle::ALL.len()];
    let mut i = 0;
    while i < vehicles.len() {
        vehicles[i] = (Vehicle::ALL[i].name(), Vehicle::ALL[i].default_radius());
        i += 1;
    }
    vehicles
};

/// Calls the macro `$then` with the service's named frames: each order's, by vehicle, then
/// those of the work orders do, each a `CONSTANT = function` pair. `service::frames` makes each
/// `function` a never-inlined frame, and this module each `CONSTANT` its name through
/// `stringify!`: the symbol in a profile and the name it is searched by are one token, so they
/// cannot drift apart.
macro_rules! with_frames {
    ($then:ident) => {
        $then! {
            orders: [
                Bike => ORDER_BIKE = order_bike,
                Scooter => ORDER_SCOOTER = order_scooter,
                Car => ORDER_CAR = order_car,
            ],
            work: [
                FIND_NEAREST_VEHICLE = find_nearest_vehicle,
                CHECK_DRIVER_AVAILABILITY = check_driver_availability,
                MUTEX_LOCK = mutex_lock,
            ],
        }
    };
}
pub(crate) use with_frames;

/// The frame names, and which vehicle's order runs in which.
macro_rules! frame_names {
    (
        orders: [$($vehicle:ident => $order:ident = $order_fn:ident),* $(,)?],
        work: [$($work:ident = $work_fn:ident),* $(,)?] $(,)?
    ) => {
        /// The names of the service's own frames (`rideshare::service::frames::*`), the
        /// functions a user looks for in a flame graph. Each frame runs inside the span of the
        /// same name.
        pub mod frame {
            $(
                #[doc = concat!("`", stringify!($order_fn), "`: the frame and span of an order.")]
                pub const $order: &str = stringify!($order_fn);
            )*
            $(
                #[doc = concat!("`", stringify!($work_fn), "`: the frame and span of some work.")]
                pub const $work: &str = stringify!($work_fn);
            )*
            /// Every named frame: the orders, then the work they do.
            pub const ALL: &[&str] = &[$($order,)* $($work),*];
        }

        impl Vehicle {
            /// The frame, and the span, an order of this vehicle runs in: `order_{name}`.
            pub const fn order_frame(self) -> &'static str {
                match self {
                    $(Vehicle::$vehicle => frame::$order,)*
                }
            }
        }
    };
}

with_frames!(frame_names);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vehicle_is_ordered_at_its_name_in_the_frame_of_its_name() {
        for vehicle in Vehicle::ALL {
            assert_eq!(vehicle.route(), format!("/{}", vehicle.name()));
            assert_eq!(vehicle.order_frame(), format!("order_{}", vehicle.name()));
        }
        let names: Vec<&str> = Vehicle::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(names, ["bike", "scooter", "car"]);
        assert_eq!(VEHICLES, [("bike", 1), ("scooter", 2), ("car", 3)]);
    }

    #[test]
    fn the_hotspot_region_is_one_of_the_regions() {
        assert_eq!(HOTSPOT_REGION, "eu-north");
        assert!(REGIONS.contains(&HOTSPOT_REGION));
    }

    #[test]
    fn the_frames_are_the_orders_then_their_work() {
        assert_eq!(
            frame::ALL,
            [
                "order_bike",
                "order_scooter",
                "order_car",
                "find_nearest_vehicle",
                "check_driver_availability",
                "mutex_lock",
            ]
        );
    }
}
