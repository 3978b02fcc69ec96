//! A label value as a set stores it: most values a request labels (its trace id, its span's name,
//! a vehicle) are short, and are kept inline rather than allocated.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest value kept inline: a trace id's 32 hex characters.
const INLINE_LEN: usize = 32;

/// A label value.
#[derive(Clone)]
pub(crate) enum Value {
    /// Up to [`INLINE_LEN`] bytes of UTF-8, copied in.
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    /// A span's name, as its metadata has it.
    Static(&'static str),
    /// A longer value, or one shared with something else (a span id with its span's attribute).
    Shared(Arc<str>),
}

impl Value {
    /// `text` inline if it fits, else in an allocation of its own.
    pub(crate) fn new(text: &str) -> Self {
        if text.len() > INLINE_LEN {
            return Value::Shared(Arc::from(text));
        }
        let mut bytes = [0; INLINE_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Value::Inline {
            len: text.len() as u8,
            bytes,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole: valid UTF-8 (the fallback is unreachable).
            Value::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Value::Static(text) => text,
            Value::Shared(text) => text,
        }
    }

    /// The text's bytes, without the UTF-8 check `as_str` makes: for comparing and hashing.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Value::Static(text) => text.as_bytes(),
            Value::Shared(text) => text.as_bytes(),
        }
    }
}

impl From<Arc<str>> for Value {
    fn from(text: Arc<str>) -> Self {
        Value::Shared(text)
    }
}

/// Values are equal when their text is, however each is stored.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_and_every_kind_compares_by_text() {
        let trace_id = "0af7651916cd43dd8448eb211c80319c";
        let inline = Value::new(trace_id);
        assert!(matches!(inline, Value::Inline { .. }));
        assert_eq!(inline.as_str(), trace_id);
        assert_eq!(inline, Value::Shared(Arc::from(trace_id)));
        let long = "é".repeat(17);
        assert!(matches!(Value::new(&long), Value::Shared(_)));
        assert_eq!(Value::new(&long).as_str(), long);
        assert_eq!(Value::new("bike"), Value::Static("bike"));
        assert_eq!(Value::new(""), Value::Static(""));
    }
}
