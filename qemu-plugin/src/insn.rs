// SPDX-License-Identifier: GPL-2.0-or-later
//! Recognising each architecture's syscall instruction from its bytes, so
//! the plugin can record the guest PC of every syscall on plugin API v1
//! (which has no register access).

use shmem_proto::Arch;

/// Longest encoding we need to look at.
pub const MAX_LEN: usize = 4;

fn word(bytes: &[u8], big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// Is `bytes` (an instruction as it sits in guest memory) this
/// architecture's syscall instruction?
pub fn is_syscall(arch: Arch, bytes: &[u8]) -> bool {
    match arch {
        // SYSCALL: SPECIAL opcode 0, function 0x0c, 20-bit code field free.
        Arch::Mips | Arch::Mipsel => {
            word(bytes, arch.big_endian()).is_some_and(|w| w & 0xfc00_003f == 0x0000_000c)
        }
        // Thumb SVC (0xdfxx) when 2 bytes; when 4, an ARM-state SVC
        // (condition 0x0..=0xe, bits 27..24 all set). Debian's armhf code is
        // Thumb-2, whose 32-bit instructions also come as 4 bytes: their
        // first halfword starts with 0b11101, 0b11110 or 0b11111 (it is the
        // low half of the little-endian word), which no ARM SVC the kernel
        // serves has in its immediate's low half (EABI `svc 0`, OABI
        // 0x9000nn..0x9f07ff). Without that test `mrc p15, …, cr13` (the
        // TLS read, 0xee1d 0x0f70) would look like an SVC.
        Arch::Arm => match bytes.len() {
            2 => bytes[1] == 0xdf,
            _ => word(bytes, false).is_some_and(|w| {
                w & 0x0f00_0000 == 0x0f00_0000 && w >> 28 != 0xf && w & 0xf800 < 0xe800
            }),
        },
        // SVC #imm16.
        Arch::Aarch64 => word(bytes, false).is_some_and(|w| w & 0xffe0_001f == 0xd400_0001),
        // sc (and scv 0).
        Arch::Ppc | Arch::Ppc64le => {
            word(bytes, arch.big_endian()).is_some_and(|w| w == 0x4400_0002 || w == 0x4400_0001)
        }
        // ecall.
        Arch::Riscv64 => word(bytes, false) == Some(0x0000_0073),
        // syscall (0f 05).
        Arch::X86_64 => bytes.len() == 2 && bytes == [0x0f, 0x05],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mips_syscall_with_and_without_code() {
        assert!(is_syscall(Arch::Mips, &[0, 0, 0, 0x0c]));
        assert!(is_syscall(Arch::Mips, &[0, 0x01, 0x02, 0x0c]));
        assert!(is_syscall(Arch::Mipsel, &[0x0c, 0, 0, 0]));
        assert!(
            !is_syscall(Arch::Mips, &[0x0c, 0, 0, 0]),
            "byte order matters"
        );
        assert!(
            !is_syscall(Arch::Mips, &[0, 0, 0, 0x0d]),
            "break is not syscall"
        );
        assert!(!is_syscall(Arch::Mips, &[0, 0]));
    }

    #[test]
    fn other_architectures() {
        assert!(is_syscall(Arch::Aarch64, &0xd400_0001u32.to_le_bytes()));
        assert!(is_syscall(Arch::Arm, &0xef00_0000u32.to_le_bytes()));
        assert!(is_syscall(Arch::Arm, &[0x00, 0xdf]));
        assert!(
            is_syscall(Arch::Arm, &0x0f90_0014u32.to_le_bytes()),
            "OABI svc, cond EQ"
        );
        assert!(is_syscall(Arch::Ppc, &0x4400_0002u32.to_be_bytes()));
        assert!(is_syscall(Arch::Ppc64le, &0x4400_0002u32.to_le_bytes()));
        assert!(is_syscall(Arch::Riscv64, &0x73u32.to_le_bytes()));
        assert!(is_syscall(Arch::X86_64, &[0x0f, 0x05]));
        assert!(!is_syscall(Arch::X86_64, &[0x0f, 0x05, 0x90]));
    }

    /// Instructions from Debian's armhf glibc 2.36 (Thumb-2), as objdump
    /// shows them, that are not SVCs although their bytes have the SVC bits.
    #[test]
    fn thumb2_instructions_are_not_arm_svcs() {
        // mrc 15, 0, r0, cr13, cr0, {3}  (__errno_location's TLS read)
        assert!(!is_syscall(Arch::Arm, &[0x1d, 0xee, 0x70, 0x0f]));
        // the svc of __libc_do_syscall: df00
        assert!(is_syscall(Arch::Arm, &[0x00, 0xdf]));
        // push {r7, lr}: b580, not an SVC
        assert!(!is_syscall(Arch::Arm, &[0x80, 0xb5]));
        // unconditional space (cond 0xf) is never an SVC
        assert!(!is_syscall(Arch::Arm, &0xff00_0000u32.to_le_bytes()));
    }

    /// The syscall instructions of the static glibc 2.36 programs, as the
    /// cross objdump prints their bytes at the PCs guestview records.
    #[test]
    fn syscall_instructions_of_real_binaries() {
        assert!(is_syscall(Arch::Aarch64, &[0x01, 0x00, 0x00, 0xd4])); // svc #0x0
        assert!(is_syscall(Arch::Ppc, &[0x44, 0x00, 0x00, 0x02])); // sc
        assert!(is_syscall(Arch::Ppc64le, &[0x02, 0x00, 0x00, 0x44])); // sc
        assert!(!is_syscall(Arch::Ppc64le, &[0x44, 0x00, 0x00, 0x02]));
        assert!(is_syscall(Arch::Riscv64, &[0x73, 0x00, 0x00, 0x00])); // ecall
        assert!(
            !is_syscall(Arch::Riscv64, &[0x73, 0x00, 0x10, 0x00]),
            "ebreak"
        );
        assert!(is_syscall(Arch::X86_64, &[0x0f, 0x05])); // syscall
        assert!(!is_syscall(Arch::X86_64, &[0x0f, 0x34]), "sysenter");
    }
}
