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
    monotonic_ns, Consumer, Producer, Pushed, Region, RegionError, RegionParams, RingEvent,
    RingStats,
};
