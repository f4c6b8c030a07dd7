//! The shared region: creation, attachment, producers and the consumer.
//!
//! One region holds `max_rings` single-producer/single-consumer rings. A
//! guest thread claims a free ring on its first record and closes it when it
//! ends; the consumer drains every ring and frees closed ones. The producer
//! path makes no syscalls unless its ring is full (then it waits, counted).

use crate::layout::*;
use crate::record::{decode, GuestRecord, RecordError};
use memmap2::MmapRaw;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

/// Parameters of a new region.
#[derive(Clone, Copy, Debug)]
pub struct RegionParams {
    /// Ring slots (threads alive at once).
    pub max_rings: u32,
    /// Records per ring; rounded up to a power of two.
    pub capacity: u32,
    /// [`MODE_WAIT`] or [`MODE_DROP`].
    pub mode: u32,
    /// Identifier of the run.
    pub run_id: u64,
}

impl Default for RegionParams {
    fn default() -> Self {
        RegionParams {
            max_rings: 256,
            capacity: 32768,
            mode: MODE_WAIT,
            run_id: 0,
        }
    }
}

/// Why a region could not be created or attached.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// File system error.
    #[error("ring {path}: {source}")]
    Io {
        /// The region file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The header is not one we understand.
    #[error("ring {path}: {what} (expected {expected}, found {found}); was it made by another guestview version?")]
    Header {
        /// The region file.
        path: PathBuf,
        /// Which field.
        what: &'static str,
        /// What we expect.
        expected: u64,
        /// What is there.
        found: u64,
    },
    /// Parameters out of range.
    #[error("ring parameters out of range: {0}")]
    Params(&'static str),
}

/// A mapped region file.
pub struct Region {
    map: MmapRaw,
    path: PathBuf,
    max_rings: u32,
    capacity: u32,
    mode: u32,
    run_id: u64,
    _file: File,
}

// SAFETY: all shared state in the mapping is accessed through atomics or
// through volatile copies of plain-integer records; the mapping itself lives
// as long as the Region.
unsafe impl Sync for Region {}
// SAFETY: as above; nothing in Region is tied to a thread.
unsafe impl Send for Region {}

/// CLOCK_MONOTONIC in nanoseconds (the vDSO: no syscall).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

impl Region {
    /// Create a new region file (which must not exist).
    pub fn create(path: &Path, params: RegionParams) -> Result<Region, RegionError> {
        if params.max_rings == 0 || params.max_rings > MAX_RINGS_LIMIT {
            return Err(RegionError::Params("max_rings must be 1..=4096"));
        }
        let capacity = params
            .capacity
            .max(2)
            .checked_next_power_of_two()
            .unwrap_or(0);
        if capacity == 0 || capacity > MAX_CAPACITY_LIMIT {
            return Err(RegionError::Params("capacity must be 2..=4194304"));
        }
        let io = |source| RegionError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        let size = region_size(params.max_rings, capacity);
        file.set_len(size as u64).map_err(io)?;
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        let region = Region {
            map,
            path: path.to_owned(),
            max_rings: params.max_rings,
            capacity,
            mode: params.mode,
            run_id: params.run_id,
            _file: file,
        };
        let h = region.header_ptr();
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page aligned, and
        // nobody else has it yet (the file was just created).
        unsafe {
            (*h).abi_version = ABI_VERSION;
            (*h).word_size = std::mem::size_of::<usize>() as u32;
            (*h).record_size = RECORD_SIZE as u32;
            (*h).capacity = capacity;
            (*h).max_rings = params.max_rings;
            (*h).mode = params.mode;
            (*h).run_id = params.run_id;
            (*h).created_ns = monotonic_ns();
            (*h).total_size = size as u64;
        }
        fence(Ordering::Release);
        // SAFETY: as above; magic is written last so a reader never sees a half-made header.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*h).magic), MAGIC) };
        Ok(region)
    }

    /// Attach to an existing region, checking every header field.
    pub fn open(path: &Path) -> Result<Region, RegionError> {
        let io = |source| RegionError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bad = |what, expected: u64, found: u64| RegionError::Header {
            path: path.to_owned(),
            what,
            expected,
            found,
        };
        if len < HEADER_SIZE as u64 {
            return Err(bad("file size", HEADER_SIZE as u64, len));
        }
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        let h = map.as_ptr().cast::<RegionHeader>();
        // SAFETY: the mapping holds at least HEADER_SIZE bytes (checked above)
        // and is page aligned; fields are plain integers, read by value.
        let (magic, abi, word, rsize, cap, rings, mode, run_id, total) = unsafe {
            (
                std::ptr::read_volatile(std::ptr::addr_of!((*h).magic)),
                (*h).abi_version,
                (*h).word_size,
                (*h).record_size,
                (*h).capacity,
                (*h).max_rings,
                (*h).mode,
                (*h).run_id,
                (*h).total_size,
            )
        };
        if magic != MAGIC {
            return Err(bad("magic", MAGIC, magic));
        }
        if abi != ABI_VERSION {
            return Err(bad("ABI version", ABI_VERSION.into(), abi.into()));
        }
        if word as usize != std::mem::size_of::<usize>() {
            return Err(bad(
                "word size",
                std::mem::size_of::<usize>() as u64,
                word.into(),
            ));
        }
        if rsize as usize != RECORD_SIZE {
            return Err(bad("record size", RECORD_SIZE as u64, rsize.into()));
        }
        if !cap.is_power_of_two() || !(2..=MAX_CAPACITY_LIMIT).contains(&cap) {
            return Err(bad("capacity", MAX_CAPACITY_LIMIT.into(), cap.into()));
        }
        if rings == 0 || rings > MAX_RINGS_LIMIT {
            return Err(bad("ring count", MAX_RINGS_LIMIT.into(), rings.into()));
        }
        if mode != MODE_WAIT && mode != MODE_DROP {
            return Err(bad("mode", 0, mode.into()));
        }
        let size = region_size(rings, cap) as u64;
        if total != size || len < size {
            return Err(bad("size", size, len.min(total)));
        }
        Ok(Region {
            map,
            path: path.to_owned(),
            max_rings: rings,
            capacity: cap,
            mode,
            run_id,
            _file: file,
        })
    }

    /// The region file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records per ring.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Ring slots.
    pub fn max_rings(&self) -> u32 {
        self.max_rings
    }

    /// Producer mode.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Run identifier.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    fn header_ptr(&self) -> *mut RegionHeader {
        self.map.as_mut_ptr().cast::<RegionHeader>()
    }

    /// The header's atomics.
    pub fn header(&self) -> &RegionHeader {
        // SAFETY: the mapping is at least HEADER_SIZE bytes and aligned; the
        // shared fields we touch through this reference are atomics.
        unsafe { &*self.header_ptr() }
    }

    fn control(&self, i: u32) -> &RingControl {
        debug_assert!(i < self.max_rings);
        // SAFETY: i < max_rings and the region size covers every control block;
        // every field of RingControl touched after creation is atomic.
        unsafe {
            &*self
                .map
                .as_mut_ptr()
                .add(control_offset(i))
                .cast::<RingControl>()
        }
    }

    fn record_ptr(&self, ring: u32, idx: u64) -> *mut RawRecord {
        let slot = (idx & u64::from(self.capacity - 1)) as usize;
        // SAFETY: ring < max_rings and slot < capacity, so the pointer stays in
        // the mapping (region_size covers max_rings × capacity records).
        unsafe {
            self.map
                .as_mut_ptr()
                .add(records_offset(self.max_rings, self.capacity, ring) + slot * RECORD_SIZE)
                .cast::<RawRecord>()
        }
    }

    /// Claim a free ring for thread `tid` of process `pid`. `None` when every
    /// ring is taken (counted in the header's `no_ring`).
    pub fn claim(&self, pid: u32, tid: u32, vcpu: u32) -> Option<Producer<'_>> {
        for i in 0..self.max_rings {
            let c = self.control(i);
            if c.state
                .compare_exchange(
                    STATE_FREE,
                    STATE_CLAIMING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let gen = self
                    .header()
                    .claims
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1);
                c.generation.store(gen, Ordering::Relaxed);
                c.pid.store(pid, Ordering::Relaxed);
                c.tid.store(tid, Ordering::Relaxed);
                c.vcpu.store(vcpu, Ordering::Relaxed);
                let head = c.head.load(Ordering::Relaxed);
                c.state.store(STATE_ACTIVE, Ordering::Release);
                return Some(Producer {
                    region: self,
                    ring: i,
                    head,
                    tail_cache: c.tail.load(Ordering::Acquire),
                    cap: u64::from(self.capacity),
                });
            }
        }
        self.header().no_ring.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Close every active ring owned by process `pid` (its threads are gone
    /// or stopped: called from the process's exit path).
    pub fn close_rings_of(&self, pid: u32) {
        for i in 0..self.max_rings {
            let c = self.control(i);
            if c.pid.load(Ordering::Relaxed) == pid {
                let _ = c.state.compare_exchange(
                    STATE_ACTIVE,
                    STATE_CLOSED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Mark the consumer attached (releases `wait=on` producers).
    pub fn set_consumer_attached(&self, yes: bool) {
        self.header()
            .consumer_attached
            .store(u32::from(yes), Ordering::Release);
        self.header()
            .consumer_heartbeat_ns
            .store(monotonic_ns(), Ordering::Release);
    }

    /// Is a consumer attached?
    pub fn consumer_attached(&self) -> bool {
        self.header().consumer_attached.load(Ordering::Acquire) != 0
    }

    /// Let producers that hold the guest (`hold=on`) go.
    pub fn release(&self) {
        self.header().released.store(1, Ordering::Release);
    }

    /// Has [`Region::release`] been called?
    pub fn released(&self) -> bool {
        self.header().released.load(Ordering::Acquire) != 0
    }
}

/// Outcome of [`Producer::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Written without waiting.
    Written,
    /// Written after waiting for space in `[start_ns, end_ns]` (the wait made syscalls).
    Waited {
        /// Start of the wait.
        start_ns: u64,
        /// End of the wait.
        end_ns: u64,
    },
    /// Not written: the ring was full in drop mode, or the consumer vanished.
    Dropped,
}

/// How long a full ring waits for a consumer that shows no sign of life
/// before the producer gives up and drops (counted).
const DEAD_CONSUMER_NS: u64 = 10_000_000_000;

/// Sleeps for a thread waiting on a reader: 50 µs doubling to 200 µs, and
/// 200 µs while the wait is young, so that a reader that stalled for a few
/// milliseconds (a page fault storm, a preemption) lets the guest go on
/// within 200 µs of freeing room. Once the wait is older than
/// [`Backoff::PATIENT`], the sleeps double up to 20 ms: every sleep is a
/// host syscall of a traced process (a record guestview must read), so a
/// long wait then makes tens of them a second, not thousands.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    slept: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_micros(50),
            slept: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// The short sleeps' cap.
    const SHORT: Duration = Duration::from_micros(200);
    /// How long the short sleeps last in all.
    pub const PATIENT: Duration = Duration::from_millis(20);
    /// The long sleeps' cap.
    const LONG: Duration = Duration::from_millis(20);

    /// Sleep the next step.
    pub fn sleep(&mut self) {
        std::thread::sleep(self.next);
        self.slept += self.next;
        let cap = if self.slept < Self::PATIENT {
            Self::SHORT
        } else {
            Self::LONG
        };
        self.next = (self.next * 2).min(cap);
    }

    /// The step the next [`Backoff::sleep`] takes.
    pub fn next_step(&self) -> Duration {
        self.next
    }
}

/// The writing end of one ring. Not `Sync`: one thread owns it.
pub struct Producer<'r> {
    region: &'r Region,
    ring: u32,
    head: u64,
    tail_cache: u64,
    cap: u64,
}

impl<'r> Producer<'r> {
    /// Ring slot index.
    pub fn ring_index(&self) -> u32 {
        self.ring
    }

    /// Reserve space for one record, waiting if the region is in wait mode.
    /// Call before taking a timestamp that must not include the wait.
    pub fn reserve(&mut self) -> Pushed {
        self.reserve_n(1)
    }

    /// Reserve space for `n` records (at most the capacity), waiting if the
    /// region is in wait mode: the next `n` pushes will not wait. The plugin
    /// reserves a guest call's exit record with its entry, so that no wait
    /// (and none of its syscalls) can fall between the call's return
    /// timestamp and the publication of its exit record.
    pub fn reserve_n(&mut self, n: u64) -> Pushed {
        let need = self.cap - n.clamp(1, self.cap) + 1;
        if self.head - self.tail_cache < need {
            return Pushed::Written;
        }
        let c = self.region.control(self.ring);
        self.tail_cache = c.tail.load(Ordering::Acquire);
        if self.head.wrapping_sub(self.tail_cache) < need {
            return Pushed::Written;
        }
        if self.region.mode == MODE_DROP {
            return Pushed::Dropped;
        }
        c.waits.fetch_add(1, Ordering::Relaxed);
        let start = monotonic_ns();
        let mut spinning = true;
        let mut spins = 0u32;
        let mut backoff = Backoff::default();
        loop {
            if spinning {
                std::hint::spin_loop();
                spins += 1;
                if spins.is_multiple_of(64) && monotonic_ns().saturating_sub(start) > SPIN_NS {
                    spinning = false;
                }
            } else {
                backoff.sleep();
            }
            self.tail_cache = c.tail.load(Ordering::Acquire);
            if self.head.wrapping_sub(self.tail_cache) < need {
                return Pushed::Waited {
                    start_ns: start,
                    end_ns: monotonic_ns(),
                };
            }
            if !spinning {
                let now = monotonic_ns();
                let beat = self
                    .region
                    .header()
                    .consumer_heartbeat_ns
                    .load(Ordering::Acquire);
                if now.saturating_sub(beat.max(start)) > DEAD_CONSUMER_NS {
                    return Pushed::Dropped;
                }
            }
        }
    }

    /// Write one record (reserving first). Never blocks in drop mode.
    #[inline]
    pub fn push(&mut self, rec: &GuestRecord) -> Pushed {
        let r = self.reserve();
        if r == Pushed::Dropped {
            self.region
                .control(self.ring)
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            return r;
        }
        let mut raw = rec.to_raw();
        raw.seq = self.head;
        raw.check = checksum(&raw);
        // SAFETY: the slot at `head` is free (head - tail < capacity) and only
        // this producer writes it; the pointer is in bounds (record_ptr).
        unsafe { std::ptr::write_volatile(self.region.record_ptr(self.ring, self.head), raw) };
        // The consumer's core read the slots ahead on the last lap: ask for
        // them now, so the writes a few records on do not wait for them.
        prefetch_for_write(
            self.region
                .record_ptr(self.ring, self.head + PREFETCH_AHEAD),
        );
        self.head += 1;
        self.region
            .control(self.ring)
            .head
            .store(self.head, Ordering::Release);
        r
    }

    /// Give the ring back: the consumer drains and frees it.
    pub fn close(self) {
        drop(self);
    }
}

/// The consumer publishes how far it has read every this many records (and
/// after each ring): a producer that found its ring full need not wait for
/// the whole ring to be read.
const TAIL_PUBLISH_EVERY: u64 = 256;

/// How long a producer that found its ring full spins (the consumer reads
/// on another core and frees room within microseconds) before it sleeps.
const SPIN_NS: u64 = 20_000;

/// How many records ahead of the one it writes a producer warms the slot.
const PREFETCH_AHEAD: u64 = 4;

/// Bring a record's cache lines in for writing (a hint: never faults,
/// changes nothing visible).
#[inline(always)]
fn prefetch_for_write(p: *const RawRecord) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW only hints the cache (it cannot fault, even on an
    // unmapped address, and writes no memory or flags); CPUs without it
    // execute it as a NOP.
    unsafe {
        std::arch::asm!(
            "prefetchw [{p}]",
            "prefetchw [{p} + 64]",
            p = in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        self.region
            .control(self.ring)
            .state
            .store(STATE_CLOSED, Ordering::Release);
    }
}

/// What the consumer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingEvent {
    /// A valid record.
    Record(GuestRecord),
    /// A record (or ring state) that failed validation; it is not believed.
    Corrupt {
        /// Ring slot.
        ring: u32,
        /// Position in the ring.
        seq: u64,
        /// Why.
        error: RecordError,
    },
    /// The producer of a ring closed it and everything it wrote was read.
    Closed {
        /// Host process id of the former owner.
        pid: u32,
        /// Host thread id of the former owner.
        tid: u32,
    },
}

/// Counters the producers keep in the region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Times a producer waited for space.
    pub waits: u64,
    /// Records dropped by producers.
    pub dropped: u64,
    /// Producers that found no free ring.
    pub no_ring: u64,
    /// Records refused by validation.
    pub corrupt: u64,
    /// Records read.
    pub records: u64,
}

#[derive(Clone, Copy, Default)]
struct SlotState {
    generation: u32,
    tid: u32,
    pid: u32,
    tail: u64,
    active: bool,
    /// Its control block was overwritten (reported once).
    tampered: bool,
}

/// Larger counters than this in a control block are not believed: a
/// guest scribbling over QEMU's memory wrote them (2^40 records would
/// take days to produce).
const PLAUSIBLE_COUNT: u64 = 1 << 40;

/// The reading end of every ring in a region.
pub struct Consumer<'r> {
    region: &'r Region,
    slots: Vec<SlotState>,
    retired: RingStats,
    corrupt: u64,
    records: u64,
}

impl<'r> Consumer<'r> {
    /// Attach to a region (marks it attached).
    pub fn new(region: &'r Region) -> Consumer<'r> {
        region.set_consumer_attached(true);
        Consumer {
            region,
            slots: vec![SlotState::default(); region.max_rings as usize],
            retired: RingStats::default(),
            corrupt: 0,
            records: 0,
        }
    }

    /// Read everything available now. Returns the number of events handed to `f`.
    pub fn poll(&mut self, mut f: impl FnMut(RingEvent)) -> usize {
        let mut n = 0;
        let cap = u64::from(self.region.capacity);
        self.region
            .header()
            .consumer_heartbeat_ns
            .store(monotonic_ns(), Ordering::Release);
        for i in 0..self.region.max_rings {
            let c = self.region.control(i);
            let state = c.state.load(Ordering::Acquire);
            let s = &mut self.slots[i as usize];
            if state != STATE_ACTIVE && state != STATE_CLOSED {
                if !s.active || state == STATE_FREE || state == STATE_CLAIMING {
                    continue;
                }
                // A ring being read whose state is no state: overwritten
                // (the guest can reach QEMU's memory). Say so once, and
                // keep reading it: every record is validated anyway.
                if !s.tampered {
                    s.tampered = true;
                    self.corrupt += 1;
                    f(RingEvent::Corrupt {
                        ring: i,
                        seq: s.tail,
                        error: RecordError::Field("ring control block overwritten"),
                    });
                    n += 1;
                }
            }
            let gen = c.generation.load(Ordering::Relaxed);
            if !s.active || s.generation != gen {
                *s = SlotState {
                    generation: gen,
                    tid: c.tid.load(Ordering::Relaxed),
                    pid: c.pid.load(Ordering::Relaxed),
                    tail: c.tail.load(Ordering::Relaxed),
                    active: true,
                    tampered: false,
                };
            }
            let head = c.head.load(Ordering::Acquire);
            if head < s.tail || head - s.tail > cap {
                // The producer (or the guest scribbling over QEMU's memory)
                // broke the ring's invariant: resynchronise, report, go on.
                self.corrupt += 1;
                f(RingEvent::Corrupt {
                    ring: i,
                    seq: s.tail,
                    error: RecordError::Field("ring head outside the ring"),
                });
                n += 1;
                s.tail = head;
                c.tail.store(head, Ordering::Release);
            }
            while s.tail < head {
                // SAFETY: record_ptr is in bounds; the producer published up to
                // `head` with Release and we loaded it with Acquire. A hostile
                // writer can change the bytes under us: we copy them once and
                // validate the copy.
                let raw = unsafe { std::ptr::read_volatile(self.region.record_ptr(i, s.tail)) };
                match decode(&raw, s.tail, s.tid) {
                    Ok(rec) => {
                        self.records += 1;
                        f(RingEvent::Record(rec));
                    }
                    Err(error) => {
                        self.corrupt += 1;
                        f(RingEvent::Corrupt {
                            ring: i,
                            seq: s.tail,
                            error,
                        });
                    }
                }
                n += 1;
                s.tail += 1;
                if s.tail.is_multiple_of(TAIL_PUBLISH_EVERY) {
                    // A producer waiting for room goes on while we read.
                    c.tail.store(s.tail, Ordering::Release);
                }
            }
            c.tail.store(s.tail, Ordering::Release);
            if state == STATE_CLOSED && c.head.load(Ordering::Acquire) == s.tail {
                let (w, d) = (
                    c.waits.swap(0, Ordering::Relaxed),
                    c.dropped.swap(0, Ordering::Relaxed),
                );
                if w > PLAUSIBLE_COUNT || d > PLAUSIBLE_COUNT {
                    self.corrupt += 1;
                } else {
                    self.retired.waits += w;
                    self.retired.dropped += d;
                }
                f(RingEvent::Closed {
                    pid: s.pid,
                    tid: s.tid,
                });
                n += 1;
                c.head.store(0, Ordering::Relaxed);
                c.tail.store(0, Ordering::Relaxed);
                s.active = false;
                c.state.store(STATE_FREE, Ordering::Release);
            }
        }
        n
    }

    /// Counters so far (retired rings plus live ones).
    pub fn stats(&self) -> RingStats {
        let mut st = self.retired;
        for i in 0..self.region.max_rings {
            let c = self.region.control(i);
            // Counters of a ring with no valid state, or beyond belief,
            // were written by someone else than the producer.
            let state = c.state.load(Ordering::Relaxed);
            let (waits, dropped) = (
                c.waits.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
            );
            if state > STATE_CLOSED || waits > PLAUSIBLE_COUNT || dropped > PLAUSIBLE_COUNT {
                if waits != 0 || dropped != 0 {
                    st.corrupt += 1;
                }
                continue;
            }
            st.waits += waits;
            st.dropped += dropped;
        }
        st.no_ring = self.region.header().no_ring.load(Ordering::Relaxed);
        st.corrupt += self.corrupt;
        st.records = self.records;
        st
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        self.region.set_consumer_attached(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    #[test]
    fn backoff_stays_short_while_the_wait_is_young_then_grows() {
        let mut b = Backoff::default();
        let mut waited = Duration::ZERO;
        let mut steps = Vec::new();
        while waited < Backoff::PATIENT {
            let step = b.next_step();
            assert!(
                step <= Duration::from_micros(200),
                "{step:?} after {waited:?}"
            );
            steps.push(step);
            b.sleep();
            waited += step;
        }
        assert_eq!(steps[..3], [50, 100, 200].map(Duration::from_micros));
        let mut long = Vec::new();
        for _ in 0..8 {
            long.push(b.next_step());
            b.sleep();
        }
        assert!(long.windows(2).all(|w| w[1] >= w[0]), "{long:?}");
        assert_eq!(*long.last().unwrap(), Duration::from_millis(20), "{long:?}");
    }

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("gv-ring-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn exit_rec(tid: u32, i: i64) -> GuestRecord {
        GuestRecord::SysExit {
            at: Origin {
                vcpu: 0,
                pid: 1,
                tid,
                t_ns: i as u64,
            },
            nr: 4020,
            ret: i,
            hpos: None,
        }
    }

    #[test]
    fn open_refuses_a_foreign_header() {
        let p = tmp("foreign");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        let e = Region::open(&p).err().unwrap().to_string();
        assert!(e.contains("magic"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn open_checks_version_and_size() {
        let p = tmp("version");
        let r = Region::create(
            &p,
            RegionParams {
                max_rings: 2,
                capacity: 8,
                ..Default::default()
            },
        )
        .unwrap();
        // SAFETY: test-only write to the header of our own mapping.
        unsafe { (*r.header_ptr()).abi_version = 99 };
        let e = Region::open(&p).err().unwrap().to_string();
        assert!(e.contains("ABI version"), "{e}");
        drop(r);
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(300).unwrap();
        assert!(Region::open(&p).is_err());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn drop_mode_counts_what_it_drops() {
        let p = tmp("drop");
        let r = Region::create(
            &p,
            RegionParams {
                max_rings: 1,
                capacity: 4,
                mode: MODE_DROP,
                run_id: 1,
            },
        )
        .unwrap();
        let mut c = Consumer::new(&r);
        let mut prod = r.claim(1, 5, 0).unwrap();
        let outcomes: Vec<_> = (0..6).map(|i| prod.push(&exit_rec(5, i))).collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == Pushed::Dropped).count(),
            2
        );
        let mut got = vec![];
        c.poll(|e| got.push(e));
        assert_eq!(got.len(), 4);
        assert_eq!(c.stats().dropped, 2);
        assert!(r.claim(1, 6, 1).is_none(), "single ring is taken");
        assert_eq!(c.stats().no_ring, 1);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn reserve_n_waits_until_n_records_fit_then_pushes_do_not_wait() {
        let p = tmp("reserve-n");
        let r = Region::create(
            &p,
            RegionParams {
                max_rings: 1,
                capacity: 4,
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = Consumer::new(&r);
        let mut prod = r.claim(1, 5, 0).unwrap();
        for i in 0..2 {
            assert_eq!(prod.push(&exit_rec(5, i)), Pushed::Written);
        }
        // Two of four slots free: room for two, not for three.
        assert_eq!(prod.reserve_n(2), Pushed::Written);
        std::thread::scope(|s| {
            let drainer = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let mut n = 0;
                c.poll(|_| n += 1);
                n
            });
            assert!(matches!(prod.reserve_n(3), Pushed::Waited { .. }));
            for i in 2..5 {
                assert_eq!(prod.push(&exit_rec(5, i)), Pushed::Written, "record {i}");
            }
            assert_eq!(drainer.join().unwrap(), 2);
        });
        // More than the capacity is clamped to it, never a wait forever.
        let mut got = 0;
        c.poll(|_| got += 1);
        assert_eq!(got, 3);
        assert_eq!(prod.reserve_n(100), Pushed::Written);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn closed_rings_are_drained_then_reused() {
        let p = tmp("reuse");
        let r = Region::create(
            &p,
            RegionParams {
                max_rings: 1,
                capacity: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = Consumer::new(&r);
        let mut prod = r.claim(1, 5, 0).unwrap();
        prod.push(&exit_rec(5, 1));
        prod.close();
        let mut got = vec![];
        c.poll(|e| got.push(e));
        assert_eq!(
            got,
            vec![
                RingEvent::Record(exit_rec(5, 1)),
                RingEvent::Closed { pid: 1, tid: 5 }
            ]
        );
        let mut prod = r.claim(1, 6, 1).expect("freed ring is claimable");
        prod.push(&exit_rec(6, 2));
        got.clear();
        c.poll(|e| got.push(e));
        assert_eq!(got, vec![RingEvent::Record(exit_rec(6, 2))]);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn scribbled_ring_is_reported_and_consumer_goes_on() {
        let p = tmp("scribble");
        let r = Region::create(
            &p,
            RegionParams {
                max_rings: 1,
                capacity: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = Consumer::new(&r);
        let mut prod = r.claim(1, 5, 0).unwrap();
        for i in 0..3 {
            prod.push(&exit_rec(5, i));
        }
        // SAFETY: test-only: overwrite record 1 the way a hostile guest could.
        unsafe { (*r.record_ptr(0, 1)).ret = 42 };
        // and push the head far past the tail
        let mut got = vec![];
        c.poll(|e| got.push(e));
        assert!(matches!(
            got[1],
            RingEvent::Corrupt {
                seq: 1,
                error: RecordError::Checksum,
                ..
            }
        ));
        assert_eq!(got[2], RingEvent::Record(exit_rec(5, 2)));
        r.control(0).head.store(1_000_000, Ordering::Release);
        got.clear();
        c.poll(|e| got.push(e));
        assert!(matches!(got[0], RingEvent::Corrupt { .. }));
        assert_eq!(c.stats().corrupt, 2);
        std::fs::remove_file(&p).unwrap();
    }
}
