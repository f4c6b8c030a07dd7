//! guestview's host side: launch QEMU with the plugin under the eBPF
//! tracer, join the guest and host views of every syscall, judge each guest
//! call, and write live output, traces and reports.
//!
//! The `guestview` binary is a thin layer over this library.
#![deny(missing_docs)]

pub mod diff;
pub mod elf;
pub mod enforce;
pub mod join;
pub mod launch;
pub mod output;
pub mod policy;
pub mod report;
pub mod rootfs;
pub mod run;
pub mod sandbox;
pub mod seccomp;
pub mod symbols;
pub mod tables;
pub mod verdict;

/// Errors of guestview's commands, by who must act.
#[derive(Debug, thiserror::Error)]
pub enum GuestviewError {
    /// The user gave something unusable (bad program, arguments, file).
    #[error("{0}")]
    Input(String),
    /// The machine is not ready (no root, no BPF, no QEMU, no plugin).
    #[error("{0}")]
    Setup(String),
    /// Already explained on stderr by someone else (the plugin refused to
    /// serve this QEMU: its one line is the message); exit code 2.
    #[error("{0}")]
    Reported(String),
}
