//! Guest architecture from the ELF header.

use shmem_proto::Arch;
use std::io::Read;
use std::path::Path;

/// Why a program's architecture could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Could not read the file.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Program.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not an ELF file.
    #[error("{0} is not an ELF executable (no ELF magic); guestview runs Linux ELF programs")]
    NotElf(String),
    /// An ELF for a machine guestview does not support.
    #[error("{path} is an ELF for {what}, which guestview does not support: {why} (supported: mips, mipsel, arm, aarch64, ppc, ppc64le, riscv64, x86_64)")]
    Unsupported {
        /// Program.
        path: String,
        /// Description of the machine.
        what: String,
        /// Why it cannot be served.
        why: &'static str,
    },
}

const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_MIPS: u16 = 8;
const EM_386: u16 = 3;
const EF_MIPS_ABI2: u32 = 0x20;

/// Decide the guest architecture of an ELF header (the first 64 bytes).
pub fn arch_of_header(path: &str, h: &[u8]) -> Result<Arch, ElfError> {
    if h.len() < 52 || h[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf(path.to_owned()));
    }
    let class64 = match h[4] {
        1 => false,
        2 => true,
        c => {
            return Err(ElfError::Unsupported {
                path: path.into(),
                what: format!("ELF class {c}"),
                why: "it is neither 32- nor 64-bit",
            })
        }
    };
    let big = match h[5] {
        1 => false,
        2 => true,
        d => {
            return Err(ElfError::Unsupported {
                path: path.into(),
                what: format!("ELF data encoding {d}"),
                why: "it is neither little- nor big-endian",
            })
        }
    };
    let u16_at = |o: usize| {
        let b = [h[o], h[o + 1]];
        if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |o: usize| {
        let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let machine = u16_at(18);
    let flags_off = if class64 { 48 } else { 36 };
    let flags = if h.len() >= flags_off + 4 {
        u32_at(flags_off)
    } else {
        0
    };
    let unsupported = |what: &str, why: &'static str| ElfError::Unsupported {
        path: path.into(),
        what: what.into(),
        why,
    };
    const NO_TABLES: &str =
        "guestview has no syscall and errno tables and no syscall-instruction decoder for it";
    match (machine, class64, big) {
        (EM_MIPS, false, _) if flags & EF_MIPS_ABI2 != 0 => Err(unsupported(
            "MIPS n32",
            "of MIPS only the o32 ABI is served (n32 numbers its syscalls from 6000)",
        )),
        (EM_MIPS, false, true) => Ok(Arch::Mips),
        (EM_MIPS, false, false) => Ok(Arch::Mipsel),
        (EM_MIPS, true, _) => Err(unsupported(
            "64-bit MIPS (n64)",
            "of MIPS only the o32 ABI is served (n64 numbers its syscalls from 5000)",
        )),
        (EM_ARM, false, false) => Ok(Arch::Arm),
        (EM_ARM, false, true) => Err(unsupported(
            "big-endian ARM",
            "of 32-bit ARM only little-endian EABI is served",
        )),
        (EM_AARCH64, true, false) => Ok(Arch::Aarch64),
        (EM_AARCH64, _, _) => Err(unsupported(
            "big-endian or ILP32 AArch64",
            "of AArch64 only little-endian LP64 is served",
        )),
        (EM_PPC, false, true) => Ok(Arch::Ppc),
        (EM_PPC64, true, false) => Ok(Arch::Ppc64le),
        (EM_PPC64, true, true) => Err(unsupported(
            "big-endian 64-bit PowerPC",
            "of 64-bit PowerPC only little-endian (ppc64le, ELFv2) is served",
        )),
        (EM_RISCV, true, false) => Ok(Arch::Riscv64),
        (EM_RISCV, false, _) => Err(unsupported(
            "32-bit RISC-V",
            "of RISC-V only the 64-bit ABI is served",
        )),
        (EM_X86_64, true, false) => Ok(Arch::X86_64),
        (EM_X86_64, false, _) => Err(unsupported(
            "x32 (32-bit x86-64)",
            "of x86 only the 64-bit ABI is served",
        )),
        (EM_386, false, false) => Err(unsupported("32-bit x86", NO_TABLES)),
        (m, _, _) => Err(unsupported(
            &machine_name(m).map_or_else(|| format!("machine {m}"), str::to_owned),
            NO_TABLES,
        )),
    }
}

/// The name of an ELF machine number guestview does not serve (from the
/// ELF specification's `e_machine` list), for the refusal.
fn machine_name(m: u16) -> Option<&'static str> {
    Some(match m {
        2 => "SPARC",
        4 => "Motorola 68000",
        15 => "PA-RISC",
        22 => "IBM S/390 (s390x)",
        42 => "SuperH",
        43 => "SPARC V9",
        50 => "IA-64",
        92 => "OpenRISC",
        106 => "Blackfin",
        164 => "Hexagon",
        189 => "MicroBlaze",
        258 => "LoongArch",
        0x9026 => "Alpha",
        _ => return None,
    })
}

/// Read a program's ELF header and decide its architecture.
pub fn arch_of(path: &Path) -> Result<Arch, ElfError> {
    let shown = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|source| ElfError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut h = Vec::with_capacity(64);
    f.by_ref()
        .take(64)
        .read_to_end(&mut h)
        .map_err(|source| ElfError::Io {
            path: shown.clone(),
            source,
        })?;
    arch_of_header(&shown, &h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16, flags: u32) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        let big = data == 2;
        let m = if big {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        let off = if class == 2 { 48 } else { 36 };
        let f = if big {
            flags.to_be_bytes()
        } else {
            flags.to_le_bytes()
        };
        h[off..off + 4].copy_from_slice(&f);
        h
    }

    #[test]
    fn every_supported_architecture() {
        let cases = [
            (1, 2, EM_MIPS, 0x7000_1007, Arch::Mips),
            (1, 1, EM_MIPS, 0x7000_1007, Arch::Mipsel),
            (1, 1, EM_ARM, 0x0500_0400, Arch::Arm),
            (2, 1, EM_AARCH64, 0, Arch::Aarch64),
            (1, 2, EM_PPC, 0, Arch::Ppc),
            (2, 1, EM_PPC64, 2, Arch::Ppc64le),
            (2, 1, EM_RISCV, 5, Arch::Riscv64),
            (2, 1, EM_X86_64, 0, Arch::X86_64),
        ];
        for (c, d, m, f, a) in cases {
            assert_eq!(arch_of_header("p", &header(c, d, m, f)).unwrap(), a);
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = arch_of_header("x", b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an ELF"), "{e}");
        let e = arch_of_header("x", &header(1, 2, EM_MIPS, EF_MIPS_ABI2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MIPS n32"), "{e}");
        let e = arch_of_header("x", &header(1, 1, 3, 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("32-bit x86"), "{e}");
        let e = arch_of_header("x", &header(2, 2, EM_MIPS, 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("64-bit MIPS (n64)") && e.contains("o32"), "{e}");
        let e = arch_of_header("x", &header(2, 2, 22, 0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("IBM S/390 (s390x)") && e.contains("no syscall"),
            "{e}"
        );
        let e = arch_of_header("x", &header(2, 2, EM_PPC64, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("big-endian 64-bit PowerPC"), "{e}");
        assert!(arch_of_header("x", &[0x7f, b'E', b'L', b'F']).is_err());
    }
}
