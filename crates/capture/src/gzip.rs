//! Gzip handling shared by the receivers: bodies say whether they are compressed in a header,
//! embedded pprof payloads do not, so those are recognised by their magic bytes.

use std::borrow::Cow;
use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::behaviour::Refusal;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompressed size above which a payload is refused, so a gzip bomb cannot exhaust memory.
const MAX_DECOMPRESSED: u64 = 256 * 1024 * 1024;

pub(super) fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(io::Error::other("decompressed payload exceeds 256 MiB"));
    }
    Ok(out)
}

/// Gunzips `bytes` when they start with the gzip magic, else borrows them as they are.
pub(super) fn gunzip_if_gzipped(bytes: &[u8]) -> io::Result<Cow<'_, [u8]>> {
    if bytes.starts_with(&GZIP_MAGIC) {
        gunzip(bytes).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

/// Undoes the request's `Content-Encoding`: 400 when the body does not match it, 415 for an
/// encoding this receiver does not speak (as the real backends answer).
pub(super) fn decode_body<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, Refusal> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some("gzip") => gunzip(body)
            .map(Cow::Owned)
            .map_err(|e| Refusal::new(400, format!("body is not valid gzip: {e}"))),
        Some(other) => Err(Refusal::new(
            415,
            format!("unsupported Content-Encoding {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn sniffs_gzip_and_passes_plain_bytes_through() {
        let plain = b"\x0a\x03abc".to_vec();
        assert_eq!(&*gunzip_if_gzipped(&plain).unwrap(), &plain[..]);
        assert_eq!(&*gunzip_if_gzipped(&gzip(&plain)).unwrap(), &plain[..]);
    }

    #[test]
    fn body_encoding_follows_the_header() {
        let plain = b"payload".to_vec();
        assert_eq!(
            &*decode_body(Some("gzip"), &gzip(&plain)).unwrap(),
            &plain[..]
        );
        assert_eq!(&*decode_body(None, &plain).unwrap(), &plain[..]);
        assert_eq!(decode_body(Some("gzip"), &plain).unwrap_err().status, 400);
        assert_eq!(decode_body(Some("zstd"), &plain).unwrap_err().status, 415);
    }
}
