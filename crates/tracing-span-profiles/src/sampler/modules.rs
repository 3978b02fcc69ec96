//! The loaded modules (executable, shared libraries and the vDSO): where each is mapped and the
//! bytes of its ELF image, for the unwind tables of the handler's unwinder and the symbol tables
//! of report time. Not signal-safe; used off the signal path only.
//!
//! Each image is read from the object that is really mapped, not from whatever file now has the
//! path the loader used: `/proc/self/exe` for the executable, `/proc/self/map_files/<range>` for
//! a library, the process's own memory for the vDSO (it has no file), and the path only when
//! neither can be opened. So a binary or library replaced on disk while the process runs (a
//! deploy, a package upgrade) cannot give its frames another build's names or unwind rules.

use std::ops::Range;
use std::path::Path;

use findshlibs::{SharedLibrary, TargetSharedLibrary};
use memmap2::Mmap;

/// Where one module is mapped.
pub(crate) struct Module<'a> {
    /// The path the loader used, or `[vdso]`.
    pub(crate) name: &'a str,
    /// Added to the ELF file's addresses gives runtime addresses.
    pub(crate) bias: u64,
    /// The runtime addresses the module spans.
    pub(crate) avma: Range<u64>,
}

impl Module<'_> {
    /// The name frames use when no symbol covers them: the file name (`libc.so.6`).
    pub(crate) fn short_name(&self) -> &str {
        Path::new(self.name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(self.name)
    }
}

/// The bytes of a module's ELF image.
enum Image {
    File(Mmap),
    /// The vDSO, mapped by the kernel for the whole life of the process.
    Memory(&'static [u8]),
}

impl Image {
    fn bytes(&self) -> &[u8] {
        match self {
            Image::File(map) => map,
            Image::Memory(bytes) => bytes,
        }
    }
}

/// Calls `f(module, object)` for every loaded module, with its parsed image where it could be
/// read (`None` otherwise: its frames can still be named after the module).
pub(crate) fn for_each(mut f: impl FnMut(&Module<'_>, Option<&object::File<'_>>)) {
    let maps = Mappings::read();
    let mut index = 0;
    TargetSharedLibrary::each(|lib| {
        let first = index == 0;
        index += 1;
        let start = lib.actual_load_addr().0 as u64;
        let vdso = maps.vdso.as_ref().filter(|v| v.contains(&start));
        let name = match vdso {
            Some(_) => "[vdso]".to_owned(),
            None => lib.name().to_string_lossy().into_owned(),
        };
        let image = match vdso {
            Some(range) => vdso_image(range),
            None => open_file(first, &name, maps.containing(start)),
        };
        let object = image
            .as_ref()
            .and_then(|image| object::File::parse(image.bytes()).ok());
        let module = Module {
            name: &name,
            bias: lib.virtual_memory_bias().0 as u64,
            avma: start..start.saturating_add(lib.len() as u64),
        };
        f(&module, object.as_ref());
    });
}

/// The mapped file itself: `/proc/self/exe` for the executable, the `map_files` entry of the
/// mapping at its load address for a library, and the loader's path only as a last resort.
fn open_file(executable: bool, path: &str, mapping: Option<Range<u64>>) -> Option<Image> {
    let mut candidates = Vec::with_capacity(3);
    if executable {
        candidates.push("/proc/self/exe".to_owned());
    }
    if let Some(r) = mapping {
        candidates.push(format!("/proc/self/map_files/{:x}-{:x}", r.start, r.end));
    }
    candidates.push(path.to_owned());
    let file = candidates
        .iter()
        .find_map(|p| std::fs::File::open(p).ok())?;
    // SAFETY: what callers keep is copied out while the image is alive; the file opened is the
    // mapped object, which the process keeps open, so it is not truncated under us by a deploy
    // (which replaces files rather than rewriting them).
    let map = unsafe { Mmap::map(&file) }.ok()?;
    Some(Image::File(map))
}

/// The vDSO's image, as the kernel mapped it.
fn vdso_image(range: &Range<u64>) -> Option<Image> {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    if base == 0 || !range.contains(&base) {
        return None;
    }
    let len = usize::try_from(range.end - base).ok()?;
    // SAFETY: `[base, range.end)` is the vDSO's mapping (from /proc/self/maps, and the auxiliary
    // vector says the ELF header is there): readable, never written nor unmapped while the
    // process runs.
    let bytes = unsafe { std::slice::from_raw_parts(base as *const u8, len) };
    Some(Image::Memory(bytes))
}

/// The process's file-backed mappings and the vDSO's, from `/proc/self/maps`.
struct Mappings {
    files: Vec<Range<u64>>,
    vdso: Option<Range<u64>>,
}

impl Mappings {
    fn read() -> Mappings {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut maps = Mappings {
            files: Vec::new(),
            vdso: None,
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let Some(range) = fields.next().and_then(parse_range) else {
                continue;
            };
            match fields.nth(4) {
                Some("[vdso]") => maps.vdso = Some(range),
                Some(path) if path.starts_with('/') => maps.files.push(range),
                _ => {}
            }
        }
        maps
    }

    /// The file-backed mapping that holds `addr`.
    fn containing(&self, addr: u64) -> Option<Range<u64>> {
        self.files.iter().find(|r| r.contains(&addr)).cloned()
    }
}

/// `start-end` in hex, as in `/proc/self/maps`.
fn parse_range(field: &str) -> Option<Range<u64>> {
    let (start, end) = field.split_once('-')?;
    Some(u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?)
}

/// A number that changes whenever a module is loaded or unloaded: glibc's and musl's
/// `dlpi_adds + dlpi_subs`, or the count of loaded modules where the loader does not give those
/// counters. Cheap enough for every collection period (one `dl_iterate_phdr` step).
pub(crate) fn generation() -> u64 {
    let mut counters: Option<u64> = None;
    // SAFETY: the callback only reads the `dl_phdr_info` the loader passes, within the `size` it
    // declares, and writes through `data`, which points at `counters` for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_counters),
            (&mut counters as *mut Option<u64>).cast(),
        );
    }
    counters.unwrap_or_else(|| {
        let mut count = 0u64;
        TargetSharedLibrary::each(|_| count += 1);
        count
    })
}

unsafe extern "C" fn first_counters(
    info: *mut libc::dl_phdr_info,
    size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    let end = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs)
        + std::mem::size_of::<libc::c_ulonglong>();
    if size >= end {
        // SAFETY: the loader passes a valid `info` of at least `size` bytes, and `data` is the
        // `Option<u64>` of `generation`.
        unsafe {
            let info = &*info;
            *data.cast::<Option<u64>>() = Some(info.dlpi_adds.wrapping_add(info.dlpi_subs));
        }
    }
    1 // one module is enough: the counters are process-wide
}
