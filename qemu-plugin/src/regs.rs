// SPDX-License-Identifier: GPL-2.0-or-later
//! Per-architecture facts the plugin needs to read guest state through
//! QEMU's register API (plugin API v2+): which register is the PC, where it
//! points when QEMU calls the syscall callback, which register holds a
//! signal handler's first argument, and the guest's word size.
//!
//! Register names are those of QEMU's gdbstub XML (`gdb-xml/*.xml`), which
//! is what `qemu_plugin_get_registers` lists. QEMU 10.2 has no such XML for
//! MIPS, so it lists no MIPS register at all: there the plugin falls back to
//! instruction instrumentation for the PC (as on API v1) and cannot read a
//! handled fault's signal.

use crate::sys::{self, ByteBuf, Register};
use shmem_proto::Arch;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How far past the syscall instruction the PC register points while QEMU
/// runs the syscall callbacks (each target's `cpu_loop` in QEMU's
/// linux-user advances it before calling `do_syscall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallLen {
    /// Always this many bytes.
    Fixed(u64),
    /// 32-bit ARM: 2 bytes in Thumb state (bit 5, T, of `cpsr`), else 4.
    ArmOrThumb,
}

/// What the plugin needs to know about an architecture's registers.
#[derive(Clone, Copy, Debug)]
pub struct ArchRegs {
    /// Names the PC register may have, in the order tried.
    pub pc: &'static [&'static str],
    /// Where the PC points at a syscall callback, relative to the syscall instruction.
    pub syscall_len: SyscallLen,
    /// The register holding a signal handler's first argument (the signal number).
    pub signal_arg: &'static [&'static str],
    /// The register with the Thumb bit (ARM only).
    pub status: Option<&'static str>,
    /// Guest pointer width in bits (QEMU sign-extends 32-bit arguments).
    pub word_bits: u32,
}

/// The table, one row per architecture.
pub fn of(arch: Arch) -> ArchRegs {
    let (pc, syscall_len, signal_arg, status, word_bits): (
        &'static [&'static str],
        SyscallLen,
        &'static [&'static str],
        Option<&'static str>,
        u32,
    ) = match arch {
        // cpu_loop: `env->active_tc.PC += 4` before do_syscall.
        Arch::Mips | Arch::Mipsel => (&["pc"], SyscallLen::Fixed(4), &["a0", "r4"], None, 32),
        // regs[15] is past the SVC (the OABI path reads it at regs[15] - 4).
        Arch::Arm => (&["pc"], SyscallLen::ArmOrThumb, &["r0"], Some("cpsr"), 32),
        // The SVC exception leaves pc past the instruction (restart: pc -= 4).
        Arch::Aarch64 => (&["pc"], SyscallLen::Fixed(4), &["x0"], None, 64),
        // cpu_loop: `env->nip += 4` before do_syscall.
        Arch::Ppc => (&["pc", "nip"], SyscallLen::Fixed(4), &["r3"], None, 32),
        Arch::Ppc64le => (&["pc", "nip"], SyscallLen::Fixed(4), &["r3"], None, 64),
        // cpu_loop: `env->pc += 4` before do_syscall.
        Arch::Riscv64 => (&["pc"], SyscallLen::Fixed(4), &["a0"], None, 64),
        // EXCP_SYSCALL leaves eip past `syscall` (restart: eip -= 2).
        Arch::X86_64 => (&["rip"], SyscallLen::Fixed(2), &["rdi"], None, 64),
    };
    ArchRegs {
        pc,
        syscall_len,
        signal_arg,
        status,
        word_bits,
    }
}

impl ArchRegs {
    /// A syscall argument as a guest address (QEMU hands 32-bit guests'
    /// arguments over sign-extended).
    pub fn address(&self, arg: u64) -> u64 {
        if self.word_bits == 32 {
            arg & 0xffff_ffff
        } else {
            arg
        }
    }
}

/// The registers of one vCPU the plugin reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegs {
    /// The PC.
    pub pc: Option<Register>,
    /// ARM's `cpsr` (Thumb bit).
    pub status: Option<Register>,
    /// A signal handler's first argument.
    pub signal_arg: Option<Register>,
}

impl VcpuRegs {
    /// Look the registers up by name for the current vCPU (vCPU context).
    pub fn find(arch: &ArchRegs) -> VcpuRegs {
        let all = sys::registers();
        let by = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| all.iter().find(|(name, _)| name == n).map(|(_, r)| *r))
        };
        VcpuRegs {
            pc: by(arch.pc),
            status: arch.status.and_then(|s| by(&[s])),
            signal_arg: by(arch.signal_arg),
        }
    }

    /// The guest PC of the syscall instruction being executed (in a
    /// syscall callback).
    pub fn syscall_pc(&self, arch: &ArchRegs, big_endian: bool, buf: &mut ByteBuf) -> Option<u64> {
        let pc = sys::read_register(self.pc?, buf, big_endian)?;
        let len = match arch.syscall_len {
            SyscallLen::Fixed(n) => n,
            SyscallLen::ArmOrThumb => {
                let cpsr = sys::read_register(self.status?, buf, big_endian)?;
                if cpsr & (1 << 5) != 0 {
                    2
                } else {
                    4
                }
            }
        };
        Some(pc.wrapping_sub(len) & mask(arch.word_bits))
    }

    /// The signal a handler was just entered with (in a discontinuity
    /// callback whose `to_pc` is the handler).
    pub fn handler_signal(
        &self,
        arch: &ArchRegs,
        big_endian: bool,
        buf: &mut ByteBuf,
    ) -> Option<u32> {
        let v = sys::read_register(self.signal_arg?, buf, big_endian)? & mask(arch.word_bits);
        u32::try_from(v).ok().filter(|s| (1..=64).contains(s))
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// vCPUs whose registers are kept in [`TABLE`]; others look theirs up on
/// their own thread.
pub const TABLE_VCPUS: usize = 1024;

/// Per-vCPU register handles, filled by the vCPU init callback (on the
/// vCPU's own thread, before any other callback of that vCPU).
static TABLE: [[AtomicUsize; 3]; TABLE_VCPUS] =
    [const { [const { AtomicUsize::new(0) }; 3] }; TABLE_VCPUS];

/// Remember a vCPU's registers.
pub fn store(vcpu: u32, r: VcpuRegs) {
    if let Some(slot) = TABLE.get(vcpu as usize) {
        let bits = |r: Option<Register>| r.map_or(0, Register::to_bits);
        slot[0].store(bits(r.pc), Ordering::Release);
        slot[1].store(bits(r.status), Ordering::Release);
        slot[2].store(bits(r.signal_arg), Ordering::Release);
    }
}

/// A vCPU's registers as [`store`]d; `None` if it has no entry.
pub fn load(vcpu: u32) -> Option<VcpuRegs> {
    let slot = TABLE.get(vcpu as usize)?;
    let get = |i: usize| Register::from_bits(slot[i].load(Ordering::Acquire));
    let r = VcpuRegs {
        pc: get(0),
        status: get(1),
        signal_arg: get(2),
    };
    (r != VcpuRegs::default()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_a_row() {
        for a in Arch::ALL {
            let r = of(a);
            assert!(!r.pc.is_empty() && !r.signal_arg.is_empty(), "{a:?}");
            assert_eq!(r.status.is_some(), a == Arch::Arm, "{a:?}");
        }
        assert_eq!(of(Arch::X86_64).syscall_len, SyscallLen::Fixed(2));
        assert_eq!(of(Arch::Mips).address(0xffff_ffff_8000_0000), 0x8000_0000);
        assert_eq!(of(Arch::Aarch64).address(u64::MAX), u64::MAX);
    }
}
