//! The wire between guestview's QEMU plugin and its correlator.
//!
//! * [`layout`]: the bytes of the shared region (one definition);
//! * [`ring`]: creating/attaching a region, the lock-free SPSC producer and
//!   the validating consumer;
//! * [`record`]: raw records become domain types, with validation;
//! * [`trace`]: the trace file container and its event types;
//! * [`arch`]: guest architecture ids shared by both sides;
//! * [`paths`]: which syscall argument is a path.
#![deny(missing_docs)]

pub mod arch;
pub mod layout;
pub mod paths;
pub mod record;
pub mod ring;
pub mod trace;
mod wire;

pub use arch::Arch;
pub use record::{GuestRecord, Origin, RecordError};
pub use ring::{
    monotonic_ns, Backoff, Consumer, Producer, Pushed, Region, RegionError, RegionParams,
    RingEvent, RingStats,
};

/// The `fcntl` command with which the plugin, once it has mapped the eBPF
/// ring's producer page (`hostpos=`), tells guestview's eBPF programs that
/// its process reads ring positions: `fcntl(-1, HOSTPOS_FCNTL_CMD)` fails
/// with `EBADF` and changes nothing, and the programs, which see every
/// syscall of the process, stop timing its host calls from then on. Said
/// from within the image, it is in step with execs (which end it). The
/// eBPF side's `GV_UNTIMED_FCNTL_CMD` ("gvps").
pub const HOSTPOS_FCNTL_CMD: i32 = 0x6776_7073;
