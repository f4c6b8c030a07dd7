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
        // ARM SVC (any condition), or Thumb SVC (0xdfxx) when 2 bytes.
        Arch::Arm => match bytes.len() {
            2 => bytes[1] == 0xdf,
            _ => word(bytes, false).is_some_and(|w| w & 0x0f00_0000 == 0x0f00_0000),
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
        assert!(is_syscall(Arch::Ppc, &0x4400_0002u32.to_be_bytes()));
        assert!(is_syscall(Arch::Ppc64le, &0x4400_0002u32.to_le_bytes()));
        assert!(is_syscall(Arch::Riscv64, &0x73u32.to_le_bytes()));
        assert!(is_syscall(Arch::X86_64, &[0x0f, 0x05]));
        assert!(!is_syscall(Arch::X86_64, &[0x0f, 0x05, 0x90]));
    }
}
