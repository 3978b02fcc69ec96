//! Names for sampled addresses at report time, from the loaded modules' symbol tables.
//!
//! `.symtab` where a module has one, else `.dynsym`: Debian and most distributions strip
//! `.symtab` from their libraries (libc's exported functions are then only in `.dynsym`), and
//! the vDSO only has `.dynsym`. An address that no symbol covers is still named after its module
//! (`libc.so.6+0x8b8ec`: the offset from the module's link-time base, as `perf` and `addr2line`
//! take it), so that a flame graph says at least where the CPU went, never a bare address.
//!
//! The table is rebuilt when modules were loaded or unloaded since it was read
//! ([`modules::generation`]), and when an address falls in no known module (once per report, in
//! case a library came and went unnoticed, and at most every [`MIN_FORCED_AGE`]: a misread stack
//! can give such addresses in every report, and reading a large executable's symbols costs
//! tens of milliseconds).

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object::{Object, ObjectSymbol, SymbolKind};

use super::modules;

/// Function symbols and ranges of every loaded module, by runtime address.
pub(crate) struct SymbolTable {
    /// `(start, end, mangled name)`, sorted by start, one per start.
    functions: Vec<(u64, u64, Box<str>)>,
    /// `(runtime range, bias, short name)` of each module.
    modules: Vec<(Range<u64>, u64, Box<str>)>,
    /// The module generation this table was read at.
    generation: u64,
    read_at: Instant,
}

/// The youngest table that an address in no known module has read again.
const MIN_FORCED_AGE: Duration = Duration::from_secs(30);

/// What an address is.
pub(crate) enum Name<'a> {
    /// The (mangled) name of the function that contains it.
    Symbol(&'a str),
    /// In a known module, but in no symbol: `module+0xoffset`.
    InModule(String),
    /// In no module this table knows.
    Unknown,
}

static CURRENT: Mutex<Option<Arc<SymbolTable>>> = Mutex::new(None);

impl SymbolTable {
    /// The process's table, read again if modules changed since it was built.
    pub(crate) fn current() -> Arc<SymbolTable> {
        let generation = modules::generation();
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some(table) if table.generation == generation => table.clone(),
            _ => {
                let table = Arc::new(SymbolTable::read(generation));
                *current = Some(table.clone());
                table
            }
        }
    }

    /// The process's table, read again unless it was read less than [`MIN_FORCED_AGE`] ago:
    /// for an address in no module the table knows.
    pub(crate) fn refresh_unless_recent() -> Arc<SymbolTable> {
        let current = Self::current();
        if current.read_at.elapsed() < MIN_FORCED_AGE {
            return current;
        }
        Self::refresh()
    }

    /// The process's table, read again now.
    pub(crate) fn refresh() -> Arc<SymbolTable> {
        let table = Arc::new(SymbolTable::read(modules::generation()));
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(table.clone());
        table
    }

    fn read(generation: u64) -> SymbolTable {
        let mut functions = Vec::new();
        let mut modules = Vec::new();
        modules::for_each(|module, object| {
            modules.push((module.avma.clone(), module.bias, module.short_name().into()));
            let Some(object) = object else {
                return;
            };
            let mut symbols: Vec<_> = object.symbols().collect();
            if !symbols.iter().any(is_function) {
                symbols = object.dynamic_symbols().collect();
            }
            symbols.sort_by_key(|s| s.is_weak());
            for symbol in symbols.iter().filter(|s| is_function(*s)) {
                push_function(&mut functions, module.bias, symbol);
            }
        });
        // Aliases share a start: the first pushed wins, which `push_function`'s order makes the
        // strong one (`__vdso_clock_gettime` over its weak alias `clock_gettime`).
        functions.sort_by_key(|f| f.0);
        functions.dedup_by_key(|f| f.0);
        SymbolTable {
            functions,
            modules,
            generation,
            read_at: Instant::now(),
        }
    }

    /// What `addr` is: a function, a place in a module, or unknown.
    pub(crate) fn lookup(&self, addr: u64) -> Name<'_> {
        if let Some(name) = self.function(addr) {
            return Name::Symbol(name);
        }
        match self
            .modules
            .iter()
            .find(|(range, ..)| range.contains(&addr))
        {
            Some((_, bias, name)) => Name::InModule(format!("{name}+{:#x}", addr - bias)),
            None => Name::Unknown,
        }
    }

    /// The (mangled) name of the function containing `addr`.
    pub(crate) fn function(&self, addr: u64) -> Option<&str> {
        let i = self.functions.partition_point(|f| f.0 <= addr);
        let (start, end, name) = self.functions.get(i.checked_sub(1)?)?;
        (*start <= addr && addr < *end).then_some(&**name)
    }
}

/// Whether `symbol` is a defined function with a size.
fn is_function<'data>(symbol: &impl ObjectSymbol<'data>) -> bool {
    symbol.kind() == SymbolKind::Text && symbol.is_definition() && symbol.size() != 0
}

/// Adds the function `symbol` at its runtime address.
fn push_function<'data>(
    functions: &mut Vec<(u64, u64, Box<str>)>,
    bias: u64,
    symbol: &impl ObjectSymbol<'data>,
) {
    if let Ok(name) = symbol.name() {
        let start = symbol.address().wrapping_add(bias);
        functions.push((start, start.saturating_add(symbol.size()), name.into()));
    }
}
