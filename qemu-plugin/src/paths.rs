// SPDX-License-Identifier: GPL-2.0-or-later
//! Which argument of a guest syscall is a path, by guest syscall number:
//! the names in `shmem_proto::paths` numbered with the guest
//! architecture's table, in a dense array so the syscall callback pays one
//! bounds check and one load.

use shmem_proto::Arch;

/// Path argument index per guest syscall number.
pub struct PathArgs {
    /// Number of the first entry.
    base: i64,
    /// Argument index + 1 per number from `base` on; 0: no path argument.
    index: Vec<u8>,
}

impl PathArgs {
    /// The table for `arch`.
    pub fn new(arch: Arch) -> PathArgs {
        let known: Vec<(i64, u8)> = shmem_proto::paths::PATH_ARGS
            .iter()
            .filter_map(|(name, i)| Some((crate::out::syscall_nr(arch, name)?, *i as u8)))
            .collect();
        let base = known.iter().map(|(n, _)| *n).min().unwrap_or(0);
        let top = known.iter().map(|(n, _)| *n).max().unwrap_or(-1);
        let mut index = vec![0u8; usize::try_from(top - base + 1).unwrap_or(0)];
        for (n, i) in known {
            index[(n - base) as usize] = i + 1;
        }
        PathArgs { base, index }
    }

    /// The path argument of guest syscall `nr`, if it has one.
    #[inline]
    pub fn arg(&self, nr: i64) -> Option<u8> {
        let i = usize::try_from(nr.wrapping_sub(self.base)).ok()?;
        self.index
            .get(i)
            .copied()
            .filter(|v| *v != 0)
            .map(|v| v - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mips_and_x86_64_numbers() {
        let m = PathArgs::new(Arch::Mips);
        assert_eq!(m.arg(4005), Some(0)); // open
        assert_eq!(m.arg(4288), Some(1)); // openat
        assert_eq!(m.arg(4004), None); // write
        assert_eq!(m.arg(-1), None);
        assert_eq!(m.arg(i64::MAX), None);
        let x = PathArgs::new(Arch::X86_64);
        assert_eq!(x.arg(2), Some(0)); // open
        assert_eq!(x.arg(257), Some(1)); // openat
        assert_eq!(x.arg(59), Some(0)); // execve
        assert_eq!(x.arg(1), None);
    }
}
