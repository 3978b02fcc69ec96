//! The `pyroscope::backend::Backend` implementation: lifecycle and the collector thread (which
//! also keeps the per-thread timers in step with the process's threads).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use pyroscope::PyroscopeError;
use pyroscope::backend::{Backend, ReportBatch, ReportData, ThreadTag};
use pyroscope::encode::r#gen::google::Profile;

use super::SamplerConfig;
use super::collect::{Aggregator, Symbolizer};
use super::interner::TABLE;
use super::ring::Ring;
use super::signal::{self, Shared};
use super::symbols::SymbolTable;
use super::timers;
use super::unwind::{self, Pool};

/// How often the collector empties the ring: at 1000 Hz on 2 busy cores (2000 samples/s) a pass
/// finds about 80 records, far below the default 1024-record ring.
const DRAIN_INTERVAL: Duration = Duration::from_millis(40);

pub(crate) struct SamplerBackend {
    config: SamplerConfig,
    symbolizer: Symbolizer,
    session: Option<Session>,
}

struct Session {
    /// When the period the next report covers began: the start, then the previous report.
    window_start: SystemTime,
    running: Option<signal::Running>,
    shared: Arc<Shared>,
    aggregator: Arc<Mutex<Aggregator>>,
    stop: Option<mpsc::Sender<()>>,
    collector: Option<JoinHandle<()>>,
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

fn lock(aggregator: &Mutex<Aggregator>) -> MutexGuard<'_, Aggregator> {
    aggregator.lock().unwrap_or_else(|e| e.into_inner())
}

impl SamplerBackend {
    pub(crate) fn new(config: SamplerConfig) -> Self {
        SamplerBackend {
            symbolizer: Symbolizer::new(config.backend_config, config.inlined_frames),
            config,
            session: None,
        }
    }
}

impl Session {
    fn start(config: &SamplerConfig) -> Result<Session, String> {
        let shared = Arc::new(Shared {
            ring: Ring::new(config.ring_capacity),
            pool: Pool::new(),
            unwinder: unwind::unwinder(),
            thread_ids: config.backend_config.report_thread_id,
            thread_names: config.backend_config.report_thread_name,
        });
        let running = signal::start(shared.clone(), config.sample_rate)?;
        let aggregator = Arc::new(Mutex::new(Aggregator::new()));
        let (stop, stopped) = mpsc::channel::<()>();
        let reclaim_interval = config.label_reclaim_interval;
        let sample_rate = config.sample_rate;
        let collector = {
            let shared = shared.clone();
            let aggregator = aggregator.clone();
            std::thread::Builder::new()
                .name("sampler-collect".into())
                .spawn(move || {
                    // Started after the first scan: arm this thread's timer now.
                    timers::arm_current_thread();
                    // The symbol tables are read now, while a service is still starting, rather
                    // than in the first report: reading a large executable's symbols takes tens
                    // of milliseconds, which under load would hold up requests on a busy core.
                    SymbolTable::current();
                    let mut last_reclaim = Instant::now();
                    let mut last_scan = Instant::now();
                    // Said one drain period after start, not in `start`: a service installs its
                    // log subscriber just after starting the profiler (the layer comes from it),
                    // so a line logged in `start` would reach no subscriber.
                    let mut rate_note = Some(sample_rate);
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(DRAIN_INTERVAL)
                    {
                        if let Some(rate) = rate_note.take() {
                            signal::announce_rate(rate);
                        }
                        // Libraries loaded since the last period get unwind tables (one cheap
                        // `dl_iterate_phdr` step when nothing changed).
                        shared.unwinder.refresh_if_changed();
                        let mut aggregator = lock(&aggregator);
                        aggregator.drain(&shared.ring, &TABLE);
                        let freed = (last_reclaim.elapsed() >= reclaim_interval).then(|| {
                            last_reclaim = Instant::now();
                            aggregator.reclaim(&TABLE)
                        });
                        drop(aggregator);
                        if let Some(freed) = freed {
                            freed.release();
                        }
                        if last_scan.elapsed() >= timers::SCAN_INTERVAL {
                            timers::scan();
                            last_scan = Instant::now();
                        }
                    }
                })
        };
        let collector = match collector {
            Ok(handle) => handle,
            Err(e) => {
                signal::stop(running);
                return Err(format!("spawning the sampler's collector thread: {e}"));
            }
        };
        Ok(Session {
            window_start: SystemTime::now(),
            running: Some(running),
            shared,
            aggregator,
            stop: Some(stop),
            collector: Some(collector),
        })
    }

    fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            signal::stop(running);
        }
        drop(self.stop.take());
        if let Some(collector) = self.collector.take() {
            let _ = collector.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Backend for SamplerBackend {
    fn initialize(&mut self) -> pyroscope::Result<()> {
        if self.session.is_some() {
            return Err(PyroscopeError::new("sampler backend: already initialized"));
        }
        let session = Session::start(&self.config)
            .map_err(|e| PyroscopeError::new(&format!("sampler backend: {e}")))?;
        self.session = Some(session);
        Ok(())
    }

    fn shutdown(mut self: Box<Self>) -> pyroscope::Result<()> {
        if let Some(mut session) = self.session.take() {
            session.stop();
        }
        Ok(())
    }

    fn report(&mut self) -> pyroscope::Result<ReportBatch> {
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| PyroscopeError::new("sampler backend: not initialized"))?;
        let until = SystemTime::now();
        let from = std::mem::replace(&mut session.window_start, until);
        let (collected, freed) = {
            let mut aggregator = lock(&session.aggregator);
            aggregator.drain(&session.shared.ring, &TABLE);
            let collected = aggregator.take();
            (collected, aggregator.reclaim(&TABLE))
        };
        freed.release();
        Ok(ReportBatch {
            profile_type: "process_cpu".into(),
            // Dated here, as the agents date `Report`s they encode: a raw profile goes out as it is.
            data: ReportData::RawPprof(
                Profile {
                    time_nanos: unix_nanos(from),
                    duration_nanos: unix_nanos(until) - unix_nanos(from),
                    ..self.symbolizer.profile(collected, self.config.sample_rate)
                }
                .encode_to_vec(),
            ),
        })
    }

    fn add_tag(&self, _tag: ThreadTag) -> pyroscope::Result<()> {
        Err(thread_tags_unsupported())
    }

    fn remove_tag(&self, _tag: ThreadTag) -> pyroscope::Result<()> {
        Err(thread_tags_unsupported())
    }
}

fn thread_tags_unsupported() -> PyroscopeError {
    PyroscopeError::new(
        "sampler backend: thread tags are not supported; labels come from the LabelSink \
         returned by sampler_backend (SampleLabels), set by the span-profile layer",
    )
}
