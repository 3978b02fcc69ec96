//! Off the signal path: aggregation of ring records, symbolization, and the pprof profile.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use pyroscope::ThreadId;
use pyroscope::backend::{BackendConfig, StackFrame, Tag};
use pyroscope::encode::r#gen::google::{Label, Profile};

use super::interner::{Freed, LabelTable, Resolved, unpack};
use super::pprof::{PprofBuilder, tag_pairs};
use super::ring::{Ring, SampleRecord};
use super::stats;
use super::symbols::{Name, SymbolTable};
use super::thread;
use crate::labels::{SPAN_ID_LABEL, TRACE_ID_LABEL};

/// Key prefix: label index, thread id, thread name (two words), span id, trace id (two words),
/// then the stack.
const PREFIX: usize = 7;
/// Stacks symbolized between two yields of the CPU in [`Symbolizer::profile`].
const REPORT_SLICE: usize = 32;

/// Symbol cache entries kept across reports before starting afresh.
const MAX_CACHED_SYMBOLS: usize = 200_000;

/// Samples collected since the last report, keyed by raw addresses. Shared by the collector
/// thread and `report()`; kept cheap to lock (symbolization happens elsewhere).
pub(crate) struct Aggregator {
    /// `[label index, thread, name0, name1, span, trace_hi, trace_lo, ips...]` -> sampling
    /// periods (the sum of the samples' weights).
    counts: HashMap<Box<[u64]>, u64>,
    /// Records (samples) behind `counts`.
    records: u64,
    /// Label sets referenced by `counts`; index 0 is "no labels".
    label_sets: Vec<Arc<[Tag]>>,
    /// Packed label word -> index into `label_sets`. Valid until the next reclaim, which may
    /// give the word's id to another set.
    label_index: HashMap<u64, u32>,
    key: Vec<u64>,
}

/// What one report period collected, unsymbolized.
pub(crate) struct Collected {
    counts: HashMap<Box<[u64]>, u64>,
    records: u64,
    label_sets: Vec<Arc<[Tag]>>,
}

impl Aggregator {
    pub(crate) fn new() -> Self {
        Aggregator {
            counts: HashMap::new(),
            records: 0,
            label_sets: vec![Arc::from([])],
            label_index: HashMap::new(),
            key: Vec::with_capacity(PREFIX + super::ring::MAX_DEPTH),
        }
    }

    /// Moves every published ring record into the aggregate, resolving its label word while the
    /// word still means what it meant when the sample was taken.
    pub(crate) fn drain(&mut self, ring: &Ring, table: &LabelTable) -> usize {
        ring.drain(|record| self.add(record, table))
    }

    fn add(&mut self, record: &SampleRecord, table: &LabelTable) {
        let depth = (record.depth as usize).min(record.ips.len());
        if depth == 0 {
            return;
        }
        stats::bump(&stats::COLLECTED);
        self.records += 1;
        let weight = u64::from(record.weight.max(1));
        let label = self.label_index_for(record.labels.word, table);
        self.key.clear();
        self.key.push(u64::from(label));
        self.key.push(record.thread);
        self.key.push(u64::from_ne_bytes(
            record.name[..8].try_into().unwrap_or_default(),
        ));
        self.key.push(u64::from_ne_bytes(
            record.name[8..].try_into().unwrap_or_default(),
        ));
        self.key.push(record.labels.span);
        self.key.push((record.labels.trace >> 64) as u64);
        self.key.push(record.labels.trace as u64);
        self.key.extend_from_slice(&record.ips[..depth]);
        if let Some(count) = self.counts.get_mut(self.key.as_slice()) {
            *count += weight;
        } else {
            self.counts.insert(self.key.as_slice().into(), weight);
        }
    }

    fn label_index_for(&mut self, word: u64, table: &LabelTable) -> u32 {
        if let Some(&index) = self.label_index.get(&word) {
            table.mark(unpack(word).0);
            return index;
        }
        let index = match table.resolve(word) {
            Resolved::None | Resolved::Overflow => 0,
            Resolved::Stale => {
                stats::bump(&stats::STALE_LABELS);
                // Not memoized: a stale word stays stale, and is rare.
                return 0;
            }
            Resolved::Set(tags) => {
                self.label_sets.push(tags);
                (self.label_sets.len() - 1) as u32
            }
        };
        self.label_index.insert(word, index);
        index
    }

    /// Frees label ids unused for a whole epoch (see `LabelTable::reclaim`). Must follow a
    /// drain, so that no collected sample still needs an id that is about to go. The freed sets
    /// are the caller's to [`release`](Freed::release) once it holds no lock.
    pub(crate) fn reclaim(&mut self, table: &LabelTable) -> Freed {
        let freed = table.reclaim(&thread::held_ids());
        // Words of freed ids may now name other sets.
        self.label_index.clear();
        freed
    }

    /// Takes what was collected so far and starts a new period.
    pub(crate) fn take(&mut self) -> Collected {
        self.label_index.clear();
        Collected {
            counts: std::mem::take(&mut self.counts),
            records: std::mem::take(&mut self.records),
            label_sets: std::mem::replace(&mut self.label_sets, vec![Arc::from([])]),
        }
    }
}

/// `span_id` and `trace_id` of a count key's prefix, as 16 and 32 lowercase hex characters,
/// formatted on the stack: nearly every sample is of a request of its own.
struct IdLabels {
    span: [u8; 16],
    trace: [u8; 32],
    has_span: bool,
    has_trace: bool,
}

impl IdLabels {
    fn new(prefix: &[u64]) -> Self {
        let trace = (u128::from(prefix[5]) << 64) | u128::from(prefix[6]);
        let mut ids = IdLabels {
            span: [0; 16],
            trace: [0; 32],
            has_span: prefix[4] != 0,
            has_trace: prefix[4] != 0 && trace != 0,
        };
        // Both buffers are exactly twice the bytes encoded: this cannot fail.
        if ids.has_span {
            let _ = hex::encode_to_slice(prefix[4].to_be_bytes(), &mut ids.span);
        }
        if ids.has_trace {
            let _ = hex::encode_to_slice(trace.to_be_bytes(), &mut ids.trace);
        }
        ids
    }

    fn is_empty(&self) -> bool {
        !self.has_span
    }

    /// The labels, as (key, value) pairs.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        // Hex digits are ASCII.
        fn text(bytes: &[u8]) -> &str {
            std::str::from_utf8(bytes).unwrap_or_default()
        }
        let span = self.has_span.then(|| (SPAN_ID_LABEL, text(&self.span)));
        let trace = self.has_trace.then(|| (TRACE_ID_LABEL, text(&self.trace)));
        span.into_iter().chain(trace)
    }
}

/// Symbolizes collected stacks and builds `Report`s; owned by the backend, so that `report()`
/// symbolizes without holding the lock the collector needs.
pub(crate) struct Symbolizer {
    config: BackendConfig,
    inlined_frames: bool,
    symbols: HashMap<u64, Arc<[StackFrame]>>,
    /// The symbol table `symbols` was filled from.
    table: Option<Arc<SymbolTable>>,
    /// Whether this report already read the table again for an address in no known module.
    refreshed: bool,
}

impl Symbolizer {
    pub(crate) fn new(config: BackendConfig, inlined_frames: bool) -> Self {
        Symbolizer {
            config,
            inlined_frames,
            symbols: HashMap::new(),
            table: None,
            refreshed: false,
        }
    }

    /// The pprof profile of what was collected: one sample per distinct stack, label set and
    /// (when the backend config asks) thread, valued in the CPU nanoseconds of the sampling
    /// periods it stands for; the label set's tags, and `thread_id` / `thread_name`, are its
    /// labels.
    pub(crate) fn profile(&mut self, collected: Collected, sample_rate: u32) -> Profile {
        let Collected {
            counts,
            records,
            label_sets,
        } = collected;
        if self.symbols.len() > MAX_CACHED_SYMBOLS {
            self.symbols.clear();
        }
        self.use_table(SymbolTable::current());
        self.refreshed = false;
        let mut pprof = PprofBuilder::new(sample_rate);
        let mut locations: HashMap<u64, Box<[u64]>> = HashMap::new();
        let mut set_labels: Vec<Option<Vec<Label>>> = vec![None; label_sets.len()];
        let mut total = 0;
        for (n, (key, count)) in counts.into_iter().enumerate() {
            // A report of thousands of stacks takes milliseconds; sliced, the threads serving
            // requests on a busy core run in between (the kernel would not preempt this thread
            // in less than a tick).
            if n > 0 && n % REPORT_SLICE == 0 {
                std::thread::yield_now();
            }
            let (prefix, ips) = key.split_at(PREFIX);
            let mut ids = Vec::with_capacity(ips.len());
            for &ip in ips {
                let known = locations.entry(ip).or_insert_with(|| {
                    let frames = self.symbolize(ip);
                    frames.iter().map(|f| pprof.location(f)).collect()
                });
                ids.extend_from_slice(known);
            }
            let set = prefix[0] as usize;
            let thread = self.thread_tags(prefix);
            let id_labels = IdLabels::new(prefix);
            let labels = match set_labels.get_mut(set) {
                // A key with no ids and no thread: its set's labels are made once per report.
                Some(cached) if thread.is_empty() && id_labels.is_empty() => cached
                    .get_or_insert_with(|| pprof.labels(tag_pairs(&label_sets[set])))
                    .clone(),
                _ => {
                    let tags = label_sets.get(set).map_or(&[][..], |t| &t[..]);
                    pprof.labels(
                        tag_pairs(tags)
                            .chain(tag_pairs(&thread))
                            .chain(id_labels.pairs()),
                    )
                }
            };
            pprof.sample(ids, count, labels);
            total += count;
        }
        stats::add(&stats::REPORTED, records);
        stats::add(&stats::PERIODS_REPORTED, total);
        pprof.finish()
    }

    /// `thread_id` and `thread_name` of a count key's prefix, as far as the config asks.
    fn thread_tags(&self, prefix: &[u64]) -> Vec<Tag> {
        let mut tags = Vec::new();
        if self.config.report_thread_id {
            let id = ThreadId::from(prefix[1] as libc::pthread_t);
            tags.push(Tag::new("thread_id".into(), id.to_string()));
        }
        if self.config.report_thread_name {
            let mut name = [0u8; 16];
            name[..8].copy_from_slice(&prefix[2].to_ne_bytes());
            name[8..].copy_from_slice(&prefix[3].to_ne_bytes());
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = String::from_utf8_lossy(&name[..len]).into_owned();
            tags.push(Tag::new("thread_name".into(), name));
        }
        tags
    }

    /// Makes `table` the one names come from; names cached from another table are forgotten
    /// (modules were loaded or unloaded: an address may now be in another one).
    fn use_table(&mut self, table: Arc<SymbolTable>) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, &table)) {
            self.symbols.clear();
            self.table = Some(table);
        }
    }

    /// The frames at one address, innermost inlined function first, as pyroscope's pprof
    /// backend builds them from `backtrace::resolve` (which looks up `ip - 1`), with one
    /// improvement: when the outermost (real, not inlined) function has an unqualified DWARF
    /// name, as in builds with `debug = "line-tables-only"`, its symbol-table name is used
    /// instead, so a function `find_nearest_vehicle` in module `service::frames` of crate `app`
    /// reads `app::service::frames::find_nearest_vehicle` in release builds too. (Inlined frames
    /// keep the DWARF name; only `debug = "limited"` or more gives them their path.) Where
    /// `backtrace` finds nothing (the vDSO, a library without debug info) the symbol table
    /// names the frame.
    ///
    /// Without `inlined_frames`, only the symbol table is read: one frame per real function, and
    /// none of the DWARF that `backtrace` would parse and keep (for a service's release binary
    /// with line tables, often over 100 MB).
    fn symbolize(&mut self, ip: u64) -> Arc<[StackFrame]> {
        if let Some(frames) = self.symbols.get(&ip) {
            return frames.clone();
        }
        let name = self.table_name(ip.wrapping_sub(1));
        let frames: Arc<[StackFrame]> = if self.inlined_frames {
            inlined_frames(ip, name)
        } else {
            let name = name.map(|(name, _)| name).unwrap_or_else(|| unknown(ip));
            Arc::from([named_frame(name)])
        };
        self.symbols.insert(ip, frames.clone());
        frames
    }

    /// The demangled symbol-table name of `addr` (`true`), or `module+0xoffset` if no symbol
    /// covers it (`false`); `None` for an address in no module, even after reading the modules
    /// again (once per report, and at most every 30 s: see `symbols`).
    fn table_name(&mut self, addr: u64) -> Option<(String, bool)> {
        let table = self.table.get_or_insert_with(SymbolTable::current);
        if matches!(table.lookup(addr), Name::Unknown) && !self.refreshed {
            self.refreshed = true;
            self.use_table(SymbolTable::refresh_unless_recent());
        }
        match self.table.as_ref()?.lookup(addr) {
            Name::Symbol(name) => Some((symbolic_demangle::demangle(name).into_owned(), true)),
            Name::InModule(name) => Some((name, false)),
            Name::Unknown => None,
        }
    }
}

/// `backtrace`'s frames at `ip`, the outermost renamed from the symbol table as
/// [`Symbolizer::symbolize`] says; the table's name alone where `backtrace` has none.
fn inlined_frames(ip: u64, table_name: Option<(String, bool)>) -> Arc<[StackFrame]> {
    let mut frames = Vec::new();
    backtrace::resolve(ip as *mut c_void, |symbol| {
        frames.push(stack_frame(symbol));
    });
    let Some(outer) = frames.last_mut() else {
        let name = table_name
            .map(|(name, _)| name)
            .unwrap_or_else(|| unknown(ip));
        return Arc::from([named_frame(name)]);
    };
    let nameless = outer.name.as_deref().is_none_or(|n| n == UNKNOWN);
    let unqualified = outer.name.as_deref().is_none_or(|n| !n.contains("::"));
    match table_name {
        Some((name, true)) if unqualified => outer.name = Some(name),
        Some((name, false)) if nameless => outer.name = Some(name),
        None if nameless => outer.name = Some(unknown(ip)),
        _ => {}
    }
    frames.into()
}

/// The name `backtrace` symbols without a name get.
const UNKNOWN: &str = "Unknown";

/// The name of an address in no loaded module (a stack the unwinder misread, or code that is
/// not in a module): says so, rather than pass for a function.
fn unknown(ip: u64) -> String {
    format!("[unknown] {:#x}", ip.wrapping_sub(1))
}

fn named_frame(name: String) -> StackFrame {
    StackFrame::new(None, Some(name), None, None, None, None)
}

fn stack_frame(symbol: &backtrace::Symbol) -> StackFrame {
    let raw = symbol.name().map(|n| n.as_bytes().to_vec());
    let name = symbolic_demangle::demangle(&String::from_utf8_lossy(
        raw.as_deref().unwrap_or(UNKNOWN.as_bytes()),
    ))
    .into_owned();
    let path = symbol
        .filename()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    StackFrame::new(
        None,
        Some(name),
        Some(
            path.file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("")
                .to_string(),
        ),
        Some(path.to_str().unwrap_or("").to_string()),
        None,
        symbol.lineno(),
    )
}
