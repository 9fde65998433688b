//! gzip for `/metrics`, as every Go exporter offers it. The body is one
//! gzip member whose deflate data comes in two pieces (as pigz builds its
//! output):
//!
//! - the checks' part, compressed once per generation of results and ended
//!   with a sync flush (byte-aligned, not final, no references forward), so
//!   it is reused for as long as no check's pre-rendered series changed:
//!   what an HA pair of Prometheus servers, or a scrape interval shorter than
//!   the checks' intervals, sees;
//! - the exporter's own metrics and `# EOF`, small and compressed at each
//!   scrape (they change at each scrape), as a deflate stream of its own
//!   whose last block is final.
//!
//! The trailer's CRC-32 of the whole text is the two pieces' CRCs combined,
//! so the cached text is never hashed again. Every gzip decoder reads the
//! result; concatenated gzip members would not do, since curl and some
//! browsers stop after the first member.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use prometheus_client::registry::Registry;

use super::exposition::{checks_part, rendered_of, tail, Format, Rendered};
use super::state::CheckState;

/// Whether an `Accept-Encoding` header allows gzip: `gzip` (or `x-gzip`)
/// with a q-value above 0, or `*` with one when gzip is not refused by name.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let mut named: Option<bool> = None;
    let mut any = false;
    for item in accept_encoding.unwrap_or("").split(',') {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => named = Some(named.unwrap_or(false) || q > 0.0),
            "*" => any = q > 0.0,
            _ => {}
        }
    }
    named.unwrap_or(any)
}

/// A piece of deflate data and what it decompresses to.
struct Piece {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: usize,
}

impl Piece {
    /// Deflate `text`; `last` ends it with a final block, otherwise with a
    /// sync flush so that more deflate data may follow.
    fn new(text: &[u8], last: bool) -> Piece {
        // The fastest level: exposition text still shrinks about tenfold,
        // and a scrape of 100,000 checks must stay cheap.
        let mut encoder =
            DeflateEncoder::new(Vec::with_capacity(text.len() / 8 + 64), Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(text);
        let deflated = if last {
            encoder.finish().unwrap_or_default()
        } else {
            let _ = encoder.flush();
            std::mem::take(encoder.get_mut())
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(text);
        Piece {
            deflated,
            crc,
            len: text.len(),
        }
    }
}

/// The compressed checks' part of the last scrape, and what it was made of.
struct Cached {
    format: Format,
    /// Holding the `Arc`s keeps their addresses from being reused, so
    /// pointer equality means "the same series".
    rendered: Vec<Arc<Rendered>>,
    piece: Arc<Piece>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The `/metrics` body gzip-compressed; decompressed, it is exactly
/// [`super::exposition`]'s body.
pub fn exposition_gzip(
    checks: &[Arc<CheckState>],
    registry: Option<&Registry>,
    format: Format,
) -> Vec<u8> {
    let head = cached_checks_part(rendered_of(checks), format);
    let tail = Piece::new(tail(registry, format).as_bytes(), true);
    let mut crc = head.crc.clone();
    crc.combine(&tail.crc);
    let len = head.len + tail.len;
    let mut out = Vec::with_capacity(18 + head.deflated.len() + tail.deflated.len());
    // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.extend_from_slice(&head.deflated);
    out.extend_from_slice(&tail.deflated);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32, by the format's definition.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

fn cached_checks_part(rendered: Vec<Arc<Rendered>>, format: Format) -> Arc<Piece> {
    if let Ok(cache) = CACHE.lock() {
        if let Some(c) = cache.as_ref().filter(|c| same(c, &rendered, format)) {
            return c.piece.clone();
        }
    }
    // Compressed without holding the lock, so a large body never makes a
    // concurrent scrape wait; the last one to finish is kept.
    let piece = Arc::new(Piece::new(checks_part(&rendered, format).as_bytes(), false));
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some(Cached {
            format,
            rendered,
            piece: piece.clone(),
        });
    }
    piece
}

fn same(cached: &Cached, rendered: &[Arc<Rendered>], format: Format) -> bool {
    cached.format == format
        && cached.rendered.len() == rendered.len()
        && cached
            .rendered
            .iter()
            .zip(rendered)
            .all(|(a, b)| Arc::ptr_eq(a, b))
}

/// The address of the cached compressed checks' part (for tests of the
/// cache).
#[cfg(test)]
fn cached_pointer() -> Option<*const Piece> {
    CACHE.lock().ok()?.as_ref().map(|c| Arc::as_ptr(&c.piece))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::Duration;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::checks::{MetricDesc, MetricKind, Sample};
    use crate::metrics::{exposition, RunRecord};

    static VALUE: MetricDesc = MetricDesc {
        name: "gz_value",
        help: "A value from the last scheduled run.",
        unit: None,
        kind: MetricKind::Gauge,
    };

    fn record(v: f64) -> RunRecord {
        RunRecord {
            finished_at: 1_700_000_000.0,
            duration: Duration::from_millis(1),
            result: Ok(vec![Sample::new(&VALUE, v)]),
            notes: Vec::new(),
        }
    }

    fn gunzip(body: &[u8]) -> String {
        let mut out = String::new();
        GzDecoder::new(body)
            .read_to_string(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn accept_encoding_is_read_with_q_values() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(accepts_gzip(Some("x-gzip")));
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("*, gzip;q=0")));
        assert!(!accepts_gzip(Some("br, deflate")));
    }

    // One test, because the cache is process-wide.
    #[test]
    fn the_compressed_body_is_the_plain_body_and_is_reused_until_a_check_changes() {
        let a = CheckState::new("gz_a".into(), "test", vec![]);
        let b = CheckState::new("gz_b".into(), "test", vec![]);
        a.record(record(1.0));
        b.record(record(2.0));
        let checks = [a.clone(), b.clone()];
        for format in [Format::OpenMetrics, Format::Text] {
            let gz = exposition_gzip(&checks, None, format);
            assert_eq!(gunzip(&gz), exposition(&checks, None, format));
        }

        let first = exposition_gzip(&checks, None, Format::Text);
        let cached = cached_pointer();
        let again = exposition_gzip(&checks, None, Format::Text);
        assert_eq!(first, again);
        assert_eq!(
            cached_pointer(),
            cached,
            "nothing changed: no recompression"
        );

        b.record(record(3.0));
        let changed = exposition_gzip(&checks, None, Format::Text);
        assert_ne!(cached_pointer(), cached, "a new result: compressed anew");
        let text = gunzip(&changed);
        assert!(
            text.contains("runbook_gz_value{check=\"gz_b\"} 3.0"),
            "{text}"
        );
        assert_eq!(text, exposition(&checks, None, Format::Text));
    }
}
