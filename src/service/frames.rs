//! Named stack frames for async work.
//!
//! The body of an `async fn` is polled through a compiler-generated closure that the optimizer
//! inlines into its caller, so `order_car` would vanish from release-build flame graphs. Each
//! function here is a real, never-inlined frame that polls the future it is given, and is the
//! name a user looks for in the profile.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::vocabulary::Vehicle;

/// A frame: polls the future it is given, as itself.
pub(super) type Frame<F> = fn(Pin<&mut F>, &mut Context<'_>) -> Poll<<F as Future>::Output>;

/// A future polled through a named frame.
pub(super) struct Framed<F: Future> {
    inner: Pin<Box<F>>,
    frame: Frame<F>,
}

impl<F: Future> Future for Framed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let frame = self.frame;
        frame(self.inner.as_mut(), cx)
    }
}

/// Runs `fut` so that every poll of it is inside the frame `frame`.
pub(super) fn framed<F: Future>(frame: Frame<F>, fut: F) -> Framed<F> {
    Framed {
        inner: Box::pin(fut),
        frame,
    }
}

/// One named frame.
macro_rules! frame {
    ($name:ident) => {
        #[doc = concat!("The frame `", stringify!($name), "`.")]
        #[inline(never)]
        pub(super) fn $name<F: Future>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let poll = fut.poll(cx);
            // Keeps the call out of tail position, so this frame stays on the stack while the
            // inner future runs; the name makes each body unique, so LLVM cannot merge, say,
            // `order_bike` and `order_scooter` into one function.
            std::hint::black_box((&poll, stringify!($name)));
            poll
        }
    };
}

/// The frames the vocabulary names, and which one each vehicle's order runs in.
macro_rules! frames {
    (
        orders: [$($vehicle:ident => $order:ident = $order_fn:ident),* $(,)?],
        work: [$($work:ident = $work_fn:ident),* $(,)?] $(,)?
    ) => {
        $(frame!($order_fn);)*
        $(frame!($work_fn);)*

        /// The frame an order of `vehicle` runs in, the function named
        /// [`Vehicle::order_frame`].
        pub(super) fn order<F: Future>(vehicle: Vehicle) -> Frame<F> {
            match vehicle {
                $(Vehicle::$vehicle => $order_fn,)*
            }
        }

        /// Each frame's name in the vocabulary, with the symbol path of its function.
        #[cfg(test)]
        fn symbols() -> Vec<(&'static str, &'static str)> {
            type Any = std::future::Ready<()>;
            vec![
                $((crate::vocabulary::frame::$order, std::any::type_name_of_val(&$order_fn::<Any>)),)*
                $((crate::vocabulary::frame::$work, std::any::type_name_of_val(&$work_fn::<Any>)),)*
            ]
        }
    };
}

crate::vocabulary::with_frames!(frames);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::frame;

    /// A profile shows the frames as `rideshare::service::frames::{name}`, and the demo's
    /// report finds them by that last segment: each is the name the vocabulary gives it.
    #[test]
    fn each_frame_is_the_function_its_name_says() {
        let symbols = symbols();
        for (name, symbol) in &symbols {
            let path = symbol.split('<').next().unwrap_or(symbol);
            assert_eq!(path, format!("rideshare::service::frames::{name}"));
            assert_eq!(path.rsplit("::").next(), Some(*name));
        }
        let names: Vec<&str> = symbols.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, frame::ALL);
    }
}
