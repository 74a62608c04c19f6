//! The service's records between the consumer and the engine: received from Kafka into batches
//! (one buffer per batch, no allocation per record), decoded on the consumer loop or, for a
//! backlog, on a pool of worker threads that hands them back in the order they were received.
//!
//! Decoding is most of a record's cost (the typed JSON parse and the secret scan); the engine and
//! the rebalance callbacks stay on the consumer loop, so identities are still changed in offset
//! order by one thread, and a batch in the pool never sees a rebalance half done.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::decode::{self, DecodeError, Decoded, FormatHint};
use crate::event::{AccessEvent, RawRef};

/// Records per batch, and payload bytes at most: enough to pay for the hand-over between
/// threads, small enough that a full batch is about a millisecond of decoding.
pub const BATCH_RECORDS: usize = 256;
pub const BATCH_BYTES: usize = 1 << 20;

/// What a record is read as: its input's declarations, or for a record of the repartition
/// topic, its headers'.
#[derive(Debug, Clone)]
pub struct RecordSource {
    /// Input topic (shared with every record of it).
    pub topic: Arc<str>,
    pub format: FormatHint,
    /// The Kubernetes cluster the input declares.
    pub cluster: Option<Arc<str>>,
    /// Keep every element's bytes, accepted or not: the record's events are re-produced to the
    /// repartition topic.
    pub keep_elements: bool,
    /// For a repartitioned record, where its event was first read: its events cite that
    /// position, not the repartition topic's.
    pub first_read: Option<FirstRead>,
}

impl RecordSource {
    /// A record of an input as declared.
    pub fn input(topic: Arc<str>, format: FormatHint, cluster: Option<Arc<str>>) -> RecordSource {
        RecordSource {
            topic,
            format,
            cluster,
            keep_elements: false,
            first_read: None,
        }
    }
}

/// Where a repartitioned event was first read: its input topic, offset and element index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRead {
    pub topic: Arc<str>,
    pub offset: u64,
    pub element: Option<u32>,
}

/// One record as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub source: RecordSource,
    pub partition: i32,
    pub offset: i64,
    pub received: Instant,
    /// The partition table's generation when the record was received: a record whose
    /// partition was assigned again since belongs to the earlier assignment and is dropped.
    pub generation: u64,
    key: Option<Range<usize>>,
    payload: Range<usize>,
    /// Its decoded elements within the batch's `elements`.
    elements: Range<usize>,
}

/// One decoded element of a record (a record that is not a container has one).
#[derive(Debug)]
pub struct Element {
    pub raw: RawRef,
    pub result: Result<Decoded, DecodeError>,
    /// The element's bytes, which a dead letter carries.
    bytes: ElementBytes,
}

/// Where an element's bytes are.
#[derive(Debug)]
enum ElementBytes {
    /// Within the batch's buffer (a slice of the record's payload).
    Within(Range<usize>),
    /// Copied, for a rejected element the decoder found in an expanded or unescaped envelope
    /// (gzip, a CloudWatch Logs message), which is in no buffer of ours.
    Copied(Vec<u8>),
    /// Decoded from outside the buffer and accepted: no dead letter will need them.
    Unused,
}

/// Records received together, decoded together.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    records: Vec<Received>,
    elements: Vec<Element>,
    /// The pool worker that decoded it (`None`: decoded on the consumer loop).
    worker: Option<usize>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// This batch emptied for the next records, its buffers kept (a fresh buffer grows by
    /// doubling to a batch's size, past glibc's threshold for mapping pages of its own); `None`
    /// when an oversized record left it larger than batches usually need.
    pub fn emptied(mut self) -> Option<Batch> {
        if self.data.capacity() > 2 * BATCH_BYTES {
            return None;
        }
        self.data.clear();
        self.records.clear();
        self.elements.clear();
        self.worker = None;
        Some(self)
    }

    /// The pool worker that decoded this batch (`None`: decoded where it was received).
    pub fn decoded_by(&self) -> Option<usize> {
        self.worker
    }

    /// True when no more records should join the batch.
    pub fn is_full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS || self.data.len() >= BATCH_BYTES
    }

    /// Adds a received record (its key and payload are copied into the batch's buffer).
    pub fn push(
        &mut self,
        source: RecordSource,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        generation: u64,
    ) {
        let key = key.map(|k| {
            let start = self.data.len();
            self.data.extend_from_slice(k);
            start..self.data.len()
        });
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.records.push(Received {
            source,
            partition,
            offset,
            received: Instant::now(),
            generation,
            key,
            payload: start..self.data.len(),
            elements: 0..0,
        });
    }

    /// Decodes every record (on a pool thread).
    pub fn decode(&mut self) {
        let data = &self.data;
        let base = data.as_ptr() as usize;
        let elements = &mut self.elements;
        for rec in &mut self.records {
            let first = elements.len();
            let src = &rec.source;
            // A repartitioned record is one event: it keeps its first position, element included.
            let raw = match &src.first_read {
                Some(f) => RawRef {
                    source: f.topic.clone(),
                    position: f.offset,
                    element: f.element,
                },
                None => RawRef::new(src.topic.clone(), rec.offset.max(0) as u64),
            };
            let keep = src.keep_elements;
            decode::decode_record(
                &data[rec.payload.clone()],
                src.format,
                src.cluster.as_deref(),
                &raw,
                &mut |bytes, at, result| {
                    // Elements are slices of the record's payload, so of the buffer.
                    let start = (bytes.as_ptr() as usize).wrapping_sub(base);
                    let within = start >= rec.payload.start
                        && start.saturating_add(bytes.len()) <= rec.payload.end;
                    let bytes = if within {
                        ElementBytes::Within(start..start + bytes.len())
                    } else if keep || result.is_err() {
                        ElementBytes::Copied(bytes.to_vec())
                    } else {
                        ElementBytes::Unused
                    };
                    elements.push(Element {
                        raw: at.clone(),
                        result,
                        bytes,
                    });
                },
            );
            rec.elements = first..elements.len();
        }
    }

    /// The records in the order received, each with its decoded elements.
    pub fn drain(&mut self) -> impl Iterator<Item = DecodedRecord<'_>> {
        let data = &self.data;
        let mut elements = self.elements.drain(..);
        self.records.drain(..).map(move |rec| {
            let n = rec.elements.len();
            let payload = &data[rec.payload.clone()];
            let key = rec.key.clone().map(|k| &data[k]);
            DecodedRecord {
                elements: elements
                    .by_ref()
                    .take(n)
                    .map(|e| {
                        let bytes = match e.bytes {
                            ElementBytes::Within(r) => Cow::Borrowed(&data[r]),
                            ElementBytes::Copied(b) => Cow::Owned(b),
                            ElementBytes::Unused => Cow::Borrowed(payload),
                        };
                        (e.result, e.raw, bytes)
                    })
                    .collect(),
                payload,
                key,
                rec,
            }
        })
    }
}

/// A record of a decoded batch: where it came from, its bytes, and its elements' results with
/// their positions and bytes.
pub struct DecodedRecord<'b> {
    pub rec: Received,
    pub key: Option<&'b [u8]>,
    pub payload: &'b [u8],
    pub elements: Vec<DecodedElement<'b>>,
}

impl DecodedRecord<'_> {
    /// Moves the record's events into `into` (to be freed where they were allocated, see
    /// [`DecodePool::free`]).
    #[allow(clippy::vec_box)]
    pub fn take_events(&mut self, into: &mut Vec<Box<AccessEvent>>) {
        for (result, _, _) in self.elements.drain(..) {
            if let Ok(Decoded::Event(e)) = result {
                into.push(e);
            }
        }
    }
}

/// One element of a decoded record: its result, where it is, and its bytes.
pub type DecodedElement<'b> = (Result<Decoded, DecodeError>, RawRef, Cow<'b, [u8]>);

type Job = (Batch, oneshot::Sender<Batch>);

/// Events processed, to be freed by the worker that decoded them.
#[allow(clippy::vec_box)]
type Spent = Vec<Box<AccessEvent>>;

/// Worker threads that decode batches; each batch comes back on its own channel, so the
/// consumer loop awaits them in the order it submitted them.
///
/// The events of a batch are best freed by the worker that decoded them (see
/// [`DecodePool::free`]): glibc's allocator (the library's default; the binary uses jemalloc)
/// returns a block freed on another thread to its owner's arena under a lock and never refills
/// the owner's own cache, so a worker whose events are all freed elsewhere makes every
/// allocation on the allocator's slow path. Under jemalloc the binary measured the same with or
/// without this (2026-12-04, within noise).
pub struct DecodePool {
    jobs: Option<Sender<Job>>,
    spent: Vec<Sender<Spent>>,
    workers: Vec<JoinHandle<()>>,
}

impl DecodePool {
    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Starts `threads` workers (at least one).
    pub fn new(threads: usize) -> DecodePool {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut spent = Vec::new();
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let (spent_tx, spent_rx) = channel::<Spent>();
                spent.push(spent_tx);
                std::thread::Builder::new()
                    .name(format!("decode-{i}"))
                    .spawn(move || work(i, &rx, &spent_rx))
                    .expect("spawning a decode thread")
            })
            .collect();
        DecodePool {
            jobs: Some(tx),
            spent,
            workers,
        }
    }

    /// One worker per core.
    pub fn per_core() -> DecodePool {
        DecodePool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Frees the events of a batch `decoded_by` a worker on that worker, before its next batch
    /// (or here, when the batch was decoded here or the worker is gone).
    #[allow(clippy::vec_box)]
    pub fn free(&self, decoded_by: Option<usize>, events: Vec<Box<AccessEvent>>) {
        if let Some(tx) = decoded_by.and_then(|w| self.spent.get(w))
            && !events.is_empty()
        {
            let _ = tx.send(events);
        }
    }

    /// Hands a batch to the workers; it comes back decoded on the returned channel.
    pub fn submit(&self, batch: Batch) -> oneshot::Receiver<Batch> {
        let (done, decoded) = oneshot::channel();
        if let Some(jobs) = &self.jobs {
            // Fails only when every worker is gone (a panic): the receiver then reports it.
            let _ = jobs.send((batch, done));
        }
        decoded
    }
}

fn work(worker: usize, jobs: &Mutex<Receiver<Job>>, spent: &Receiver<Spent>) {
    loop {
        // The events processed since, freed before the next batch's are allocated.
        while let Ok(events) = spent.try_recv() {
            drop(events);
        }
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((mut batch, done)) = job else { return };
        batch.decode();
        batch.worker = Some(worker);
        let _ = done.send(batch);
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(payloads: &[&str]) -> Batch {
        let mut b = Batch::new();
        let topic: Arc<str> = Arc::from("in");
        for (i, p) in payloads.iter().enumerate() {
            let key = format!("k{i}");
            b.push(
                RecordSource::input(topic.clone(), FormatHint::Auto, None),
                3,
                100 + i as i64,
                Some(key.as_bytes()),
                p.as_bytes(),
                7,
            );
        }
        b
    }

    const EVENT: &str = r#"{"time":"2026-01-01T00:00:00Z","principal":{"key":"svc-a"},"action":"s3:GetObject","origin":{"ip":"10.0.0.1"}}"#;

    #[test]
    fn records_come_back_in_order_with_their_keys_payloads_and_elements() {
        let pool = DecodePool::new(2);
        let container = format!("[{EVENT}, 42, {EVENT}]");
        let pending: Vec<_> = (0..20)
            .map(|_| pool.submit(batch_of(&[EVENT, "not json", &container])))
            .collect();
        for rx in pending {
            let mut b = rx.blocking_recv().expect("decoded");
            let recs: Vec<_> = b.drain().collect();
            assert_eq!(recs.len(), 3);
            assert_eq!(
                recs.iter().map(|r| r.rec.offset).collect::<Vec<_>>(),
                [100, 101, 102]
            );
            assert_eq!(recs[1].key, Some(&b"k1"[..]));
            assert_eq!(recs[1].payload, b"not json");
            assert!(recs[0].elements[0].0.is_ok());
            assert!(recs[1].elements[0].0.is_err());
            let c = &recs[2];
            assert_eq!(c.elements.len(), 3);
            assert!(c.elements[0].0.is_ok() && c.elements[2].0.is_ok());
            // A bad element of a container keeps its own bytes and index, for its dead letter.
            assert!(c.elements[1].0.is_err());
            assert_eq!(&*c.elements[1].2, b"42");
            assert_eq!(c.elements[1].1.element, Some(1));
            assert_eq!(c.rec.generation, 7);
        }
    }

    #[test]
    fn an_emptied_batch_holds_only_the_records_pushed_after() {
        let mut b = batch_of(&[EVENT, "not json"]);
        b.decode();
        assert_eq!(b.drain().count(), 2);
        let capacity = b.data.capacity();
        let mut b = b.emptied().expect("a batch of usual size is kept");
        assert!(b.is_empty() && b.data.capacity() == capacity);
        b.push(
            RecordSource::input(Arc::from("in"), FormatHint::Auto, None),
            1,
            9,
            Some(b"k"),
            b"{}",
            3,
        );
        b.decode();
        let recs: Vec<_> = b.drain().collect();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].rec.offset, recs[0].key, recs[0].payload),
            (9, Some(&b"k"[..]), &b"{}"[..])
        );
        assert_eq!(recs[0].elements.len(), 1);
        drop(recs);
        // One oversized record must not keep its buffer for every later batch.
        let mut big = Batch::new();
        let payload = vec![b' '; 3 * BATCH_BYTES];
        big.push(
            RecordSource::input(Arc::from("in"), FormatHint::Auto, None),
            0,
            0,
            None,
            &payload,
            0,
        );
        assert!(big.emptied().is_none());
    }

    #[test]
    fn a_batch_names_the_worker_that_decoded_it_and_its_events_go_back_to_it() {
        let pool = DecodePool::new(2);
        let container = format!("[{EVENT}, 42, {EVENT}]");
        let mut b = pool
            .submit(batch_of(&[EVENT, "not json", &container]))
            .blocking_recv()
            .expect("decoded");
        let worker = b.decoded_by().expect("decoded by a pool worker");
        assert!(worker < pool.threads());
        let mut spent = Vec::new();
        for mut r in b.drain() {
            r.take_events(&mut spent);
            assert!(r.elements.is_empty());
        }
        // The events only: the bad record and the bad element are no events.
        assert_eq!(spent.len(), 3);
        pool.free(Some(worker), spent);
        // The worker frees them before its next batch, which it decodes as usual.
        let mut again = pool
            .submit(batch_of(&[EVENT]))
            .blocking_recv()
            .expect("decoded");
        assert_eq!(again.drain().count(), 1);
        // Decoded where received: nothing to hand back; a worker that does not exist is no
        // error either.
        let mut here = batch_of(&[EVENT]);
        here.decode();
        assert_eq!(here.decoded_by(), None);
        pool.free(Some(99), Vec::new());
        let recycled = again.emptied().expect("kept");
        assert_eq!(recycled.decoded_by(), None);
    }

    #[test]
    fn a_bad_element_found_inside_a_compressed_envelope_keeps_its_own_bytes() {
        use std::io::Write;
        let cw = format!(
            r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/x/cluster","logEvents":[{{"message":"not json"}},{{"message":{}}}]}}"#,
            serde_json::to_string(EVENT).unwrap()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(cw.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut b = Batch::new();
        b.push(
            RecordSource::input(Arc::from("in"), FormatHint::Auto, None),
            0,
            5,
            None,
            &gz,
            0,
        );
        b.decode();
        let recs: Vec<_> = b.drain().collect();
        let e = &recs[0].elements;
        assert_eq!(e.len(), 2);
        // The dead letter of the bad log event is that event, not the whole compressed batch.
        assert!(e[0].0.is_err());
        assert_eq!(&*e[0].2, b"not json");
        assert_eq!(e[0].1.element, Some(0));
        assert!(e[1].0.is_ok());
    }

    #[test]
    fn a_batch_closes_at_its_record_or_byte_limit() {
        let mut b = Batch::new();
        let src = RecordSource::input(Arc::from("in"), FormatHint::Auto, None);
        while !b.is_full() {
            b.push(src.clone(), 0, 0, None, b"{}", 0);
        }
        assert_eq!(b.len(), BATCH_RECORDS);
        let mut b = Batch::new();
        let big = vec![b' '; BATCH_BYTES / 2];
        b.push(src.clone(), 0, 0, None, &big, 0);
        assert!(!b.is_full());
        b.push(src, 0, 1, None, &big, 0);
        assert!(b.is_full());
    }
}
