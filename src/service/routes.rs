//! Request handlers: parse and check input, run the order, answer JSON.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::refusal::Refusal;
use crate::vocabulary::{MAX_RADIUS, Vehicle};

/// The query string of an order.
#[derive(Debug, Deserialize)]
struct OrderParams {
    search_radius: Option<String>,
}

/// `GET /{vehicle}` for every vehicle, in [`Vehicle::ALL`]'s order.
pub(super) fn orders() -> Router<Arc<AppState>> {
    Vehicle::ALL
        .into_iter()
        .fold(Router::new(), |orders, vehicle| {
            let handler = move |state, query| order(state, query, vehicle);
            orders.route(vehicle.route(), get(handler))
        })
}

/// `GET /{vehicle}`: one order of `vehicle`, with the radius the query gives or its default.
async fn order(
    State(state): State<Arc<AppState>>,
    query: Result<Query<OrderParams>, QueryRejection>,
    vehicle: Vehicle,
) -> Result<Json<serde_json::Value>, Refusal> {
    let radius = match query {
        Ok(Query(params)) => parse_radius(params.search_radius.as_deref())
            .map_err(Refusal::BadQuery)?
            .unwrap_or(vehicle.default_radius()),
        Err(_) => return Err(Refusal::BadQuery("malformed query string".to_owned())),
    };
    state.work.order(vehicle, radius).await;
    Ok(Json(json!({
        "vehicle": vehicle.name(),
        "region": state.region,
        "search_radius": radius,
    })))
}

/// `search_radius`: absent, or an integer from 1 to [`MAX_RADIUS`].
fn parse_radius(raw: Option<&str>) -> Result<Option<u32>, String> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.parse::<u32>() {
        Ok(r) if (1..=MAX_RADIUS).contains(&r) => Ok(Some(r)),
        _ => {
            let shown: String = raw.chars().take(32).collect();
            Err(format!(
                "search_radius must be an integer from 1 to {MAX_RADIUS}, got {shown:?}"
            ))
        }
    }
}

/// `GET /`: what this instance is. Never the environment: it holds credentials.
pub(super) async fn index(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "service": state.service_name,
        "region": state.region,
        "version": env!("CARGO_PKG_VERSION"),
        "routes": Vehicle::ALL.map(Vehicle::route),
    }))
}

/// Any other route.
pub(super) async fn not_found() -> Refusal {
    Refusal::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn radius_rules() {
        assert_eq!(parse_radius(None), Ok(None));
        assert_eq!(parse_radius(Some("1")), Ok(Some(1)));
        assert_eq!(parse_radius(Some("10")), Ok(Some(10)));
        for bad in [
            "0",
            "11",
            "-1",
            "2.5",
            "",
            "abc",
            " 3",
            "99999999999999999999",
        ] {
            let err = parse_radius(Some(bad)).unwrap_err();
            assert!(err.contains("1 to 10"), "{bad:?}: {err}");
        }
        let long = "x".repeat(500);
        assert!(parse_radius(Some(&long)).unwrap_err().len() < 100);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the input: the value itself when it is an integer from 1 to 10, and
        /// otherwise a short, one-line error naming the parameter.
        #[test]
        fn search_radius_is_accepted_exactly_when_it_is_1_to_10(raw in "\\PC{0,12}|[0-9]{1,3}|-?[0-9]{1,20}") {
            match parse_radius(Some(&raw)) {
                Ok(Some(r)) => {
                    prop_assert!((1..=MAX_RADIUS).contains(&r));
                    prop_assert_eq!(raw.parse::<u32>().ok(), Some(r));
                }
                Ok(None) => prop_assert!(false, "a given value is never treated as absent"),
                Err(message) => {
                    prop_assert!(!raw.parse::<u32>().is_ok_and(|r| (1..=MAX_RADIUS).contains(&r)));
                    prop_assert!(message.contains("search_radius"));
                    prop_assert!(!message.contains('\n'));
                    prop_assert!(message.len() < 120);
                }
            }
        }
    }
}
