//! Where and as whom profiles are pushed; credentials never printed.

use std::fmt;

use url::Url;

/// A server, its series labels and its credentials.
#[derive(Clone)]
pub(crate) struct PushTarget {
    /// The server's base URL; the push path is appended.
    pub(crate) server: Url,
    /// Series labels: `service_name` and the static tags.
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) basic_auth: Option<(String, Secret)>,
    /// Sent as `X-Scope-OrgID`.
    pub(crate) tenant_id: Option<String>,
    /// Whether pushed samples keep their `trace_id` label (Pyroscope before 2.1 makes it a
    /// series label).
    pub(crate) trace_id_label: bool,
}

impl PushTarget {
    pub(crate) fn push_url(&self) -> Url {
        let mut url = self.server.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push("push.v1.PusherService")
                .push("Push");
        }
        url
    }

    /// The server for messages: a URL may carry credentials.
    pub(crate) fn shown_server(&self) -> String {
        let mut url = self.server.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.to_string()
    }
}

/// A password: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> PushTarget {
        PushTarget {
            server: Url::parse("http://user:hunter2@localhost:4040/base/").unwrap(),
            labels: vec![],
            basic_auth: Some(("u".into(), Secret("hunter2".into()))),
            tenant_id: None,
            trace_id_label: true,
        }
    }

    #[test]
    fn the_push_path_is_appended_to_the_server() {
        assert_eq!(
            target().push_url().as_str(),
            "http://user:hunter2@localhost:4040/base/push.v1.PusherService/Push"
        );
    }

    #[test]
    fn credentials_are_never_shown() {
        let t = target();
        assert_eq!(t.shown_server(), "http://localhost:4040/base/");
        let (_, password) = t.basic_auth.unwrap();
        assert_eq!(format!("{password:?}"), "***");
    }
}
