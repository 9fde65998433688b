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

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use prometheus_client::registry::Registry;

use super::body::write_checks;
use super::exposition::{rendered_of, tail, Format};
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
    fn new(text: &str, last: bool) -> Piece {
        let mut deflater = Deflater::new(text.len());
        // Deflating into memory cannot fail.
        let _ = deflater.write_str(text);
        deflater.finish(last)
    }
}

/// Deflates the text written into it as it comes, hashing and counting it
/// on the way, so that a large body is never held uncompressed.
struct Deflater {
    encoder: DeflateEncoder<Vec<u8>>,
    /// Text not yet handed to the encoder (few large writes deflate faster
    /// than many small ones).
    pending: Vec<u8>,
    crc: crc32fast::Hasher,
    len: usize,
}

/// How much text [`Deflater`] gathers before deflating it.
const DEFLATE_CHUNK: usize = 64 * 1024;

impl Deflater {
    fn new(expected: usize) -> Self {
        // The fastest level: exposition text still shrinks about tenfold,
        // and a scrape of 100,000 checks must stay cheap.
        Self {
            encoder: DeflateEncoder::new(
                Vec::with_capacity(expected / 8 + 64),
                Compression::fast(),
            ),
            pending: Vec::with_capacity(DEFLATE_CHUNK.min(expected) + 64),
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// End the deflate data: with a final block when `last`, otherwise with
    /// a sync flush.
    fn finish(mut self, last: bool) -> Piece {
        // Writing into a Vec cannot fail.
        let _ = self.encoder.write_all(&self.pending);
        let deflated = if last {
            self.encoder.finish().unwrap_or_default()
        } else {
            let _ = self.encoder.flush();
            std::mem::take(self.encoder.get_mut())
        };
        Piece {
            deflated,
            crc: self.crc,
            len: self.len,
        }
    }
}

impl std::fmt::Write for Deflater {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.crc.update(s.as_bytes());
        self.len += s.len();
        self.pending.extend_from_slice(s.as_bytes());
        if self.pending.len() >= DEFLATE_CHUNK {
            self.encoder
                .write_all(&self.pending)
                .map_err(|_| std::fmt::Error)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// The compressed checks' part of the last scrape, and what it was made of:
/// each check with the generation of its series then.
struct Cached {
    format: Format,
    /// Holding the `Arc`s keeps their addresses from being reused, so
    /// pointer equality means "the same check".
    checks: Vec<(Arc<CheckState>, u64)>,
    piece: Arc<Piece>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The `/metrics` body gzip-compressed, as the pieces to send in order (the
/// cached checks' part shared, not copied); decompressed, it is exactly
/// [`super::exposition`]'s body. Compressing 100,000 checks takes a while:
/// call it off the async runtime's workers.
pub fn exposition_gzip(
    checks: &[Arc<CheckState>],
    registry: Option<&Registry>,
    format: Format,
) -> Vec<Bytes> {
    let head = cached_checks_part(checks, format);
    let tail = Piece::new(&tail(registry, format), true);
    let mut crc = head.crc.clone();
    crc.combine(&tail.crc);
    let len = head.len + tail.len;
    let mut end = Vec::with_capacity(tail.deflated.len() + 8);
    end.extend_from_slice(&tail.deflated);
    end.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32, by the format's definition.
    end.extend_from_slice(&(len as u32).to_le_bytes());
    vec![
        // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
        Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]),
        Bytes::from_owner(Deflated(head)),
        Bytes::from(end),
    ]
}

/// The cached piece's deflate data, lent to a response body.
struct Deflated(Arc<Piece>);

impl AsRef<[u8]> for Deflated {
    fn as_ref(&self) -> &[u8] {
        &self.0.deflated
    }
}

fn cached_checks_part(checks: &[Arc<CheckState>], format: Format) -> Arc<Piece> {
    // Generations first: a series rendered after this point makes the next
    // scrape compress again, never serves stale text.
    let generations: Vec<(Arc<CheckState>, u64)> =
        checks.iter().map(|c| (c.clone(), c.generation())).collect();
    if let Ok(cache) = CACHE.lock() {
        if let Some(c) = cache.as_ref().filter(|c| same(c, &generations, format)) {
            return c.piece.clone();
        }
    }
    // Compressed without holding the lock, so a large body never makes a
    // concurrent scrape wait; the last one to finish is kept.
    let mut deflater = Deflater::new(cached_len());
    // Deflating into memory cannot fail.
    let _ = write_checks(rendered_of(checks), format, &mut deflater);
    let mut piece = deflater.finish(false);
    // Kept until the next generation: no room left over from growing.
    piece.deflated.shrink_to_fit();
    let piece = Arc::new(piece);
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some(Cached {
            format,
            checks: generations,
            piece: piece.clone(),
        });
    }
    piece
}

/// The uncompressed length of the cached part, to size the next buffers.
fn cached_len() -> usize {
    CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|c| c.piece.len))
        .unwrap_or(64 * 1024)
}

fn same(cached: &Cached, checks: &[(Arc<CheckState>, u64)], format: Format) -> bool {
    cached.format == format
        && cached.checks.len() == checks.len()
        && cached
            .checks
            .iter()
            .zip(checks)
            .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0) && a.1 == b.1)
}

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

    fn gunzip(body: &[Bytes]) -> String {
        let mut out = String::new();
        GzDecoder::new(&body.concat()[..])
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

    #[test]
    fn a_large_body_of_many_checks_round_trips_at_every_generation() {
        // Deflated in many 64 KB writes and ended with a sync flush: the
        // shape of a scrape of 1,000 checks.
        let checks: Vec<_> = (0..1000)
            .map(|i| CheckState::new(format!("gz_many_{i}"), "test", vec![]))
            .collect();
        for round in 0..20u32 {
            for (i, c) in checks.iter().enumerate() {
                let v = f64::from(round) * 1e-5 + (i as f64) * 1.37e-4;
                c.record(record(v));
            }
            let text = exposition(&checks, None, Format::Text);
            let mut deflater = Deflater::new(text.len());
            for line in text.split_inclusive('\n') {
                let _ = deflater.write_str(line);
            }
            let piece = deflater.finish(false);
            let tail = Piece::new("# tail\n", true);
            let mut raw = piece.deflated.clone();
            raw.extend_from_slice(&tail.deflated);
            let mut out = String::new();
            flate2::read::DeflateDecoder::new(&raw[..])
                .read_to_string(&mut out)
                .expect("valid deflate");
            assert!(out == format!("{text}# tail\n"), "round {round}: corrupt");
        }
    }

    /// Scrape-like text of at least `len` bytes: two series per check, with
    /// values that vary the way durations do, from a fixed seed.
    fn scrape_like(len: usize) -> String {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut text = String::with_capacity(len + 256);
        let mut i = 0;
        while text.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = write!(
                text,
                "runbook_check_duration_seconds{{check=\"tcp-{i}\",kind=\"tcp\"}} {}.{:06}\n\
                 runbook_check_up{{check=\"tcp-{i}\",kind=\"tcp\"}} {}\n",
                x % 3,
                x % 1_000_000,
                x & 1
            );
            i += 1;
        }
        text
    }

    #[test]
    fn a_sync_flushed_piece_decodes_whole_wherever_its_last_block_ends() {
        // This text fills the deflater's block buffer near 358 KB. On
        // miniz_oxide 0.9 (flate2's default backend), bodies ending there
        // had that block still being written out when the sync flush came,
        // and the flush stopped short of it and of the sync marker: 4 of
        // these 24 bodies decoded to garbage after the last full block.
        let text = scrape_like(364_000);
        for len in (352_000..364_000).step_by(500) {
            let body = &text[..text[..len].rfind('\n').map_or(0, |i| i + 1)];
            let mut deflater = Deflater::new(body.len());
            for line in body.split_inclusive('\n') {
                let _ = deflater.write_str(line);
            }
            let mut raw = deflater.finish(false).deflated;
            raw.extend_from_slice(&Piece::new("# tail\n", true).deflated);
            let mut out = String::new();
            let decoded = flate2::read::DeflateDecoder::new(&raw[..]).read_to_string(&mut out);
            assert!(
                decoded.is_ok() && out.len() == body.len() + 7 && out.starts_with(body),
                "a body of {} bytes: {decoded:?}, {} bytes decoded",
                body.len(),
                out.len()
            );
        }
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
