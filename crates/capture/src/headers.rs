//! The request headers a backend decides on, kept so tests can tell what a client really sent.

use axum::http::HeaderMap;
use serde::Serialize;

/// The headers that decide whether Grafana Cloud, Tempo or Pyroscope accept a request, as the
/// client sent them (gRPC metadata included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestHeaders {
    /// `Authorization`, verbatim (e.g. `Basic dXNlcjpwYXNz`).
    pub authorization: Option<String>,
    /// `X-Scope-OrgID`: the tenant of a multi-tenant Tempo, Mimir or Pyroscope.
    pub scope_org_id: Option<String>,
    /// `Content-Type` (`application/grpc` for gRPC).
    pub content_type: Option<String>,
    /// `Content-Encoding`, or `grpc-encoding` for gRPC.
    pub content_encoding: Option<String>,
    /// `User-Agent`, which names the exporter and its version.
    pub user_agent: Option<String>,
}

impl RequestHeaders {
    /// Picks the interesting headers; values that are not visible ASCII are kept lossily rather
    /// than dropped, so a garbled header still shows up as present.
    pub(super) fn from_map(map: &HeaderMap) -> Self {
        let get = |name: &str| {
            map.get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        RequestHeaders {
            authorization: get("authorization"),
            scope_org_id: get("x-scope-orgid"),
            content_type: get("content-type"),
            content_encoding: get("content-encoding").or_else(|| get("grpc-encoding")),
            user_agent: get("user-agent"),
        }
    }

    /// Whether any `Authorization` header came with the request.
    pub fn has_authorization(&self) -> bool {
        self.authorization.is_some()
    }

    /// The `user:password` of an `Authorization: Basic` header, when it is one and decodes.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.authorization.as_deref()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(base64_decode(token.trim())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }

    /// The media type without parameters, lowercased (`application/x-protobuf`).
    pub(super) fn media_type(&self) -> Option<String> {
        let value = self.content_type.as_deref()?;
        let media = value.split(';').next().unwrap_or_default().trim();
        Some(media.to_ascii_lowercase())
    }
}

/// Standard base64 with padding, as HTTP Basic uses; `None` on anything malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let headers = RequestHeaders {
            // "grafana:s3cr:et" — the password may itself hold a colon.
            authorization: Some("Basic Z3JhZmFuYTpzM2NyOmV0".to_owned()),
            ..RequestHeaders::default()
        };
        assert_eq!(
            headers.basic_credentials(),
            Some(("grafana".to_owned(), "s3cr:et".to_owned()))
        );
        let bearer = RequestHeaders {
            authorization: Some("Bearer abc".to_owned()),
            ..RequestHeaders::default()
        };
        assert_eq!(bearer.basic_credentials(), None);
    }
}
