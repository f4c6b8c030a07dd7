//! The binary layout of the shared region. Every offset here is part of the
//! ABI between `libguestview.so` and the correlator: change one and bump
//! [`ABI_VERSION`].
//!
//! ```text
//! offset 0        RegionHeader      (3 cache lines: static, claim, consumer)
//! offset 256      RingControl × max_rings       (256 bytes each)
//! then            records: max_rings × capacity × 128 bytes
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64};

/// First eight bytes of every region: `GVRING` + two version-independent bytes.
pub const MAGIC: u64 = u64::from_le_bytes(*b"GVRING\x00\x01");
/// Version of this layout. The consumer refuses any other.
pub const ABI_VERSION: u32 = 6;
/// Size of one record in bytes.
pub const RECORD_SIZE: usize = 128;
/// Size of the region header in bytes.
pub const HEADER_SIZE: usize = 256;
/// Size of one ring's control block in bytes.
pub const CONTROL_SIZE: usize = 256;
/// Upper bound on rings in one region (hostile headers cannot make us loop longer).
pub const MAX_RINGS_LIMIT: u32 = 4096;
/// Upper bound on records per ring.
pub const MAX_CAPACITY_LIMIT: u32 = 1 << 22;

/// The producer blocks when its ring is full (nothing is lost; waits are counted).
pub const MODE_WAIT: u32 = 0;
/// The producer drops records when its ring is full (drops are counted).
pub const MODE_DROP: u32 = 1;

/// Ring slot is unused.
pub const STATE_FREE: u32 = 0;
/// A producer is taking the slot.
pub const STATE_CLAIMING: u32 = 1;
/// A producer owns the slot and writes records.
pub const STATE_ACTIVE: u32 = 2;
/// The producer is gone; the consumer frees the slot once drained.
pub const STATE_CLOSED: u32 = 3;

/// The region header. Line 0 is written once at creation; line 1 is touched
/// by producers claiming rings; line 2 by the consumer.
#[repr(C, align(64))]
pub struct RegionHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<usize>()` of the creator (8).
    pub word_size: u32,
    /// [`RECORD_SIZE`].
    pub record_size: u32,
    /// Records per ring (a power of two).
    pub capacity: u32,
    /// Number of ring slots.
    pub max_rings: u32,
    /// [`MODE_WAIT`] or [`MODE_DROP`].
    pub mode: u32,
    /// Random identifier of the run that created the region.
    pub run_id: u64,
    /// CLOCK_MONOTONIC at creation.
    pub created_ns: u64,
    /// Total size of the region in bytes.
    pub total_size: u64,
    _pad0: [u8; 8],
    /// Number of producers that found no free ring (their records are lost).
    pub no_ring: AtomicU64,
    /// Generation counter handed to each claim.
    pub claims: AtomicU32,
    _pad1: [u8; 52],
    /// Non-zero once a consumer is attached (`wait=on` waits for it).
    pub consumer_attached: AtomicU32,
    _pad2: [u8; 4],
    /// CLOCK_MONOTONIC of the consumer's last pass (liveness).
    pub consumer_heartbeat_ns: AtomicU64,
    /// Non-zero once the guest may run: producers started with `hold=on`
    /// wait for it before the first guest instruction (`guestview run`
    /// starts QEMU while its eBPF programs load, and sets this once the
    /// host view follows the QEMU process).
    pub released: AtomicU32,
    _pad3: [u8; 108],
}

/// Control block of one ring. Line 0: owner (written at claim); line 1:
/// producer counters; line 2: consumer position.
#[repr(C, align(64))]
pub struct RingControl {
    /// One of the `STATE_*` constants.
    pub state: AtomicU32,
    /// Generation of the current claim (from [`RegionHeader::claims`]).
    pub generation: AtomicU32,
    /// Host process id of the owner.
    pub pid: AtomicU32,
    /// Host thread id of the owner.
    pub tid: AtomicU32,
    /// QEMU vCPU index of the owner.
    pub vcpu: AtomicU32,
    _pad0: [u8; 44],
    /// Records written since the claim (monotonic; index = head % capacity).
    pub head: AtomicU64,
    /// Times the producer found the ring full and waited.
    pub waits: AtomicU64,
    /// Records dropped because the ring was full (drop mode) or the consumer vanished.
    pub dropped: AtomicU64,
    _pad1: [u8; 40],
    /// Records consumed since the claim.
    pub tail: AtomicU64,
    _pad2: [u8; 56],
    _pad3: [u8; 64],
}

/// One fixed-size record as it sits in the ring. All fields are plain
/// integers so any bit pattern is a valid `RawRecord`; meaning is given by
/// [`crate::record::GuestRecord::try_from`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawRecord {
    /// Record kind (`KIND_*`).
    pub kind: u16,
    /// Kind-specific flags.
    pub flags: u16,
    /// QEMU vCPU index.
    pub vcpu: u32,
    /// Position of this record in its ring since the claim.
    pub seq: u64,
    /// Host process id.
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// CLOCK_MONOTONIC timestamp, ns.
    pub t_ns: u64,
    /// Guest syscall number (or kind-specific).
    pub nr: i64,
    /// Guest return value (or kind-specific).
    pub ret: i64,
    /// Guest PC of the syscall instruction (0 = unknown).
    pub pc: u64,
    /// Guest syscall arguments (or kind-specific).
    pub args: [u64; 8],
    /// Checksum over the preceding 120 bytes, see [`checksum`].
    pub check: u64,
}

/// A guest syscall was entered.
pub const KIND_SYS_ENTER: u16 = 1;
/// A guest syscall returned.
pub const KIND_SYS_EXIT: u16 = 2;
/// A guest thread (vCPU) started producing.
pub const KIND_THREAD_START: u16 = 3;
/// A guest thread ended.
pub const KIND_THREAD_EXIT: u16 = 4;
/// The plugin itself made host syscalls in `[t_ns, args[0]]` on this thread.
pub const KIND_PLUGIN_SPAN: u16 = 5;
/// A QEMU process started producing (`args[0]` = parent pid, `args[1]` = arch id).
pub const KIND_PROCESS_START: u16 = 6;
/// The QEMU process is exiting (`ret` = guest exit code).
pub const KIND_PROCESS_EXIT: u16 = 7;
/// Bytes of a path argument of the call entered just before, read from
/// guest memory (`nr` = that call's number, `ret` = byte offset, `pc` =
/// argument index | chunk length << 8, `args` = up to 64 bytes).
pub const KIND_GUEST_PATH: u16 = 8;
/// A guest exception (fault, illegal instruction, trap): `pc` = the
/// interrupted guest PC, `args[0]` = the handler, `args[1]` = the signal.
pub const KIND_FAULT: u16 = 9;
/// Something the plugin did or refused that the correlator should know
/// (`nr` = a `NOTE_*` code, `ret` = its detail, `args` = up to 64 bytes of
/// text, NUL-padded: a path).
pub const KIND_NOTE: u16 = 10;
/// Highest valid kind.
pub const KIND_MAX: u16 = 10;

/// Checksum of a record's first 120 bytes. Cheap (one multiply per word),
/// not cryptographic: it catches torn and random writes, and makes a forged
/// record a deliberate act (which the correlator still never trusts).
#[inline]
pub fn checksum(r: &RawRecord) -> u64 {
    let words: [u64; 15] = [
        u64::from(r.kind) | (u64::from(r.flags) << 16) | (u64::from(r.vcpu) << 32),
        r.seq,
        u64::from(r.pid) | (u64::from(r.tid) << 32),
        r.t_ns,
        r.nr as u64,
        r.ret as u64,
        r.pc,
        r.args[0],
        r.args[1],
        r.args[2],
        r.args[3],
        r.args[4],
        r.args[5],
        r.args[6],
        r.args[7],
    ];
    // Three independent lanes (word i goes to lane i % 3): the same mixing
    // step as one chain, a third of the latency on the producer's path.
    let mut h: [u64; 3] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
    ];
    for (i, w) in words.into_iter().enumerate() {
        let l = &mut h[i % 3];
        *l = (*l ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    let x = h[0] ^ h[1].rotate_left(21) ^ h[2].rotate_left(42);
    x ^ (x >> 31)
}

/// Byte offset of ring `i`'s control block.
pub fn control_offset(i: u32) -> usize {
    HEADER_SIZE + i as usize * CONTROL_SIZE
}

/// Byte offset of ring `i`'s first record.
pub fn records_offset(max_rings: u32, capacity: u32, i: u32) -> usize {
    HEADER_SIZE + max_rings as usize * CONTROL_SIZE + i as usize * capacity as usize * RECORD_SIZE
}

/// Total size of a region.
pub fn region_size(max_rings: u32, capacity: u32) -> usize {
    records_offset(max_rings, capacity, max_rings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_is_the_documented_abi() {
        assert_eq!(size_of::<RawRecord>(), RECORD_SIZE);
        assert_eq!(offset_of!(RawRecord, seq), 8);
        assert_eq!(offset_of!(RawRecord, t_ns), 24);
        assert_eq!(offset_of!(RawRecord, args), 56);
        assert_eq!(offset_of!(RawRecord, check), 120);
        assert_eq!(size_of::<RegionHeader>(), HEADER_SIZE);
        assert_eq!(offset_of!(RegionHeader, no_ring), 64);
        assert_eq!(offset_of!(RegionHeader, consumer_attached), 128);
        assert_eq!(offset_of!(RegionHeader, released), 144);
        assert_eq!(size_of::<RingControl>(), CONTROL_SIZE);
        assert_eq!(offset_of!(RingControl, head), 64);
        assert_eq!(offset_of!(RingControl, tail), 128);
    }

    #[test]
    fn checksum_sees_every_field() {
        let base = RawRecord {
            kind: 1,
            nr: 4005,
            ..Default::default()
        };
        let c = checksum(&base);
        let mut m = base;
        m.args[7] = 1;
        assert_ne!(checksum(&m), c);
        let mut m = base;
        m.flags = 1;
        assert_ne!(checksum(&m), c);
        let mut m = base;
        m.pc = 4;
        assert_ne!(checksum(&m), c);
    }
}
