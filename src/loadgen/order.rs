//! One order: a random vehicle from a random instance, inside a CLIENT span whose context goes
//! out as `traceparent`, so the service's spans (and through them its CPU samples) join the
//! load generator's trace.

use opentelemetry_http::HeaderInjector;
use rand::Rng;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

pub fn pick(urls: &[Url]) -> (&'static str, Url) {
    let mut rng = rand::rng();
    let (vehicle, _) =
        crate::vocabulary::VEHICLES[rng.random_range(0..crate::vocabulary::VEHICLES.len())];
    let base = &urls[rng.random_range(0..urls.len())];
    let mut url = base.clone();
    let path = format!("{}/{vehicle}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    (vehicle, url)
}

/// One order inside a CLIENT span; true when the service answered 2xx.
pub async fn order(client: &reqwest::Client, url: &Url, vehicle: &'static str) -> bool {
    let span = tracing::info_span!(
        "HTTP GET",
        otel.name = "GET",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "GET",
        url.full = %url,
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        http.response.status_code = Empty,
        vehicle,
    );
    let mut headers = reqwest::header::HeaderMap::new();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(&mut headers))
    });
    async {
        match client.get(url.as_str()).headers(headers).send().await {
            Ok(response) => {
                let status = response.status();
                tracing::Span::current()
                    .record("http.response.status_code", i64::from(status.as_u16()));
                let _ = response.bytes().await;
                if !status.is_success() {
                    tracing::Span::current().record("otel.status_code", "error");
                }
                status.is_success()
            }
            Err(e) => {
                tracing::Span::current().record("otel.status_code", "error");
                tracing::debug!(error = %e, %url, "order failed");
                false
            }
        }
    }
    .instrument(span)
    .await
}
