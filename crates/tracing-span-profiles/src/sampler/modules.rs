//! The loaded modules (executable and shared libraries), read from their files: unwind tables
//! for the handler's unwinder, and symbol tables for qualified names at report time. Not
//! signal-safe; both are built once, off the signal path.

use std::path::Path;
use std::sync::OnceLock;

use findshlibs::{SharedLibrary, TargetSharedLibrary};
use memmap2::Mmap;
use object::{Object, ObjectSymbol, SymbolKind};

/// Calls `f(path, bias, avma range, object)` for every loaded module whose file can be read
/// (the vDSO, for one, has no file). The bias turns the file's addresses into runtime ones.
pub(crate) fn for_each(mut f: impl FnMut(&str, u64, std::ops::Range<u64>, &object::File<'_>)) {
    TargetSharedLibrary::each(|lib| {
        let path = Path::new(lib.name());
        let Ok(file) = std::fs::File::open(path) else {
            return;
        };
        // SAFETY: the mapping is only read within this call; what callers keep is copied.
        let Ok(map) = (unsafe { Mmap::map(&file) }) else {
            return;
        };
        let Ok(object) = object::File::parse(&*map) else {
            return;
        };
        let bias = lib.virtual_memory_bias().0 as u64;
        let start = lib.actual_load_addr().0 as u64;
        let avma = start..start.saturating_add(lib.len() as u64);
        f(&path.to_string_lossy(), bias, avma, &object);
    });
}

/// Function symbols of every loaded module, by runtime address.
pub(crate) struct SymbolTable {
    /// `(start, end, mangled name)`, sorted by start.
    functions: Vec<(u64, u64, Box<str>)>,
}

impl SymbolTable {
    /// The process's table, read on first use.
    pub(crate) fn get() -> &'static SymbolTable {
        static TABLE: OnceLock<SymbolTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut functions = Vec::new();
            for_each(|_, bias, _, object| {
                for symbol in object.symbols() {
                    if symbol.kind() != SymbolKind::Text
                        || !symbol.is_definition()
                        || symbol.size() == 0
                    {
                        continue;
                    }
                    if let Ok(name) = symbol.name() {
                        let start = symbol.address().wrapping_add(bias);
                        functions.push((start, start.saturating_add(symbol.size()), name.into()));
                    }
                }
            });
            functions.sort_unstable_by_key(|f| f.0);
            SymbolTable { functions }
        })
    }

    /// The (mangled) name of the function containing `addr`.
    pub(crate) fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.functions.partition_point(|f| f.0 <= addr);
        let (start, end, name) = self.functions.get(i.checked_sub(1)?)?;
        (*start <= addr && addr < *end).then_some(&**name)
    }
}
