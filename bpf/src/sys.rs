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
    gv_guard, gv_rate, gv_ring_ctl, gv_sc_event, gv_stats, gv_syscall_event, gv_syscall_path_event,
    GV_ENF_CONNECT_RATE, GV_ENF_FORK_RATE, GV_ENF_KILL_NR, GV_F_EXEC_KILLED, GV_F_PATH_FAULT,
    GV_GUARD_PREFIX_MAX, GV_NR_LIMIT, GV_OP_ENFORCE, GV_OP_EXEC, GV_OP_EXIT, GV_OP_FORK,
    GV_OP_NORETURN, GV_OP_SC, GV_OP_SYSCALL, GV_OP_SYSCALL_PATH, GV_RING_BYTES, GV_RING_PAD,
    GV_UNTIMED_FCNTL_CMD,
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

/// The reading end of the host ring (see `GV_RING_BYTES` in hostview.h):
/// the data map mapped read-only, the position map read-write (to publish
/// how far it has read).
///
/// The consumer position is published once per batch rather than after
/// every record: the programs read it on every reservation, i.e. on every
/// traced host syscall, and written after every record its cache line
/// crossed between the reader's core and QEMU's on each one.
pub(crate) struct RingReader {
    ctl: *mut gv_ring_ctl,
    data: *const u8,
    data_len: usize,
    ctl_len: usize,
    mask: u64,
    /// Every record below this has been handed out.
    cons: u64,
    published: u64,
}

/// The reader publishes how far it has read at least this often (and at
/// the end of every read).
const PUBLISH_BYTES: u64 = 256 << 10;

/// Map the first `len` bytes of `fd`, shared, with `prot` (for the ring:
/// the values of an mmapable BPF array).
fn map_bpf(
    fd: std::os::fd::BorrowedFd<'_>,
    len: usize,
    prot: libc::c_int,
) -> std::io::Result<*mut u8> {
    use std::os::fd::AsRawFd;
    // SAFETY: a new shared mapping of an mmapable BPF array's values
    // (offset 0); the kernel checks the length against the map and the
    // protection against the descriptor; checked for failure below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl RingReader {
    /// Map the ring's data map `data` and position map `ctl`, and set the
    /// size the plugins read.
    pub(crate) fn map(
        data: std::os::fd::BorrowedFd<'_>,
        ctl: std::os::fd::BorrowedFd<'_>,
    ) -> std::io::Result<Self> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = GV_RING_BYTES as usize;
        let data_len = (size + GV_RING_PAD as usize).div_ceil(page) * page;
        let ctl_len = std::mem::size_of::<gv_ring_ctl>().div_ceil(page) * page;
        let d = map_bpf(data, data_len, libc::PROT_READ)?;
        let c = match map_bpf(ctl, ctl_len, libc::PROT_READ | libc::PROT_WRITE) {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: unmapping the data mapped above, used nowhere else.
                unsafe { libc::munmap(d.cast(), data_len) };
                return Err(e);
            }
        };
        let mut r = RingReader {
            ctl: c.cast(),
            data: d,
            data_len,
            ctl_len,
            mask: size as u64 - 1,
            cons: 0,
            published: 0,
        };
        r.word(std::mem::offset_of!(gv_ring_ctl, size))
            .store(size as u64, std::sync::atomic::Ordering::Release);
        r.cons = r
            .word(std::mem::offset_of!(gv_ring_ctl, cons))
            .load(std::sync::atomic::Ordering::Acquire);
        r.published = r.cons;
        Ok(r)
    }

    /// The u64 at byte `off` of the position page.
    fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: off is a field offset of gv_ring_ctl (8-aligned, in the
        // page mapped read-write for our lifetime); the programs and the
        // plugins only ever access these words atomically.
        unsafe {
            &*self
                .ctl
                .cast::<u8>()
                .add(off)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    fn prod_pos(&self) -> u64 {
        self.word(std::mem::offset_of!(gv_ring_ctl, head))
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every record that starts below this position has been handed out.
    pub(crate) fn consumed(&self) -> u64 {
        self.cons
    }

    /// Hand every committed record to `f` with its position, in ring
    /// order; returns how many. Stops at a record still being written.
    pub(crate) fn read(&mut self, f: &mut dyn FnMut(&[u8], u64)) -> usize {
        use std::sync::atomic::{AtomicU64, Ordering};
        let mut n = 0;
        let mut prod = self.prod_pos();
        while self.cons < prod {
            let off = (self.cons & self.mask) as usize;
            // SAFETY: off < GV_RING_BYTES and 8-aligned, so the header word
            // lies in the data mapping; the programs write it atomically.
            let hdr = unsafe { &*self.data.add(off).cast::<AtomicU64>() }.load(Ordering::Acquire);
            if (hdr >> 32) as u32 != ring_tag(self.cons) {
                // Reserved, not yet written.
                break;
            }
            let len = hdr as u32 as usize;
            if len == 0 || 8 + len > GV_RING_PAD as usize {
                // The programs never write this: skip to what was produced.
                self.cons = prod;
                break;
            }
            // SAFETY: off + 8 + len <= GV_RING_BYTES + GV_RING_PAD <=
            // data_len (checked above): in the mapping. The program wrote
            // these bytes before the header (read with Acquire) and does
            // not write them again until we move the consumer position past.
            let rec = unsafe { std::slice::from_raw_parts(self.data.add(off + 8), len) };
            f(rec, self.cons);
            n += 1;
            self.cons += ring_record_bytes(len);
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
            self.word(std::mem::offset_of!(gv_ring_ctl, cons))
                .store(self.cons, std::sync::atomic::Ordering::Release);
            self.published = self.cons;
        }
    }
}

/// Ring bytes a record of `len` bytes takes: its header, then it, rounded
/// up to 8 (what the programs' ring_reserve moves the head by).
fn ring_record_bytes(len: usize) -> u64 {
    (8 + len as u64 + 7) & !7
}

/// What a record's header says once the record at `pos` is written.
fn ring_tag(pos: u64) -> u32 {
    ((pos >> 3) as u32) | 0x8000_0000
}

impl Drop for RingReader {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two mappings made in `map`.
        unsafe {
            libc::munmap(self.ctl.cast(), self.ctl_len);
            libc::munmap(self.data.cast_mut().cast(), self.data_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;
    use std::process::Command;

    /// A memfd of `len` bytes standing in for a BPF map (the reader only
    /// maps it), and a writable view of it.
    fn fake_map(len: usize) -> (std::os::fd::OwnedFd, *mut u8) {
        use std::os::fd::{AsFd, AsRawFd, FromRawFd};
        // SAFETY: memfd_create with a static name; checked below.
        let fd = unsafe { libc::memfd_create(c"gv-ring-test".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: we own the new descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own memfd.
        let rc = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) };
        assert_eq!(rc, 0);
        let p = map_bpf(fd.as_fd(), len, libc::PROT_READ | libc::PROT_WRITE).unwrap();
        (fd, p)
    }

    /// What a program does: a record of `body` at position `pos`, header
    /// last (with `tag` given, a header that is not the record's).
    fn put(data: *mut u8, pos: u64, body: &[u8], tag: Option<u32>) -> u64 {
        let off = (pos & (u64::from(GV_RING_BYTES) - 1)) as usize;
        // SAFETY: the tests keep off + 8 + body.len() inside the mapping
        // (ring plus pad), as the programs do.
        unsafe {
            std::ptr::copy_nonoverlapping(body.as_ptr(), data.add(off + 8), body.len());
            let hdr = body.len() as u64 | (u64::from(tag.unwrap_or(ring_tag(pos))) << 32);
            data.add(off).cast::<u64>().write_volatile(hdr);
        }
        pos + ring_record_bytes(body.len())
    }

    fn set_head(ctl: *mut u8, head: u64) {
        // SAFETY: the head is the first word of the position page.
        unsafe { ctl.cast::<u64>().write_volatile(head) }
    }

    #[test]
    fn ring_reader_reads_in_order_stops_at_unwritten_and_follows_the_pad() {
        let ring = GV_RING_BYTES as u64;
        let (dfd, data) = fake_map(GV_RING_BYTES as usize + GV_RING_PAD as usize);
        let (cfd, ctl) = fake_map(size_of::<gv_ring_ctl>());
        use std::os::fd::AsFd;
        let mut r = RingReader::map(dfd.as_fd(), cfd.as_fd()).unwrap();
        // The reader tells the plugins the size.
        // SAFETY: the size word of the position page.
        let size = unsafe {
            ctl.add(offset_of!(gv_ring_ctl, size))
                .cast::<u64>()
                .read_volatile()
        };
        assert_eq!(size, ring);
        let mut got = Vec::new();
        // Two records, then one reserved but not yet written (stale tag).
        let p1 = put(data, 0, b"first...", None);
        let p2 = put(data, p1, b"second record", None);
        let p3 = put(data, p2, b"third", Some(0));
        set_head(ctl, p3);
        assert_eq!(r.read(&mut |b, pos| got.push((b.to_vec(), pos))), 2);
        assert_eq!(
            got,
            vec![(b"first...".to_vec(), 0), (b"second record".to_vec(), p1)]
        );
        assert_eq!(r.consumed(), p2);
        // Published for the programs.
        // SAFETY: the consumer word of the position page.
        let cons = unsafe {
            ctl.add(offset_of!(gv_ring_ctl, cons))
                .cast::<u64>()
                .read_volatile()
        };
        assert_eq!(cons, p2);
        // Written now: read. One written past the head is not.
        put(data, p2, b"third", None);
        put(data, p3, b"fourth", None);
        got.clear();
        assert_eq!(r.read(&mut |b, pos| got.push((b.to_vec(), pos))), 1);
        assert_eq!(got, vec![(b"third".to_vec(), p2)]);
        assert_eq!(r.consumed(), p3);
        // A record that runs past the end of the ring goes on in the pad;
        // a stale header from the last lap at the next place is not read.
        r.cons = 3 * ring - 16;
        let body: Vec<u8> = (0..40u8).collect();
        let next = put(data, r.cons, &body, None);
        put(data, next - ring, b"old lap", None);
        set_head(ctl, next + 16);
        got.clear();
        assert_eq!(r.read(&mut |b, pos| got.push((b.to_vec(), pos))), 1);
        assert_eq!(got, vec![(body, 3 * ring - 16)]);
        // A header no program writes (no length): skipped to the head.
        put(data, next, b"", None);
        assert_eq!(r.read(&mut |_, _| panic!("nothing to read")), 0);
        assert_eq!(r.consumed(), next + 16);
    }

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
