//! Named stack frames for async work.
//!
//! The body of an `async fn` is polled through a compiler-generated closure that the optimizer
//! inlines into its caller, so `order_car` would vanish from release-build flame graphs. Each
//! function here is a real, never-inlined frame that polls the future it is given, and is the
//! name a user looks for in the profile.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future polled through a named frame.
pub struct Framed<F: Future> {
    inner: Pin<Box<F>>,
    frame: fn(Pin<&mut F>, &mut Context<'_>) -> Poll<F::Output>,
}

impl<F: Future> Future for Framed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let frame = self.frame;
        frame(self.inner.as_mut(), cx)
    }
}

/// Runs `fut` so that every poll of it is inside the frame `frame`.
pub fn framed<F: Future>(
    frame: fn(Pin<&mut F>, &mut Context<'_>) -> Poll<F::Output>,
    fut: F,
) -> Framed<F> {
    Framed {
        inner: Box::pin(fut),
        frame,
    }
}

macro_rules! frames {
    ($($name:ident),* $(,)?) => {$(
        #[inline(never)]
        pub fn $name<F: Future>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let poll = fut.poll(cx);
            // Keeps the call out of tail position, so this frame stays on the stack while the
            // inner future runs; the name makes each body unique, so LLVM cannot merge, say,
            // `order_bike` and `order_scooter` into one function.
            std::hint::black_box((&poll, stringify!($name)));
            poll
        }
    )*};
}

frames!(
    order_bike,
    order_scooter,
    order_car,
    find_nearest_vehicle,
    check_driver_availability,
    mutex_lock,
);
