//! The only module with `unsafe`: the embedded eBPF object, the bindgen view
//! of `hostview.h`, and the reads that turn ring-buffer bytes into those
//! plain C structs.

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod raw {
    include!(concat!(env!("OUT_DIR"), "/hostview.rs"));
}

pub(crate) use raw::{
    gv_enforce, gv_enforce_event, gv_event_hdr, gv_exec_event, gv_exit_event, gv_fork_event,
    gv_guard, gv_rate, gv_sc_event, gv_stats, gv_syscall_event, gv_syscall_path_event,
    GV_ENF_CONNECT_RATE, GV_ENF_FORK_RATE, GV_ENF_KILL_NR, GV_F_EXEC_KILLED, GV_F_PATH_FAULT,
    GV_GUARD_PREFIX_MAX, GV_NR_LIMIT, GV_OP_ENFORCE, GV_OP_EXEC, GV_OP_EXIT, GV_OP_FORK,
    GV_OP_NORETURN, GV_OP_SC, GV_OP_SYSCALL, GV_OP_SYSCALL_PATH, GV_UNTIMED_FCNTL_CMD,
};

/// Keeps the embedded ELF 8-byte aligned, as libelf expects of an image in
/// memory.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/hostview.bpf.o")));

/// The compiled `hostview.bpf.c`.
pub(crate) fn bpf_object() -> &'static [u8] {
    &OBJECT.0
}

/// A C record from `hostview.h` that may be read from any bytes.
///
/// # Safety
/// Implementors must be `repr(C)` structs made only of integers and arrays of
/// integers, so that every bit pattern is a valid value.
pub(crate) unsafe trait Record: Copy {}

// SAFETY: bindgen emits these as repr(C) structs of __u16/__u32/__u64/__s64
// fields and u8/c_char arrays (see hostview.h); every bit pattern is valid.
unsafe impl Record for gv_event_hdr {}
// SAFETY: as above: integers and integer arrays only.
unsafe impl Record for gv_syscall_event {}
// SAFETY: as above: integers and an integer array only.
unsafe impl Record for gv_sc_event {}
// SAFETY: as above: a gv_syscall_event, integers and a c_char array.
unsafe impl Record for gv_syscall_path_event {}
// SAFETY: as above: integers and a padding byte array.
unsafe impl Record for gv_fork_event {}
// SAFETY: as above: integers and a c_char array.
unsafe impl Record for gv_exec_event {}
// SAFETY: as above: integers and a padding byte array.
unsafe impl Record for gv_exit_event {}
// SAFETY: as above: four __u64.
unsafe impl Record for gv_stats {}
// SAFETY: as above: integers and a c_char array.
unsafe impl Record for gv_guard {}

/// The bytes of a record, to write it into a map.
pub(crate) fn record_bytes<T: Record>(r: &T) -> &[u8] {
    // SAFETY: `T: Record` is a repr(C) struct of integers with explicit
    // padding fields, so all of its size_of::<T>() bytes are initialised.
    unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(r).cast::<u8>(), std::mem::size_of::<T>())
    }
}
// SAFETY: as above: integers and a padding byte array.
unsafe impl Record for gv_enforce_event {}

/// Copy a `T` out of the front of `bytes`, or `None` if there are too few.
pub(crate) fn read_record<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() initialised bytes (checked
    // above); `read_unaligned` has no alignment requirement; `T: Record`
    // makes any bit pattern a valid `T`.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// The `enforce` settings and counters of `hostview.bpf.c` (its
/// `.data.enforce` section), mapped shared with the kernel. Every field is
/// read and written through atomics of its own width.
pub(crate) struct EnforceArea {
    base: *mut u8,
    len: usize,
}

impl EnforceArea {
    /// Map the `.data.enforce` array map behind `fd` (value size `bytes`).
    pub(crate) fn map(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        if bytes < std::mem::size_of::<gv_enforce>() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the eBPF .data.enforce holds {bytes} bytes, struct gv_enforce needs {}",
                    std::mem::size_of::<gv_enforce>()
                ),
            ));
        }
        // SAFETY: a shared read-write mapping of an mmapable BPF array map;
        // the kernel checks fd and length; accessed only through atomics.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            base: p.cast(),
            len: bytes,
        })
    }

    fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= std::mem::size_of::<gv_enforce>());
        // SAFETY: in bounds of the mapping (checked against gv_enforce's
        // size, which `map` checked against the mapping) and 8-aligned
        // (page-aligned base, offset asserted).
        unsafe { &*self.base.add(off).cast::<std::sync::atomic::AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= std::mem::size_of::<gv_enforce>());
        // SAFETY: as in u64_at, 4-aligned.
        unsafe { &*self.base.add(off).cast::<std::sync::atomic::AtomicU32>() }
    }

    /// Make the exit of host syscall `nr` kill its traced caller; false if out of range.
    pub(crate) fn set_kill_nr(&self, nr: u32) -> bool {
        use std::sync::atomic::Ordering;
        if nr >= GV_NR_LIMIT {
            return false;
        }
        let off = std::mem::offset_of!(gv_enforce, kill_nr_bits) + 8 * (nr / 64) as usize;
        self.u64_at(off)
            .fetch_or(1u64 << (nr % 64), Ordering::SeqCst);
        true
    }

    /// Set the rate limits (0: none).
    pub(crate) fn set_limits(&self, fork: u32, connect: u32) {
        use std::sync::atomic::Ordering;
        self.u32_at(std::mem::offset_of!(gv_enforce, fork_per_sec))
            .store(fork, Ordering::SeqCst);
        self.u32_at(std::mem::offset_of!(gv_enforce, connect_per_sec))
            .store(connect, Ordering::SeqCst);
    }

    /// `(kills, forks beyond the limit, connects beyond the limit)`.
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        use std::mem::offset_of;
        use std::sync::atomic::Ordering;
        let exceeded = offset_of!(gv_rate, exceeded);
        (
            self.u64_at(offset_of!(gv_enforce, kills))
                .load(Ordering::SeqCst),
            self.u64_at(offset_of!(gv_enforce, fork) + exceeded)
                .load(Ordering::SeqCst),
            self.u64_at(offset_of!(gv_enforce, connect) + exceeded)
                .load(Ordering::SeqCst),
        )
    }
}

impl Drop for EnforceArea {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

// SAFETY: shared memory accessed only through atomics; lives until drop.
unsafe impl Send for EnforceArea {}
// SAFETY: as above: &EnforceArea only does atomic operations.
unsafe impl Sync for EnforceArea {}

/// The `pidsets` of `hostview.bpf.c` (its `.bss`, a `struct gv_pidsets`),
/// mapped shared with the kernel: one bit per pid in each set.
pub(crate) struct PidSets {
    words: *const std::sync::atomic::AtomicU64,
    len: usize,
}

/// Which set of [`PidSets`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum PidSet {
    /// `gv_pidsets.traced`.
    Traced,
    /// `gv_pidsets.untimed`.
    Untimed,
}

/// Words of each set (`GV_PID_LIMIT / 64`).
const SET_WORDS: usize = (raw::GV_PID_LIMIT / 64) as usize;

impl PidSets {
    /// Map the `.bss` array map behind `fd` (value size `bytes`).
    pub(crate) fn map(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let need = std::mem::size_of::<raw::gv_pidsets>();
        if bytes < need {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the eBPF .bss holds {bytes} bytes, struct gv_pidsets needs {need}"),
            ));
        }
        // SAFETY: a shared read-write mapping of an mmapable BPF array map;
        // the kernel checks fd and length. The memory is only ever accessed
        // through AtomicU64 (the eBPF programs use atomic ops on it too).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            words: p.cast_const().cast(),
            len: bytes,
        })
    }

    fn word(&self, set: PidSet, tgid: u32) -> Option<&std::sync::atomic::AtomicU64> {
        let i = usize::try_from(tgid / 64).ok()?;
        if i >= SET_WORDS {
            return None;
        }
        let base = match set {
            PidSet::Traced => std::mem::offset_of!(raw::gv_pidsets, traced),
            PidSet::Untimed => std::mem::offset_of!(raw::gv_pidsets, untimed),
        } / 8;
        // SAFETY: base + i is a word of the set (i < SET_WORDS), inside the
        // mapping (at least size_of::<gv_pidsets>() bytes, checked in
        // `map`); mmap'd memory is page-aligned, the offsets 8-aligned.
        Some(unsafe { &*self.words.add(base + i) })
    }

    /// Put `tgid` into `set`; false if it is beyond the sets.
    pub(crate) fn insert(&self, set: PidSet, tgid: u32) -> bool {
        use std::sync::atomic::Ordering;
        match self.word(set, tgid) {
            Some(w) => {
                w.fetch_or(1u64 << (tgid % 64), Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether `tgid` is in `set` now.
    pub(crate) fn contains(&self, set: PidSet, tgid: u32) -> bool {
        use std::sync::atomic::Ordering;
        self.word(set, tgid)
            .is_some_and(|w| w.load(Ordering::SeqCst) & (1u64 << (tgid % 64)) != 0)
    }
}

impl Drop for PidSets {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`.
        unsafe { libc::munmap(self.words.cast_mut().cast(), self.len) };
    }
}

// SAFETY: the mapping is shared memory accessed only through atomics; it
// lives until drop, whichever thread owns it.
unsafe impl Send for PidSets {}
// SAFETY: as above: &PidSets only does atomic operations.
unsafe impl Sync for PidSets {}

/// The reading end of the BPF ring buffer (what libbpf's `ring_buffer`
/// does, for one ring): the consumer page mapped read-write, the producer
/// page and the data (mapped twice in a row by the kernel, so a record
/// that wraps reads as one slice) read-only.
///
/// Two things libbpf cannot give: each record's exact position, and a
/// consumer position published once per batch rather than after every
/// record. The kernel reads that position on every reservation, i.e. on
/// every traced host syscall; written after every record, its cache line
/// crossed between the reader's core and QEMU's on each one.
pub(crate) struct RingReader {
    cons_page: *mut u8,
    /// Producer page, then the data twice.
    data_map: *const u8,
    data_len: usize,
    page: usize,
    mask: u64,
    /// Every record below this has been handed out.
    cons: u64,
    published: u64,
}

const RINGBUF_BUSY_BIT: u32 = 1 << 31;
const RINGBUF_DISCARD_BIT: u32 = 1 << 30;
const RINGBUF_HDR_SZ: u64 = 8;
/// The reader publishes how far it has read at least this often (and at
/// the end of every read).
const PUBLISH_BYTES: u64 = 256 << 10;

impl RingReader {
    /// Map the ring buffer map `fd` of `size` bytes (a power of two, as
    /// the kernel requires).
    pub(crate) fn map(fd: std::os::fd::BorrowedFd<'_>, size: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !size.is_power_of_two() || size < page {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new shared read-write mapping of the ring's consumer
        // page (offset 0), as the kernel offers it to user space; checked
        // for failure below.
        let cons_page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if cons_page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let data_len = page + 2 * size;
        // SAFETY: a new shared read-only mapping of the producer page and
        // the data area (mapped twice by the kernel), at offset one page;
        // checked for failure below.
        let data_map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if data_map == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            // SAFETY: unmapping the page mapped above, used nowhere else.
            unsafe { libc::munmap(cons_page, page) };
            return Err(e);
        }
        let mut r = RingReader {
            cons_page: cons_page.cast(),
            data_map: data_map.cast(),
            data_len,
            page,
            mask: size as u64 - 1,
            cons: 0,
            published: 0,
        };
        r.cons = r.cons_pos().load(std::sync::atomic::Ordering::Acquire);
        r.published = r.cons;
        Ok(r)
    }

    fn cons_pos(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the consumer position is the first word of the consumer
        // page, mapped read-write for our lifetime; page-aligned.
        unsafe { &*self.cons_page.cast::<std::sync::atomic::AtomicU64>() }
    }

    fn prod_pos(&self) -> u64 {
        // SAFETY: the producer position is the first word of the producer
        // page (start of `data_map`), mapped for our lifetime; page-aligned.
        unsafe { &*self.data_map.cast::<std::sync::atomic::AtomicU64>() }
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every record that starts below this position has been handed out.
    pub(crate) fn consumed(&self) -> u64 {
        self.cons
    }

    /// Hand every committed record to `f` with its position, in ring
    /// order; returns how many. Stops at a record still being written.
    pub(crate) fn read(&mut self, f: &mut dyn FnMut(&[u8], u64)) -> usize {
        use std::sync::atomic::{AtomicU32, Ordering};
        let size = self.mask + 1;
        let mut n = 0;
        let mut prod = self.prod_pos();
        while self.cons < prod {
            let off = (self.cons & self.mask) as usize;
            // SAFETY: off < size, so the header word and the record after it
            // (at most `size` bytes, checked below) lie in the double
            // mapping of the data: page + off + 8 + len <= page + 2*size.
            let hdr = unsafe { &*self.data_map.add(self.page + off).cast::<AtomicU32>() }
                .load(Ordering::Acquire);
            if hdr & RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let len = u64::from(hdr & !(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT));
            let total = (len + RINGBUF_HDR_SZ + 7) & !7;
            if total > size {
                // The kernel never writes this: skip to what was produced.
                self.cons = prod;
                break;
            }
            if hdr & RINGBUF_DISCARD_BIT == 0 {
                // SAFETY: see above; the kernel committed these bytes (the
                // header's busy bit is clear, read with Acquire) and does not
                // write them again until we move the consumer position past.
                let rec = unsafe {
                    std::slice::from_raw_parts(
                        self.data_map.add(self.page + off + RINGBUF_HDR_SZ as usize),
                        len as usize,
                    )
                };
                f(rec, self.cons);
                n += 1;
            }
            self.cons += total;
            if self.cons - self.published >= PUBLISH_BYTES {
                self.publish();
            }
            if self.cons >= prod {
                prod = self.prod_pos();
            }
        }
        self.publish();
        n
    }

    fn publish(&mut self) {
        if self.published != self.cons {
            self.cons_pos()
                .store(self.cons, std::sync::atomic::Ordering::Release);
            self.published = self.cons;
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two mappings made in `map`.
        unsafe {
            libc::munmap(self.cons_page.cast(), self.page);
            libc::munmap(self.data_map.cast_mut().cast(), self.data_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;
    use std::process::Command;

    /// Sizes and offsets of every shared record as Rust (bindgen) sees them,
    /// named the way the C probe below prints them.
    fn rust_layout() -> Vec<(String, usize)> {
        macro_rules! sz {
            ($t:ident) => {
                (format!("sizeof {}", stringify!($t)), size_of::<$t>())
            };
        }
        macro_rules! off {
            ($t:ident, $($f:tt).+) => {
                (
                    format!("offsetof {} {}", stringify!($t), stringify!($($f).+)),
                    offset_of!($t, $($f).+),
                )
            };
        }
        vec![
            sz!(gv_event_hdr),
            off!(gv_event_hdr, op),
            off!(gv_event_hdr, flags),
            off!(gv_event_hdr, size),
            off!(gv_event_hdr, ktime),
            sz!(gv_sc_event),
            off!(gv_sc_event, op),
            off!(gv_sc_event, nargs),
            off!(gv_sc_event, timed),
            off!(gv_sc_event, nr),
            off!(gv_sc_event, tgid),
            off!(gv_sc_event, tid),
            off!(gv_sc_event, ret),
            off!(gv_sc_event, words),
            sz!(gv_syscall_event),
            off!(gv_syscall_event, tgid),
            off!(gv_syscall_event, tid),
            off!(gv_syscall_event, nr),
            off!(gv_syscall_event, args),
            off!(gv_syscall_event, ret),
            off!(gv_syscall_event, t_enter),
            off!(gv_syscall_event, t_exit),
            sz!(gv_syscall_path_event),
            off!(gv_syscall_path_event, path_len),
            off!(gv_syscall_path_event, path_arg),
            off!(gv_syscall_path_event, path),
            sz!(gv_fork_event),
            off!(gv_fork_event, parent_tgid),
            off!(gv_fork_event, parent_tid),
            off!(gv_fork_event, child_tgid),
            off!(gv_fork_event, child_tid),
            off!(gv_fork_event, is_thread),
            sz!(gv_exec_event),
            off!(gv_exec_event, tgid),
            off!(gv_exec_event, tid),
            off!(gv_exec_event, old_tid),
            off!(gv_exec_event, filename_len),
            off!(gv_exec_event, filename),
            sz!(gv_exit_event),
            off!(gv_exit_event, tgid),
            off!(gv_exit_event, tid),
            off!(gv_exit_event, exit_code),
            off!(gv_exit_event, group_dead),
            sz!(gv_stats),
            off!(gv_stats, emitted),
            off!(gv_stats, dropped),
            off!(gv_stats, path_failures),
            off!(gv_stats, pending_failures),
            sz!(gv_enforce_event),
            off!(gv_enforce_event, tgid),
            off!(gv_enforce_event, tid),
            off!(gv_enforce_event, nr),
            off!(gv_enforce_event, reason),
            off!(gv_enforce_event, count),
            off!(gv_enforce_event, limit),
            off!(gv_enforce_event, killed),
            sz!(gv_rate),
            off!(gv_rate, window),
            off!(gv_rate, count),
            off!(gv_rate, alerted),
            off!(gv_rate, exceeded),
            sz!(gv_enforce),
            off!(gv_enforce, kill_nr_bits),
            off!(gv_enforce, fork_per_sec),
            off!(gv_enforce, connect_per_sec),
            off!(gv_enforce, fork),
            off!(gv_enforce, connect),
            off!(gv_enforce, kills),
        ]
    }

    /// Builds a C program from hostview.h that prints the same table, so a
    /// change on either side that bindgen and the static asserts let through
    /// still fails here.
    #[test]
    fn layout_matches_c_compiler() {
        let rust = rust_layout();
        let mut c = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"hostview.h\"\nint main(void) {\n",
        );
        for (name, _) in &rust {
            let mut parts = name.split(' ');
            let kind = parts.next().unwrap_or_default();
            let ty = parts.next().unwrap_or_default();
            let expr = match kind {
                "sizeof" => format!("sizeof(struct {ty})"),
                _ => format!(
                    "offsetof(struct {ty}, {})",
                    parts.next().unwrap_or_default()
                ),
            };
            c.push_str(&format!("printf(\"{name} %zu\\n\", (size_t){expr});\n"));
        }
        c.push_str("return 0; }\n");

        let dir = std::env::temp_dir().join(format!("gv-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("probe.c");
        let exe = dir.join("probe");
        std::fs::write(&src, c).unwrap();
        let hdr_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        let status = Command::new("cc")
            .arg("-I")
            .arg(&hdr_dir)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .status()
            .expect("run cc (the layout test needs a C compiler)");
        assert!(status.success(), "compiling the layout probe failed");
        let out = Command::new(&exe).output().expect("run layout probe");
        std::fs::remove_dir_all(&dir).ok();
        let text = String::from_utf8(out.stdout).unwrap();
        let c_layout: Vec<(String, usize)> = text
            .lines()
            .map(|l| {
                let (name, n) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), n.parse().unwrap())
            })
            .collect();
        assert_eq!(
            c_layout, rust,
            "Rust (bindgen) and C disagree on the layout"
        );
    }

    #[test]
    fn read_record_refuses_short_input() {
        let bytes = [0u8; 15];
        assert!(read_record::<gv_event_hdr>(&bytes).is_none());
        assert!(read_record::<gv_event_hdr>(&[0u8; 16]).is_some());
    }

    #[test]
    fn embedded_object_is_elf() {
        assert_eq!(&bpf_object()[..4], b"\x7fELF");
    }
}
