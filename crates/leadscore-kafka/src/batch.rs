//! Output records queued through topic handles the sink keeps, instead of
//! rdkafka's `send`, which is one `rd_kafka_producev` per record: that call
//! makes a C string of the topic name, looks the topic up under the client's
//! write lock (which librdkafka's own threads take too) and reads the clock
//! twice, for every record.
//!
//! Runs of records without headers go in one batch call
//! (`rd_kafka_produce_batch`), which takes the topic's lock once and reads the
//! clock once for the whole run. The batch call carries no headers, so records
//! with headers (dead letters, epoch-stamped changelog records) and checkpoint
//! markers go one at a time through `rd_kafka_produceva` with the same
//! handle, in their place in their topic's order.

use leadscore_pipeline::{OutputRecord, OutputTopic};
use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::ffi::{c_void, CString};
use std::time::Duration;

/// The largest record (key and value) queued by a batch call: far below the
/// smallest `message.max.bytes` leadscore accepts for its producer
/// (`client::producer_message_max_bytes`), so librdkafka never refuses a
/// batched record for its size. Larger records go one at a time, where a
/// refusal stops the send at that record.
pub const MAX_BATCHED_BYTES: usize = 64 * 1024;

/// librdkafka's `RD_KAFKA_PARTITION_UA`: let the configured partitioner choose.
const UNASSIGNED: i32 = -1;

/// Whether `r` may be queued by a batch call.
pub fn batchable(r: &OutputRecord) -> bool {
    let size = r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len);
    r.headers.is_empty() && !r.is_checkpoint_marker() && size <= MAX_BATCHED_BYTES
}

/// How many records of a batch call were queued when it stopped at a record
/// librdkafka refused, and why it refused it.
#[derive(Debug)]
pub struct Refused {
    /// Records of the run queued (they will be delivered or fail as usual);
    /// not necessarily a prefix of the run.
    pub queued: usize,
    pub error: KafkaError,
}

/// One librdkafka topic handle per output topic, opened on first use, the
/// batch call's reused message array, and header names as C strings. It
/// belongs to one producer: every call passes the same `rk`, and the owner
/// drops it before that producer.
pub struct Batcher {
    handles: [*mut rd::rd_kafka_topic_t; 4],
    messages: Vec<rd::rd_kafka_message_t>,
    header_names: Vec<(&'static str, CString)>,
    /// The one-at-a-time call's reused argument list.
    vus: Vec<rd::rd_kafka_vu_t>,
}

// SAFETY: librdkafka's topic handles may be used from any thread; the
// reused argument arrays hold pointers into records that are read only during
// the call that filled them (each call clears them before filling).
unsafe impl Send for Batcher {}

fn slot(topic: OutputTopic) -> usize {
    match topic {
        OutputTopic::ScoreChanges => 0,
        OutputTopic::Transitions => 1,
        OutputTopic::DeadLetters => 2,
        OutputTopic::Changelog => 3,
    }
}

fn message(r: &OutputRecord, opaque: usize) -> rd::rd_kafka_message_t {
    // librdkafka copies key and value (RD_KAFKA_MSG_F_COPY) and only reads
    // them: the casts to mutable pointers are its C signature's.
    let (key, key_len) = r.key.as_ref().map_or((std::ptr::null_mut(), 0), |k| (k.as_ptr() as *mut c_void, k.len()));
    let (payload, len) = r.value.as_ref().map_or((std::ptr::null_mut(), 0), |v| (v.as_ptr() as *mut c_void, v.len()));
    rd::rd_kafka_message_t {
        err: rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
        rkt: std::ptr::null_mut(),
        partition: r.partition.map_or(UNASSIGNED, |p| p as i32),
        payload,
        len,
        key,
        key_len,
        offset: 0,
        _private: opaque as *mut c_void,
    }
}

impl Batcher {
    pub fn new() -> Batcher {
        Batcher { handles: [std::ptr::null_mut(); 4], messages: Vec::new(), header_names: Vec::new(), vus: Vec::new() }
    }

    /// The handle of `topic` on `rk`, opened the first time.
    fn handle(
        &mut self,
        rk: *mut rd::rd_kafka_t,
        topic: OutputTopic,
        name: &str,
    ) -> Result<*mut rd::rd_kafka_topic_t, KafkaError> {
        let at = &mut self.handles[slot(topic)];
        if at.is_null() {
            let name =
                CString::new(name).map_err(|_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument))?;
            // SAFETY: `rk` is the live producer's handle; `name` outlives the
            // call, which copies it. The handle is destroyed in `drop`, which
            // the sink runs before it drops the producer.
            let handle = unsafe { rd::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
            if handle.is_null() {
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument));
            }
            *at = handle;
        }
        Ok(*at)
    }

    /// Queues `records` (all for `topic`, all [`batchable`]) in order, each
    /// with `opaque` for its delivery report, and says how many; a record
    /// without a partition goes where the producer's partitioner puts it.
    /// While librdkafka's queue is full it waits and queues the rest.
    pub fn produce<'r>(
        &mut self,
        rk: *mut rd::rd_kafka_t,
        topic: OutputTopic,
        name: &str,
        records: impl Iterator<Item = &'r OutputRecord>,
        opaque: usize,
    ) -> Result<usize, Refused> {
        self.messages.clear();
        self.messages.extend(records.map(|r| message(r, opaque)));
        if self.messages.is_empty() {
            return Ok(0);
        }
        let handle = self.handle(rk, topic, name).map_err(|error| Refused { queued: 0, error })?;
        let mut queued = 0;
        let mut start = 0;
        while start < self.messages.len() {
            let rest = &mut self.messages[start..];
            // SAFETY: `handle` is open on the live producer; every message
            // points into a record borrowed for the whole of this call, and
            // librdkafka copies what it keeps (RD_KAFKA_MSG_F_COPY).
            let good = unsafe {
                rd::rd_kafka_produce_batch(
                    handle,
                    UNASSIGNED,
                    rd::RD_KAFKA_MSG_F_COPY | rd::RD_KAFKA_MSG_F_PARTITION,
                    rest.as_mut_ptr(),
                    rest.len() as i32,
                )
            };
            queued += good.max(0) as usize;
            // After a full queue librdkafka gives every later record of the
            // call the same error without trying it; any other refusal is of
            // that record alone (the ones after it were tried, and `good`
            // counts those taken).
            let mut full = None;
            for (i, m) in rest.iter().enumerate() {
                match m.err {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {}
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL => {
                        full = Some(i);
                        break;
                    }
                    err => {
                        let error = KafkaError::MessageProduction(RDKafkaErrorCode::from(err));
                        return Err(Refused { queued, error });
                    }
                }
            }
            match full {
                None => break,
                Some(i) => {
                    start += i;
                    // Deliveries make room (the producer's own thread serves them).
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.messages.clear();
        Ok(queued)
    }
}

impl Batcher {
    /// `name` as a C string (header names are a handful of constants).
    fn header_name(&mut self, name: &'static str) -> Result<*const std::ffi::c_char, KafkaError> {
        if let Some((_, c)) = self.header_names.iter().find(|(n, _)| *n == name) {
            return Ok(c.as_ptr());
        }
        let c = CString::new(name).map_err(|_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument))?;
        let ptr = c.as_ptr();
        self.header_names.push((name, c));
        Ok(ptr)
    }

    /// Queues one record for `topic` (any record: headers, a partition, a
    /// checkpoint marker) with `opaque` for its delivery report, waiting
    /// while librdkafka's queue is full.
    pub fn produce_one(
        &mut self,
        rk: *mut rd::rd_kafka_t,
        topic: OutputTopic,
        name: &str,
        r: &OutputRecord,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        use rd::rd_kafka_vtype_t as V;
        type U = rd::rd_kafka_vu_s__bindgen_ty_1;
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        let mem = |b: &[u8]| U {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: b.as_ptr() as *mut c_void, size: b.len() },
        };
        let handle = self.handle(rk, topic, name)?;
        let mut vus = std::mem::take(&mut self.vus);
        vus.clear();
        vus.push(vu(V::RD_KAFKA_VTYPE_RKT, U { rkt: handle }));
        vus.push(vu(V::RD_KAFKA_VTYPE_MSGFLAGS, U { i: rd::RD_KAFKA_MSG_F_COPY }));
        vus.push(vu(V::RD_KAFKA_VTYPE_OPAQUE, U { ptr: opaque as *mut c_void }));
        if let Some(k) = &r.key {
            vus.push(vu(V::RD_KAFKA_VTYPE_KEY, mem(k)));
        }
        if let Some(v) = &r.value {
            vus.push(vu(V::RD_KAFKA_VTYPE_VALUE, mem(v)));
        }
        if let Some(p) = r.partition {
            vus.push(vu(V::RD_KAFKA_VTYPE_PARTITION, U { i32_: p as i32 }));
        }
        for (k, v) in &r.headers {
            let name = match self.header_name(k) {
                Ok(name) => name,
                Err(e) => {
                    self.vus = vus;
                    return Err(e);
                }
            };
            let header = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                name,
                val: v.as_ptr() as *const c_void,
                size: v.len() as isize,
            };
            vus.push(vu(V::RD_KAFKA_VTYPE_HEADER, U { header }));
        }
        let result = queue_one(rk, &vus);
        // Kept for the next record; its pointers are not used again.
        self.vus = vus;
        result
    }
}

/// `rd_kafka_produceva` of `vus`, waiting while librdkafka's queue is full.
fn queue_one(rk: *mut rd::rd_kafka_t, vus: &[rd::rd_kafka_vu_t]) -> Result<(), KafkaError> {
    loop {
        // SAFETY: the topic handle in `vus` is open on the live producer
        // `rk`; every pointer in `vus` (record bytes, header names) outlives
        // the call, and librdkafka copies what it keeps (RD_KAFKA_MSG_F_COPY;
        // headers are copied into a list of its own).
        let error = unsafe { rd::rd_kafka_produceva(rk, vus.as_ptr(), vus.len()) };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null error from librdkafka, destroyed once, here.
        let code = unsafe {
            let code = rd::rd_kafka_error_code(error);
            rd::rd_kafka_error_destroy(error);
            code
        };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL {
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(code)));
        }
        // Deliveries make room (the producer's own thread serves them).
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher::new()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        for handle in self.handles {
            if !handle.is_null() {
                // SAFETY: opened by `handle` on a producer that is still live
                // (see `handle`), and destroyed once.
                unsafe { rd::rd_kafka_topic_destroy(handle) };
            }
        }
    }
}
