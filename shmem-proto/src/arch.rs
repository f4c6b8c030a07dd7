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

    /// Are the guest's registers (and pointers) 64 bits wide?
    pub fn is_64bit(self) -> bool {
        matches!(
            self,
            Arch::Aarch64 | Arch::Ppc64le | Arch::Riscv64 | Arch::X86_64
        )
    }

    /// A syscall argument as the guest's register holds it. QEMU hands a
    /// 32-bit guest's `abi_long` arguments to plugins sign-extended to 64
    /// bits (`AT_FDCWD` arrives as `0xffffffffffffff9c`, a pointer above
    /// 2 GiB as `0xffffffff8…`); the register has the low 32 bits only.
    pub fn guest_word(self, v: u64) -> u64 {
        if self.is_64bit() {
            v
        } else {
            v & 0xffff_ffff
        }
    }

    /// A syscall result as the guest's ABI reads it. On a 32-bit guest the
    /// 64-bit value QEMU reports is the 32-bit result sign-extended: values
    /// in the error range (-4095..=-1) are errors and stay negative, every
    /// other value is the unsigned 32-bit word (an address above 2 GiB is
    /// not negative).
    pub fn guest_ret(self, r: i64) -> i64 {
        if self.is_64bit() {
            return r;
        }
        let low = r as i32;
        if (-4095..0).contains(&low) {
            i64::from(low)
        } else {
            i64::from(low as u32)
        }
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

    #[test]
    fn thirty_two_bit_guests_see_thirty_two_bit_words() {
        for a in [Arch::Mips, Arch::Mipsel, Arch::Arm, Arch::Ppc] {
            assert!(!a.is_64bit());
            assert_eq!(a.guest_word(0xffff_ffff_ffff_ff9c), 0xffff_ff9c, "{a:?}");
            assert_eq!(a.guest_word(0x4a10a0), 0x4a10a0);
            // errors stay negative, addresses above 2 GiB do not
            assert_eq!(a.guest_ret(-2), -2);
            assert_eq!(a.guest_ret(-4095), -4095);
            assert_eq!(a.guest_ret(-4096), 0xffff_f000);
            assert_eq!(a.guest_ret(0xffff_ffff_b6f0_0000_u64 as i64), 0xb6f0_0000);
            assert_eq!(a.guest_ret(0xb6f0_0000), 0xb6f0_0000, "already unsigned");
            assert_eq!(a.guest_ret(0xffff_fffe), -2, "an error however it came");
            assert_eq!(a.guest_ret(7), 7);
        }
        for a in [Arch::Aarch64, Arch::Ppc64le, Arch::Riscv64, Arch::X86_64] {
            assert!(a.is_64bit());
            assert_eq!(a.guest_word(0xffff_ffff_ffff_ff9c), 0xffff_ffff_ffff_ff9c);
            assert_eq!(a.guest_ret(-4096), -4096);
            assert_eq!(a.guest_ret(0x7f00_0000_0000), 0x7f00_0000_0000);
        }
    }
}
