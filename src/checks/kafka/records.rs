//! The timestamp of the message at an offset, read from the record batches
//! of a Fetch answer: the next message a group will consume, for lag in
//! seconds.
//!
//! A complete batch is decoded (CRC checked; gzip and snappy batches
//! decompressed) and the first record at or after the offset gives the
//! time. A batch that could not be decoded (lz4 or zstd, which this build
//! does not decompress) or that the broker cut short at the size limit
//! still has its header: its first timestamp (or, for `LogAppendTime`
//! topics, the one timestamp of all its records). That is never later than
//! the message's own, so the lag in seconds can only be overstated, by at
//! most the time the producer spent filling that batch.

use bytes::{Buf, Bytes};
use kafka_protocol::records::RecordBatchDecoder;

/// Size of a v2 batch header, up to and including its record count.
const HEADER: usize = 61;

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

/// The timestamp in milliseconds of the first non-control record at or
/// after `offset` in `records`, if the data reaches that far.
pub(super) fn timestamp_at(records: &Bytes, offset: i64) -> Option<i64> {
    let mut rest = records.clone();
    while rest.len() >= HEADER {
        let b = rest.chunk();
        let base = i64_at(b, 0);
        let len = i32_at(b, 8);
        let magic = b[16] as i8;
        if len < 0 || magic != 2 {
            return None;
        }
        let attributes = i16::from_be_bytes([b[21], b[22]]);
        let last = base + i64::from(i32_at(b, 23));
        let control = attributes & (1 << 5) != 0;
        let log_append_time = attributes & (1 << 3) != 0;
        let header_time = if log_append_time {
            i64_at(b, 35)
        } else {
            i64_at(b, 27)
        };
        let total = 12 + len as usize;
        if last < offset || control {
            if rest.len() < total {
                return None;
            }
            rest.advance(total);
            continue;
        }
        if rest.len() < total {
            // Cut short at the size limit: the header is all there is.
            return Some(header_time);
        }
        let mut batch = rest.slice(..total);
        match RecordBatchDecoder::decode(&mut batch) {
            Ok(set) => {
                if let Some(r) = set.records.iter().find(|r| r.offset >= offset) {
                    return Some(r.timestamp);
                }
            }
            Err(e) => {
                tracing::debug!("record batch not decoded ({e}); using its header's timestamp");
                return Some(header_time);
            }
        }
        rest.advance(total);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: IndexMap::new(),
        }
    }

    fn batch(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        buf.freeze()
    }

    #[test]
    fn finds_the_record_at_the_offset_inside_a_batch() {
        let records: Vec<Record> = (10..20).map(|o| record(o, 1000 + o)).collect();
        let data = batch(&records, Compression::None);
        assert_eq!(timestamp_at(&data, 13), Some(1013));
        assert_eq!(timestamp_at(&data, 10), Some(1010));
        assert_eq!(timestamp_at(&data, 20), None);
        // gzip is decoded too.
        let data = batch(&records, Compression::Gzip);
        assert_eq!(timestamp_at(&data, 17), Some(1017));
    }

    #[test]
    fn a_cut_batch_gives_its_header_time_and_garbage_gives_none() {
        let records: Vec<Record> = (0..50).map(|o| record(o, 5000 + o)).collect();
        let data = batch(&records, Compression::None);
        let cut = data.slice(..HEADER + 3);
        assert_eq!(timestamp_at(&cut, 30), Some(5000));
        assert_eq!(timestamp_at(&Bytes::from_static(&[0xff; 80]), 0), None);
        assert_eq!(timestamp_at(&Bytes::new(), 0), None);
    }
}
