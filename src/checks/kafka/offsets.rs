//! The librdkafka calls the safe `rdkafka` API does not wrap: committed
//! offsets of consumer groups (`ListConsumerGroupOffsets`), and emptying the
//! main event queue of the admin handle.
//!
//! All groups are requested at once on one queue (one OffsetFetch per group,
//! sent to each group's coordinator in parallel), and the answers are
//! collected until the deadline. With no partitions given, the broker returns
//! every partition the group has a committed offset for.

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Instant;

use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::ClientContext;

/// One group's committed offsets: `(topic, partition) → offset`. Partitions
/// whose entry carries an error or no offset are left out.
pub type Committed = HashMap<(String, i32), i64>;

/// Fetch the committed offsets of `groups`, each answer or error keyed by
/// the group's name. Groups with no answer before `deadline` are missing.
pub fn list_committed<C: ClientContext>(
    client: &Client<C>,
    groups: &[String],
    deadline: Instant,
) -> HashMap<String, Result<Committed, String>> {
    let mut out = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let names: Vec<CString> = match groups
        .iter()
        .map(|g| CString::new(g.as_str()))
        .collect::<Result<_, _>>()
    {
        Ok(names) => names,
        Err(_) => {
            for g in groups {
                out.insert(g.clone(), Err("group name contains a NUL byte".to_string()));
            }
            return out;
        }
    };
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live handle owned by `client`, which outlives this
    // function. Every object created here is destroyed before returning; the
    // request objects are copied by librdkafka when enqueued.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
        );
        let mut errstr = [0 as c_char; 512];
        let timeout_ms = millis_until(deadline).max(1);
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        for (i, name) in names.iter().enumerate() {
            // The opaque carries the group's index back with its event.
            rd::rd_kafka_AdminOptions_set_opaque(options, i as *mut c_void);
            let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), ptr::null());
            rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request, 1, options, queue);
            rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
        }
        let mut pending = groups.len();
        while pending > 0 {
            let left = millis_until(deadline);
            if left <= 0 {
                break;
            }
            let event = rd::rd_kafka_queue_poll(queue, left);
            if event.is_null() {
                continue;
            }
            let index = rd::rd_kafka_event_opaque(event) as usize;
            if let Some(group) = groups.get(index) {
                pending -= 1;
                out.insert(group.clone(), read_event(event));
            }
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
    }
    out
}

/// Milliseconds from now until `deadline`, saturating at 0.
fn millis_until(deadline: Instant) -> i32 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32
}

/// The result of one ListConsumerGroupOffsets event (one group).
///
/// # Safety
/// `event` must be a live event from a ListConsumerGroupOffsets request.
unsafe fn read_event(event: *mut rd::rd_kafka_event_t) -> Result<Committed, String> {
    if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(c_string(rd::rd_kafka_event_error_string(event)));
    }
    let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
    if result.is_null() {
        return Err("unexpected event type".to_string());
    }
    let mut count = 0usize;
    let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
    let mut committed = Committed::new();
    for i in 0..count {
        let group = *groups.add(i);
        let error = rd::rd_kafka_group_result_error(group);
        if !error.is_null() {
            return Err(c_string(rd::rd_kafka_error_string(error)));
        }
        let list = rd::rd_kafka_group_result_partitions(group);
        if list.is_null() {
            continue;
        }
        for j in 0..(*list).cnt.max(0) as usize {
            let elem = &*(*list).elems.add(j);
            if elem.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || elem.offset < 0
                || elem.topic.is_null()
            {
                continue;
            }
            committed.insert((c_string(elem.topic), elem.partition), elem.offset);
        }
    }
    Ok(committed)
}

/// Copy a C string from librdkafka; empty for null.
///
/// # Safety
/// `s` must be null or a valid NUL-terminated string.
unsafe fn c_string(s: *const c_char) -> String {
    if s.is_null() {
        String::new()
    } else {
        CStr::from_ptr(s).to_string_lossy().into_owned()
    }
}

/// Drop the events (logs, errors) waiting on the main queue of a handle that
/// nothing else polls, so the queue does not grow while brokers are down.
pub fn discard_main_queue<C: ClientContext>(client: &Client<C>) {
    // SAFETY: the handle is live for the call; the queue reference and each
    // polled event are released here.
    unsafe {
        let queue = rd::rd_kafka_queue_get_main(client.native_ptr());
        loop {
            let event = rd::rd_kafka_queue_poll(queue, 0);
            if event.is_null() {
                break;
            }
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
    }
}
