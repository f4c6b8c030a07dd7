//! Guest PCs as `function+offset`, from the symbol table of the guest ELF.
//!
//! Only for programs loaded at the addresses their file says (`ET_EXEC`:
//! static and non-PIE builds): a PIE program or a shared library is moved
//! by a load bias that QEMU's plugin API v1 does not tell us, so their PCs
//! stay plain addresses.

use object::{Object, ObjectKind, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::path::Path;

/// Distinct PCs whose names are kept (interned) for the rest of the run. A
/// program has a few hundred syscall sites; the bound keeps a guest that
/// jumps to syscall instructions all over its code from growing the cache.
const CACHE_LIMIT: usize = 8192;

/// Function symbols of one ELF, sorted by address.
#[derive(Debug, Default, Clone)]
pub struct Symbolizer {
    funcs: Vec<(u64, u64, String)>,
    /// The code sections' address ranges (start, end), sorted: a symbol
    /// without a size ends at the end of its section at the latest.
    code: Vec<(u64, u64)>,
    /// Names already made, by PC: each syscall site is formatted once.
    cache: FxHashMap<u64, Option<&'static str>>,
}

impl Symbolizer {
    /// Read the function symbols of `path`; `None` when it has none we can
    /// use (stripped, PIE, unreadable).
    pub fn from_elf(path: &Path) -> Option<Symbolizer> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        if file.kind() != ObjectKind::Executable {
            return None;
        }
        // ARM marks a Thumb function by bit 0 of its symbol's value; its
        // code starts at the even address (the PC of its `svc` is even).
        let code_mask = if file.architecture() == object::Architecture::Arm {
            !1
        } else {
            !0
        };
        let mut funcs: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address() & code_mask, s.size(), s.name().ok()?.to_owned())))
            .filter(|(_, _, n)| !n.is_empty())
            .collect();
        if funcs.is_empty() {
            return None;
        }
        // At one address, prefer the sized symbol, then the shorter name
        // (`open64` over `__libc_open64`).
        funcs.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.min(1).cmp(&a.1.min(1)))
                .then(a.2.len().cmp(&b.2.len()))
        });
        funcs.dedup_by_key(|f| f.0);
        let mut code: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address().saturating_add(s.size())))
            .collect();
        code.sort_unstable();
        Some(Symbolizer {
            funcs,
            code,
            cache: FxHashMap::default(),
        })
    }

    /// [`Symbolizer::lookup`], remembered per PC: the same syscall site is
    /// named again on every call, so the name is made once and shared.
    pub fn name(&mut self, pc: u64) -> Option<Cow<'static, str>> {
        if let Some(hit) = self.cache.get(&pc) {
            return hit.map(Cow::Borrowed);
        }
        let name = self.lookup(pc);
        if self.cache.len() >= CACHE_LIMIT {
            return name.map(Cow::Owned);
        }
        // Leaked on purpose: at most CACHE_LIMIT short strings per run.
        let interned: Option<&'static str> = name.map(|n| &*Box::leak(n.into_boxed_str()));
        self.cache.insert(pc, interned);
        interned.map(Cow::Borrowed)
    }

    /// `name+0xoff` for a PC inside a known function.
    pub fn lookup(&self, pc: u64) -> Option<String> {
        let i = self.funcs.partition_point(|f| f.0 <= pc);
        let (start, size, name) = self.funcs.get(i.checked_sub(1)?)?;
        let off = pc - start;
        // A symbol without a size covers up to the next one, but never past
        // the end of its code section: a PC beyond the program's code (in
        // the guest vDSO QEMU 10.2 maps, or QEMU's signal trampoline) is in
        // no function of the program, whatever symbol came last (`_fini`).
        let end = if *size > 0 {
            start + size
        } else {
            let section_end = self
                .code
                .iter()
                .find(|(s, e)| (*s..*e).contains(start))
                .map_or(*start, |r| r.1);
            self.funcs
                .get(i)
                .map_or(section_end, |f| f.0.min(section_end))
        };
        (pc < end).then(|| {
            if off == 0 {
                name.clone()
            } else {
                format!("{name}+{off:#x}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_enclosing_function() {
        let s = Symbolizer {
            funcs: vec![
                (0x1000, 0x20, "open64".into()),
                (0x1040, 0, "write".into()),
                (0x1100, 0x10, "read".into()),
                (0x1200, 0, "_fini".into()),
            ],
            code: vec![(0x1000, 0x1210)],
            ..Default::default()
        };
        assert_eq!(s.lookup(0x1000).as_deref(), Some("open64"));
        assert_eq!(s.lookup(0x101c).as_deref(), Some("open64+0x1c"));
        assert_eq!(s.lookup(0x1030), None, "between functions");
        assert_eq!(s.lookup(0x10f0).as_deref(), Some("write+0xb0"));
        assert_eq!(s.lookup(0x1110), None);
        assert_eq!(s.lookup(0x10), None);
        assert_eq!(s.lookup(0x1208).as_deref(), Some("_fini+0x8"));
        assert_eq!(
            s.lookup(0x1210),
            None,
            "past the code: the last unsized symbol does not reach it"
        );
        assert_eq!(s.lookup(0x7f00_0000_0549), None, "a vDSO PC");
    }

    #[test]
    fn cached_names_equal_fresh_ones_also_past_the_cache_limit() {
        let mut s = Symbolizer {
            funcs: vec![(0x1000, 0x100000, "big".into())],
            ..Default::default()
        };
        for round in 0..2 {
            for pc in (0x1000..).step_by(4).take(CACHE_LIMIT + 10) {
                assert_eq!(
                    s.name(pc).as_deref(),
                    s.lookup(pc).as_deref(),
                    "round {round}"
                );
            }
            assert_eq!(s.name(0x0).as_deref(), None);
        }
        assert_eq!(s.cache.len(), CACHE_LIMIT);
    }

    #[test]
    fn this_test_binary_is_not_symbolized_when_it_is_pie() {
        // Test binaries are PIE on Debian: no load bias known, no symbols.
        let me = std::env::current_exe().unwrap();
        let data = std::fs::read(&me).unwrap();
        let kind = object::File::parse(&*data).unwrap().kind();
        assert_eq!(
            Symbolizer::from_elf(&me).is_some(),
            kind == ObjectKind::Executable
        );
    }
}
