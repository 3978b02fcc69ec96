//! The names a user looks for in a profile, and how a sampled frame is matched against them.
//!
//! Symbolized frames carry generic arguments, closure suffixes and module paths that differ
//! between builds; matching by `::` path segment of the generic-free name keeps the report's
//! numbers independent of all that.

/// The service's own frames (`src/service/frames.rs`), the names a user looks for.
pub const OWN_FRAMES: &[&str] = crate::vocabulary::frame::ALL;

/// The frame whose CPU tells which region has the lock hotspot.
pub const HOTSPOT_FRAME: &str = crate::vocabulary::frame::MUTEX_LOCK;

/// A function name as a flame graph shows it: without generic arguments (`order_car<...>`
/// reads `order_car`, `<Box<dyn FnOnce<()>> as FnOnce<()>>::call_once` reads
/// `<Box as FnOnce>::call_once`).
pub fn display_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if depth > 0 {
            match c {
                '-' if chars.peek() == Some(&'>') => {
                    chars.next();
                }
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            continue;
        }
        let after_name = out
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '}');
        if c == '<' && after_name {
            depth = 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `frame` is the function `name`: with generic arguments set aside, one of its `::`
/// path segments is `name` (`order_car<F>`, `rideshare::service::frames::mutex_lock` and
/// `Work::find_nearest_vehicle::{{closure}}` are; `poll<Framed<..::mutex_lock::..>>` is not).
pub fn frame_is(frame: &str, name: &str) -> bool {
    display_name(frame)
        .split("::")
        .any(|segment| segment == name)
}

/// Whether `frame` is one of [`OWN_FRAMES`].
pub fn is_own(frame: &str) -> bool {
    OWN_FRAMES.iter().any(|own| frame_is(frame, own))
}

/// The innermost of the service's own frames on a root-first stack.
pub fn innermost_own(stack: &[String]) -> Option<&'static str> {
    stack
        .iter()
        .rev()
        .find_map(|frame| OWN_FRAMES.iter().copied().find(|own| frame_is(frame, own)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_by_path_segment() {
        assert!(frame_is(
            "rideshare::service::frames::order_car",
            "order_car"
        ));
        assert!(frame_is(
            "rideshare::service::work::Work::find_nearest_vehicle::{{closure}}",
            "find_nearest_vehicle"
        ));
        assert!(frame_is("frames::mutex_lock<F>", "mutex_lock"));
        assert!(!frame_is(
            "poll<rideshare::service::work::{impl#1}::mutex_lock::{async_fn#0}>",
            "mutex_lock"
        ));
        assert!(!frame_is(
            "rideshare::service::frames::order_carpool",
            "order_car"
        ));
        assert!(!frame_is("std::sync::mutex_lock_slow", "mutex_lock"));
    }

    #[test]
    fn innermost_own_frame_is_the_deepest() {
        let stack: Vec<String> = [
            "main",
            "rideshare::service::frames::order_car",
            "rideshare::service::frames::check_driver_availability",
            "rideshare::service::frames::mutex_lock",
            "rideshare::service::work::spin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(innermost_own(&stack), Some("mutex_lock"));
        assert_eq!(innermost_own(&stack[..2]), Some("order_car"));
        assert_eq!(innermost_own(&stack[..1]), None);
    }

    #[test]
    fn display_names_drop_generic_arguments() {
        assert_eq!(
            display_name("order_car<rideshare::service::work::{impl#1}::order::{async_fn#0}>"),
            "order_car"
        );
        assert_eq!(
            display_name(
                "<alloc::boxed::Box<dyn core::ops::function::FnOnce<(), Output = ()> + core::marker::Send> as core::ops::function::FnOnce<()>>::call_once"
            ),
            "<alloc::boxed::Box as core::ops::function::FnOnce>::call_once"
        );
        assert_eq!(
            display_name("{async_block#0}<fn(A) -> B, C>"),
            "{async_block#0}"
        );
        assert_eq!(
            display_name("rideshare::service::frames::mutex_lock"),
            "rideshare::service::frames::mutex_lock"
        );
    }
}
