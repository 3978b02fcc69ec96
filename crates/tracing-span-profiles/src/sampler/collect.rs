//! Off the signal path: aggregation of ring records, symbolization, and `Report`s.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use pyroscope::ThreadId;
use pyroscope::backend::{
    BackendConfig, Metadata, Report, StackBuffer, StackFrame, StackTrace, Tag,
};

use super::interner::{LabelTable, Resolved, unpack};
use super::modules::SymbolTable;
use super::ring::{Ring, SampleRecord};
use super::stats;
use super::thread;

/// Key prefix: label index, thread id, thread name (two words), then the stack.
const PREFIX: usize = 4;
/// Symbol cache entries kept across reports before starting afresh.
const MAX_CACHED_SYMBOLS: usize = 200_000;

/// Samples collected since the last report, keyed by raw addresses. Shared by the collector
/// thread and `report()`; kept cheap to lock (symbolization happens elsewhere).
pub(crate) struct Aggregator {
    /// `[label index, thread, name0, name1, ips...]` -> count.
    counts: HashMap<Box<[u64]>, u64>,
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
    label_sets: Vec<Arc<[Tag]>>,
}

impl Aggregator {
    pub(crate) fn new() -> Self {
        Aggregator {
            counts: HashMap::new(),
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
        let label = self.label_index_for(record.label, table);
        self.key.clear();
        self.key.push(u64::from(label));
        self.key.push(record.thread);
        self.key.push(u64::from_ne_bytes(
            record.name[..8].try_into().unwrap_or_default(),
        ));
        self.key.push(u64::from_ne_bytes(
            record.name[8..].try_into().unwrap_or_default(),
        ));
        self.key.extend_from_slice(&record.ips[..depth]);
        if let Some(count) = self.counts.get_mut(self.key.as_slice()) {
            *count += 1;
        } else {
            self.counts.insert(self.key.as_slice().into(), 1);
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
    /// drain, so that no collected sample still needs an id that is about to go.
    pub(crate) fn reclaim(&mut self, table: &LabelTable) -> usize {
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
            label_sets: std::mem::replace(&mut self.label_sets, vec![Arc::from([])]),
        }
    }
}

/// Symbolizes collected stacks and builds `Report`s; owned by the backend, so that `report()`
/// symbolizes without holding the lock the collector needs.
pub(crate) struct Symbolizer {
    config: BackendConfig,
    inlined_frames: bool,
    symbols: HashMap<u64, Arc<[StackFrame]>>,
}

impl Symbolizer {
    pub(crate) fn new(config: BackendConfig, inlined_frames: bool) -> Self {
        Symbolizer {
            config,
            inlined_frames,
            symbols: HashMap::new(),
        }
    }

    /// One `Report` per label set (and thread id/name, when the backend config asks), with
    /// symbolized stacks and sample counts, grouped the way pyroscope's pprof backend groups
    /// them, so that the session encoder makes the tags pprof sample labels.
    pub(crate) fn reports(&mut self, collected: Collected) -> Vec<Report> {
        let Collected { counts, label_sets } = collected;
        if self.symbols.len() > MAX_CACHED_SYMBOLS {
            self.symbols.clear();
        }
        let mut buffer = StackBuffer::default();
        let mut total = 0;
        for (key, count) in counts {
            let (prefix, ips) = key.split_at(PREFIX);
            let mut metadata = Metadata::default();
            if let Some(tags) = label_sets.get(prefix[0] as usize) {
                for tag in tags.iter() {
                    metadata.add_tag(tag.clone());
                }
            }
            let thread_id = self
                .config
                .report_thread_id
                .then(|| ThreadId::from(prefix[1] as libc::pthread_t));
            let thread_name = self.config.report_thread_name.then(|| {
                let mut name = [0u8; 16];
                name[..8].copy_from_slice(&prefix[2].to_ne_bytes());
                name[8..].copy_from_slice(&prefix[3].to_ne_bytes());
                let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                String::from_utf8_lossy(&name[..len]).into_owned()
            });
            if let Some(id) = &thread_id {
                metadata.add_tag(Tag::new("thread_id".into(), id.to_string()));
            }
            if let Some(name) = &thread_name {
                metadata.add_tag(Tag::new("thread_name".into(), name.clone()));
            }
            let mut frames = Vec::with_capacity(ips.len());
            for &ip in ips {
                frames.extend(self.symbolize(ip).iter().cloned());
            }
            let trace = StackTrace {
                pid: None,
                thread_id,
                thread_name,
                frames,
                metadata,
            };
            total += count;
            let _ = buffer.record_with_count(trace, count as usize);
        }
        stats::add(&stats::REPORTED, total);
        buffer.into()
    }

    /// The frames at one address, innermost inlined function first, as pyroscope's pprof
    /// backend builds them from `backtrace::resolve` (which looks up `ip - 1`), with one
    /// improvement: when the outermost (real, not inlined) function has an unqualified DWARF
    /// name, as in builds with `debug = "line-tables-only"`, its symbol-table name is used
    /// instead, so a function `find_nearest_vehicle` in module `service::frames` of crate `app`
    /// reads `app::service::frames::find_nearest_vehicle` in release builds too. (Inlined frames
    /// keep the DWARF name; only `debug = "limited"` or more gives them their path.)
    ///
    /// Without `inlined_frames`, only the symbol table is read: one frame per real function, and
    /// none of the DWARF that `backtrace` would parse and keep (for a service's release binary
    /// with line tables, often over 100 MB).
    fn symbolize(&mut self, ip: u64) -> Arc<[StackFrame]> {
        let inlined_frames = self.inlined_frames;
        self.symbols
            .entry(ip)
            .or_insert_with(|| {
                if !inlined_frames {
                    let name = SymbolTable::get()
                        .lookup(ip.wrapping_sub(1))
                        .map(|n| symbolic_demangle::demangle(n).into_owned())
                        .unwrap_or_else(|| format!("{ip:#x}"));
                    return Arc::from([StackFrame::new(None, Some(name), None, None, None, None)]);
                }
                let mut frames = Vec::new();
                backtrace::resolve(ip as *mut c_void, |symbol| {
                    frames.push(stack_frame(symbol));
                });
                if let Some(outer) = frames.last_mut()
                    && outer.name.as_ref().is_some_and(|n| !n.contains("::"))
                    && let Some(name) = SymbolTable::get().lookup(ip.wrapping_sub(1))
                {
                    outer.name = Some(symbolic_demangle::demangle(name).into_owned());
                }
                frames.into()
            })
            .clone()
    }
}

fn stack_frame(symbol: &backtrace::Symbol) -> StackFrame {
    let raw = symbol.name().map(|n| n.as_bytes().to_vec());
    let name = symbolic_demangle::demangle(&String::from_utf8_lossy(
        raw.as_deref().unwrap_or(b"Unknown"),
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
