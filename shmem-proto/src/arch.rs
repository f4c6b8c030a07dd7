//! Guest architectures, as both sides of the ring name them.

/// A guest architecture guestview knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Big-endian MIPS, o32 ABI.
    Mips,
    /// Little-endian MIPS, o32 ABI.
    Mipsel,
    /// 32-bit ARM, EABI hard-float.
    Arm,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit big-endian PowerPC.
    Ppc,
    /// 64-bit little-endian PowerPC.
    Ppc64le,
    /// 64-bit RISC-V.
    Riscv64,
    /// x86-64.
    X86_64,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 8] = [
        Arch::Mips,
        Arch::Mipsel,
        Arch::Arm,
        Arch::Aarch64,
        Arch::Ppc,
        Arch::Ppc64le,
        Arch::Riscv64,
        Arch::X86_64,
    ];

    /// Stable numeric id used in ring records.
    pub fn id(self) -> u32 {
        match self {
            Arch::Mips => 1,
            Arch::Mipsel => 2,
            Arch::Arm => 3,
            Arch::Aarch64 => 4,
            Arch::Ppc => 5,
            Arch::Ppc64le => 6,
            Arch::Riscv64 => 7,
            Arch::X86_64 => 8,
        }
    }

    /// The architecture with this id.
    pub fn from_id(id: u32) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.id() == id)
    }

    /// guestview's name (also the `qemu-<name>` suffix).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mips => "mips",
            Arch::Mipsel => "mipsel",
            Arch::Arm => "arm",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc => "ppc",
            Arch::Ppc64le => "ppc64le",
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// Parse guestview's name.
    pub fn from_name(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Map QEMU's `target_name` (from `qemu_info_t`) to an architecture.
    pub fn from_qemu_target(s: &str) -> Option<Arch> {
        match s {
            "mips" => Some(Arch::Mips),
            "mipsel" => Some(Arch::Mipsel),
            "arm" => Some(Arch::Arm),
            "aarch64" => Some(Arch::Aarch64),
            "ppc" => Some(Arch::Ppc),
            "ppc64le" => Some(Arch::Ppc64le),
            "riscv64" => Some(Arch::Riscv64),
            "x86_64" => Some(Arch::X86_64),
            _ => None,
        }
    }

    /// Is guest memory big-endian?
    pub fn big_endian(self) -> bool {
        matches!(self, Arch::Mips | Arch::Ppc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(Arch::from_id(a.id()), Some(a));
            assert_eq!(Arch::from_name(a.name()), Some(a));
            assert_eq!(Arch::from_qemu_target(a.name()), Some(a));
        }
        assert_eq!(Arch::from_id(0), None);
    }
}
