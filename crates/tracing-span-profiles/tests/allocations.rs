//! What the label layer allocates per span, counted by a global allocator that counts this
//! thread's allocations: a span's fields that are not labels cost it nothing, a labelled span
//! its state alone once its labels were seen, and a span entered again nothing. All run on every
//! span of a service.

use tracing_span_profiles::{NoLabels, SpanProfileLayer};
use tracing_subscriber::prelude::*;

mod counting;

use counting::allocations_in;

fn with_layer(f: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry()
        .with(SpanProfileLayer::new(NoLabels).with_label_field("vehicle"));
    tracing::subscriber::with_default(subscriber, f);
}

/// A span's life (create, enter, exit, close), with `extra` string fields that are not labels.
fn span_life(extra: bool) {
    let span = if extra {
        tracing::info_span!(
            "order",
            vehicle = "bike",
            url.path = "/bike",
            http.route = "/bike",
            user_agent.original = "wrk",
            server.address = "127.0.0.1",
        )
    } else {
        tracing::info_span!("order", vehicle = "bike")
    };
    drop(span.enter());
}

#[test]
fn fields_that_are_not_labels_are_not_copied() {
    with_layer(|| {
        // The registry's pages and the layer's per-thread state are made once, here.
        span_life(true);
        span_life(false);
        let plain = allocations_in(|| span_life(false));
        let with_fields = allocations_in(|| span_life(true));
        assert_eq!(
            with_fields,
            plain,
            "four more string fields, none of them a label, cost {} allocations",
            with_fields as i64 - plain as i64
        );
    });
}

#[test]
fn entering_a_span_again_allocates_nothing() {
    with_layer(|| {
        let span = tracing::info_span!("order", vehicle = "bike");
        drop(span.enter());
        let again = allocations_in(|| {
            for _ in 0..100 {
                drop(span.enter());
            }
        });
        assert_eq!(again, 0, "100 enters and exits of a resolved span");
    });
}

/// A span whose labels were seen before (on any span) builds no set: what a child costs is the
/// same whether its parent has one label or three, and no more than its own state.
#[test]
fn labels_seen_before_cost_no_set() {
    let subscriber = tracing_subscriber::registry().with(
        SpanProfileLayer::new(NoLabels)
            .with_label_field("region")
            .with_label_field("tier")
            .with_label_field("vehicle")
            .with_label_field("zone"),
    );
    tracing::subscriber::with_default(subscriber, || {
        let child_cost = |parent: &tracing::Span| {
            allocations_in(|| {
                let child = tracing::info_span!(parent: parent, "order", zone = "z1");
                drop(child.enter());
            })
        };
        let one = tracing::info_span!("request", vehicle = "bike");
        let three = tracing::info_span!("request", region = "eu", tier = "gold", vehicle = "bike");
        drop(one.enter());
        drop(three.enter());
        // First sight of each combination: the layer keeps a set for it.
        child_cost(&one);
        child_cost(&three);
        let (cost_one, cost_three) = (child_cost(&one), child_cost(&three));
        assert_eq!(cost_three, cost_one);
        assert!(
            cost_one <= 1,
            "a child with one field of its own cost {cost_one}"
        );
    });
}

/// A span that labels one field allocates its state (one span extension) and nothing else once
/// its label was seen: this runs for every request of a service.
#[test]
fn a_labelled_span_costs_its_state_alone() {
    with_layer(|| {
        span_life(false);
        let cost = allocations_in(|| span_life(false));
        assert!(
            cost <= 1,
            "a span with one label field cost {cost} allocations"
        );
    });
}

/// A child with no field the layer keeps (most spans of a service) allocates nothing: it runs
/// under its parent's labels, which the layer does not copy into it.
#[test]
fn a_child_without_labels_of_its_own_allocates_nothing() {
    with_layer(|| {
        let order = tracing::info_span!("order", vehicle = "bike");
        drop(order.enter());
        let child = || {
            let find = tracing::info_span!(parent: &order, "find_nearest_vehicle", radius = 2);
            drop(find.enter());
        };
        child();
        let cost = allocations_in(child);
        assert_eq!(
            cost, 0,
            "a child without labels of its own cost {cost} allocations"
        );
    });
}
