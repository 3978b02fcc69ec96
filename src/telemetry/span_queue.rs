//! The queue between the threads that end spans and the OTLP exporter.
//!
//! A span is encoded where it ends (see `span_encode`) and queued as bytes; the export thread
//! frames a batch of them into one request and hands it to a [`BatchSender`].
//!
//! Bounded, like the SDK's batch processor, but when it is full the *oldest* span is dropped (and
//! counted), not the one just ended: after an outage the newest spans, the ones a user is looking
//! at, are what gets delivered. Reads the spec's `OTEL_BSP_MAX_QUEUE_SIZE`,
//! `OTEL_BSP_SCHEDULE_DELAY` and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; a full batch goes out at once,
//! without waiting for the delay, so at a steady high rate the queue holds about one batch.
//!
//! It counts every span it was given and where each went (exported, dropped from the full
//! queue, lost with a failed batch) and logs the totals at shutdown, so a benchmark can check
//! that spans exported equal spans created.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::span_encode::{
    EncodedResource, EncodedScope, EncodedSpan, Scopes, encode_request, encode_span,
};

/// Where the queue's batches go: the OTLP client, in the service.
pub trait BatchSender: Send + 'static {
    /// Sends one encoded `ExportTraceServiceRequest` of `spans` spans, blocking the export
    /// thread until it is delivered or given up on; reports its own failures.
    fn send(&mut self, request: Bytes, spans: usize) -> Result<(), ()>;

    /// The queue stops: nothing more will be sent.
    fn shutdown(&mut self) {}
}

/// Queue bound, batch size and export period.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    max_queue_size: usize,
    max_export_batch_size: usize,
    scheduled_delay: Duration,
}

impl QueueConfig {
    /// The spec's `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
    /// `OTEL_BSP_SCHEDULE_DELAY`; a batch is never larger than the queue.
    pub fn new(max_queue_size: usize, max_export_batch_size: usize, delay: Duration) -> Self {
        QueueConfig {
            max_queue_size,
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
            scheduled_delay: delay,
        }
    }
}

/// A batching span processor that drops the oldest spans when its queue is full.
#[derive(Debug)]
pub struct OldestFirstBatch {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    config: QueueConfig,
    state: Mutex<State>,
    changed: Condvar,
    resource: Mutex<EncodedResource>,
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Where the spans given to the queue went, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueTotals {
    /// Spans ended and queued (before shutdown).
    pub ended: u64,
    /// Spans in batches the exporter accepted.
    pub exported: u64,
    /// Spans in batches the exporter failed.
    pub failed: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<EncodedSpan>,
    /// The scopes the queued spans name by index.
    scopes: Scopes,
    /// Flushes asked for, and how many of them the worker has completed.
    flush_requested: u64,
    flush_done: u64,
    shutdown: bool,
    stopped: bool,
}

impl OldestFirstBatch {
    /// Starts the export thread, which owns `sender`.
    pub fn new(sender: impl BatchSender, config: QueueConfig) -> Self {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::default(),
            changed: Condvar::new(),
            resource: Mutex::default(),
            ended: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("span-export".into())
                .spawn(move || shared.run(sender))
                .ok()
        };
        OldestFirstBatch {
            shared,
            worker: Mutex::new(worker),
        }
    }

    /// Where the spans went so far.
    pub fn totals(&self) -> QueueTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueueTotals {
            ended: get(&self.shared.ended),
            exported: get(&self.shared.exported),
            failed: get(&self.shared.failed),
            dropped: get(&self.shared.dropped),
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Export a batch when one is full, the delay has passed, or a flush or shutdown asks.
    fn run(&self, mut sender: impl BatchSender) {
        loop {
            let (batch, scopes, flush_target, shutdown) = self.next_batch();
            if !batch.is_empty() {
                let n = batch.len();
                let resource = self.resource.lock().unwrap_or_else(|e| e.into_inner());
                let request = encode_request(&resource, &scopes, batch);
                drop(resource);
                // The sender reports its own failures (see traces::Warning); here they count.
                let outcome = match sender.send(Bytes::from(request), n) {
                    Ok(()) => &self.exported,
                    Err(()) => &self.failed,
                };
                outcome.fetch_add(n as u64, Ordering::Relaxed);
            }
            let mut state = self.state();
            if state.queue.is_empty() {
                state.flush_done = flush_target;
                if shutdown {
                    state.stopped = true;
                    self.changed.notify_all();
                    drop(state);
                    sender.shutdown();
                    return;
                }
                self.changed.notify_all();
            }
        }
    }

    /// Waits for the next batch: idle (nothing queued, nothing asked) it sleeps until a span, a
    /// flush or shutdown arrives, never waking for nothing, so a zero delay cannot spin; from the
    /// first queued span it waits at most the delay (zero: not at all) for a full batch. Returns
    /// the batch, the scopes it names, the flushes it answers and whether shutdown was asked.
    fn next_batch(&self) -> (Vec<EncodedSpan>, Vec<EncodedScope>, u64, bool) {
        let asked = |s: &State| s.flush_requested != s.flush_done || s.shutdown;
        let mut state = self.state();
        while state.queue.is_empty() && !asked(&state) {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let deadline = Instant::now() + self.config.scheduled_delay;
        while state.queue.len() < self.config.max_export_batch_size && !asked(&state) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = state.queue.len().min(self.config.max_export_batch_size);
        let batch: Vec<EncodedSpan> = state.queue.drain(..n).collect();
        let scopes = state.scopes.encoded();
        (batch, scopes, state.flush_requested, state.shutdown)
    }

    /// Waits until `done(state)` or `timeout`.
    fn wait(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        while !done(&state) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl OldestFirstBatch {
    /// The run's totals, at shutdown: a warning when spans were lost, else at info level (a
    /// benchmark reads it with `RUST_LOG=rideshare::telemetry::span_queue=info`).
    fn log_totals(&self) {
        let t = self.totals();
        let unaccounted = t.ended.saturating_sub(t.exported + t.failed + t.dropped);
        if t.dropped + t.failed + unaccounted > 0 {
            tracing::warn!(
                spans_created = t.ended,
                spans_exported = t.exported,
                spans_dropped = t.dropped,
                spans_failed = t.failed,
                spans_unsent = unaccounted,
                "span queue totals: spans were lost"
            );
        } else {
            tracing::info!(
                spans_created = t.ended,
                spans_exported = t.exported,
                "span queue totals"
            );
        }
    }
}

impl SpanProcessor for OldestFirstBatch {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    /// Encodes the span here, on the thread that ended it, outside the queue's lock.
    fn on_end(&self, span: SpanData) {
        let (scope, bytes) = encode_span(span);
        let mut state = self.shared.state();
        if state.shutdown {
            return;
        }
        let scope = state.scopes.index_of(&scope);
        state.queue.push_back(EncodedSpan { scope, bytes });
        self.shared.ended.fetch_add(1, Ordering::Relaxed);
        if state.queue.len() > self.shared.config.max_queue_size {
            state.queue.pop_front();
            if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    max_queue_size = self.shared.config.max_queue_size,
                    "span queue full: dropping the oldest spans (counted, reported at shutdown)"
                );
            }
        }
        // Wake the worker when its wait may end: the first span ends an idle wait (and starts
        // the delay), a full batch ends the delay early. Once each, and after the lock is
        // released: woken under it, the worker would run only to block on the lock, and then
        // be woken again, two more thread switches per batch on a busy core. A worker that is
        // not waiting when its wake-up comes checks the queue before it waits again.
        let queued = state.queue.len();
        drop(state);
        if queued == 1 || queued == self.shared.config.max_export_batch_size {
            self.shared.changed.notify_all();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let target = {
            let mut state = self.shared.state();
            state.flush_requested += 1;
            state.flush_requested
        };
        self.shared.changed.notify_all();
        if self.shared.wait(Duration::from_secs(10), |s| {
            s.flush_done >= target || s.stopped
        }) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(Duration::from_secs(10)))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        {
            let mut state = self.shared.state();
            if state.shutdown {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            state.shutdown = true;
        }
        self.shared.changed.notify_all();
        let stopped = self.shared.wait(timeout, |s| s.stopped);
        if !stopped {
            self.log_totals();
            return Err(OTelSdkError::Timeout(timeout));
        }
        if let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = worker.join();
        }
        self.log_totals();
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self
            .shared
            .resource
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = EncodedResource::new(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer, TracerProvider as _};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
    use prost::Message;

    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// Decodes what it was sent and keeps the spans, also across shutdown.
    #[derive(Debug, Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<ProtoSpan>>>);

    impl BatchSender for Recorder {
        fn send(&mut self, request: Bytes, spans: usize) -> Result<(), ()> {
            let request = ExportTraceServiceRequest::decode(request).expect("a valid request");
            let got: Vec<ProtoSpan> = request
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .collect();
            assert_eq!(got.len(), spans, "the count given is the count sent");
            self.0.lock().unwrap().extend(got);
            Ok(())
        }
    }

    impl Recorder {
        fn get_finished_spans(&self) -> Result<Vec<ProtoSpan>, ()> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn provider(config: QueueConfig) -> (SdkTracerProvider, Recorder) {
        let exporter = Recorder::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(OldestFirstBatch::new(exporter.clone(), config))
            .build();
        (provider, exporter)
    }

    fn names(exporter: &Recorder) -> Vec<String> {
        let mut spans = exporter.get_finished_spans().unwrap();
        spans.sort_by_key(|s| s.start_time_unix_nano);
        spans.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn overflow_keeps_the_newest_and_counts_the_rest() {
        let exporter = Recorder::default();
        let processor = OldestFirstBatch::new(
            exporter.clone(),
            QueueConfig {
                max_queue_size: 3,
                max_export_batch_size: 100,
                scheduled_delay: Duration::from_secs(600),
            },
        );
        for i in 0..5 {
            processor.on_end(span_data(&format!("s{i}"), i));
        }
        assert_eq!(processor.totals().dropped, 2);
        processor.force_flush().unwrap();
        assert_eq!(names(&exporter), vec!["s2", "s3", "s4"]);
        processor.shutdown().unwrap();
        assert_eq!(
            processor.totals(),
            QueueTotals {
                ended: 5,
                exported: 3,
                failed: 0,
                dropped: 2
            }
        );
    }

    #[test]
    fn a_full_batch_goes_out_without_waiting_and_shutdown_sends_the_rest() {
        let (provider, exporter) = provider(QueueConfig {
            max_queue_size: 100,
            max_export_batch_size: 2,
            scheduled_delay: Duration::from_secs(600),
        });
        let tracer = provider.tracer("t");
        tracer.in_span("a", |_| {});
        // The worker is now in its timed wait: the span that fills the batch must end it.
        std::thread::sleep(Duration::from_millis(200));
        tracer.in_span("b", |_| {});
        let deadline = Instant::now() + Duration::from_secs(5);
        while exporter.get_finished_spans().unwrap().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(names(&exporter), vec!["a", "b"]);
        tracer.in_span("c", |_| {});
        provider.shutdown().unwrap();
        assert_eq!(names(&exporter), vec!["a", "b", "c"]);
    }

    /// At the benchmark's rate (15 000 spans a second) with the spec's defaults (queue 2048,
    /// batch 512, delay 5 s) and an exporter that takes 5 ms a batch, nothing is dropped: full
    /// batches leave without waiting for the delay.
    #[test]
    fn the_spec_defaults_keep_up_with_15k_spans_a_second() {
        #[derive(Debug)]
        struct Slow;
        impl BatchSender for Slow {
            fn send(&mut self, _request: Bytes, _spans: usize) -> Result<(), ()> {
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            }
        }
        let processor =
            OldestFirstBatch::new(Slow, QueueConfig::new(2048, 512, Duration::from_secs(5)));
        let start = Instant::now();
        for ms in 0..1000u64 {
            for i in 0..15 {
                processor.on_end(span_data("s", ms * 15 + i));
            }
            let next = start + Duration::from_millis(ms + 1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        processor.shutdown().unwrap();
        let totals = processor.totals();
        assert_eq!(totals.dropped, 0, "{totals:?}");
        assert_eq!((totals.ended, totals.exported), (15_000, 15_000));
    }

    /// A zero `OTEL_BSP_SCHEDULE_DELAY` exports each span as soon as it is queued, and the worker
    /// sleeps while nothing is queued instead of spinning (its CPU-time clock is Linux's).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_zero_delay_exports_at_once_and_idles_without_spinning() {
        let exporter = Recorder::default();
        let processor = OldestFirstBatch::new(
            exporter.clone(),
            QueueConfig::new(2048, 512, Duration::ZERO),
        );
        for i in 0..3 {
            let queued = Instant::now();
            processor.on_end(span_data(&format!("s{i}"), i));
            while names(&exporter).len() <= i as usize {
                assert!(
                    queued.elapsed() < Duration::from_secs(2),
                    "span {i} not exported promptly"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(names(&exporter), vec!["s0", "s1", "s2"]);
        let idle = Duration::from_millis(500);
        let before = worker_cpu_time(&processor);
        std::thread::sleep(idle);
        let used = worker_cpu_time(&processor) - before;
        assert!(
            used < Duration::from_millis(25),
            "the idle worker used {used:?} of CPU in {idle:?}"
        );
        processor.on_end(span_data("late", 9));
        processor.shutdown().unwrap();
        assert_eq!(names(&exporter), vec!["s0", "s1", "s2", "late"]);
        let totals = processor.totals();
        assert_eq!((totals.ended, totals.exported), (4, 4));
    }

    /// CPU time the worker thread has used, from its CPU-time clock.
    #[cfg(target_os = "linux")]
    fn worker_cpu_time(processor: &OldestFirstBatch) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        let worker = processor.worker.lock().unwrap();
        let thread = worker.as_ref().expect("the worker runs").as_pthread_t();
        let mut clock: libc::clockid_t = 0;
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `thread` is alive (it is joined only at shutdown, which waits for this lock),
        // and both calls write only to the locals they are given.
        let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut clock) };
        assert_eq!(rc, 0, "pthread_getcpuclockid");
        let rc = unsafe { libc::clock_gettime(clock, &mut time) };
        assert_eq!(rc, 0, "clock_gettime");
        Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
    }

    fn span_data(name: &str, i: u64) -> SpanData {
        use opentelemetry::trace::{
            SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
        };
        use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(i + 1);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_owned().into(),
            start_time: t,
            end_time: t,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }
}
