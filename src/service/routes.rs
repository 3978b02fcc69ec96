//! Request handlers: parse and check input, run the order, answer JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::work::Vehicle;

/// Largest accepted `search_radius`.
pub const MAX_RADIUS: u32 = 10;

#[derive(Debug, Deserialize)]
pub struct OrderParams {
    search_radius: Option<String>,
}

pub async fn bike(
    state: State<Arc<AppState>>,
    q: Result<Query<OrderParams>, QueryRejection>,
) -> Response {
    order(state, q, Vehicle::Bike).await
}

pub async fn scooter(
    state: State<Arc<AppState>>,
    q: Result<Query<OrderParams>, QueryRejection>,
) -> Response {
    order(state, q, Vehicle::Scooter).await
}

pub async fn car(
    state: State<Arc<AppState>>,
    q: Result<Query<OrderParams>, QueryRejection>,
) -> Response {
    order(state, q, Vehicle::Car).await
}

async fn order(
    State(state): State<Arc<AppState>>,
    query: Result<Query<OrderParams>, QueryRejection>,
    vehicle: Vehicle,
) -> Response {
    let radius = match query {
        Ok(Query(params)) => match parse_radius(params.search_radius.as_deref()) {
            Ok(r) => r.unwrap_or(vehicle.default_radius()),
            Err(message) => return bad_request(message),
        },
        Err(_) => return bad_request("malformed query string".to_owned()),
    };
    state.work.order(vehicle, radius).await;
    Json(json!({
        "vehicle": vehicle.name(),
        "region": state.region,
        "search_radius": radius,
    }))
    .into_response()
}

/// `search_radius`: absent, or an integer from 1 to [`MAX_RADIUS`].
pub fn parse_radius(raw: Option<&str>) -> Result<Option<u32>, String> {
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

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// `GET /`: what this instance is. Never the environment: it holds credentials.
pub async fn index(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "service": state.service_name,
        "region": state.region,
        "version": env!("CARGO_PKG_VERSION"),
        "routes": ["/bike", "/scooter", "/car"],
    }))
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
