//! The policy's `flags` matcher: `open` flag names, each architecture with
//! its own numbering.
//!
//! The values are those of the Linux UAPI `<asm/fcntl.h>` of each
//! architecture (asm-generic, with the overrides of mips, arm/arm64 and
//! powerpc); a test checks them against the headers Debian installs.
//!
//! `flags = ["O_WRONLY", "O_RDWR", "O_CREAT|O_TRUNC"]` matches a call whose
//! flags contain *any* element, an element `A|B` meaning *all* of A and B.
//! `O_RDONLY`, `O_WRONLY` and `O_RDWR` compare the access mode (the two low
//! bits), the others test their bits.

use shmem_proto::Arch;

/// Names the matcher knows.
pub const NAMES: &[&str] = &[
    "O_RDONLY",
    "O_WRONLY",
    "O_RDWR",
    "O_CREAT",
    "O_EXCL",
    "O_NOCTTY",
    "O_TRUNC",
    "O_APPEND",
    "O_NONBLOCK",
    "O_DSYNC",
    "O_DIRECT",
    "O_LARGEFILE",
    "O_DIRECTORY",
    "O_NOFOLLOW",
    "O_NOATIME",
    "O_CLOEXEC",
    "O_SYNC",
    "O_PATH",
    "O_TMPFILE",
];

/// The value of `name` on `arch` (access modes: 0, 1, 2).
pub fn value(arch: Arch, name: &str) -> Option<u64> {
    let generic = |n: &str| -> Option<u64> {
        Some(match n {
            "O_RDONLY" => 0,
            "O_WRONLY" => 1,
            "O_RDWR" => 2,
            "O_CREAT" => 0o100,
            "O_EXCL" => 0o200,
            "O_NOCTTY" => 0o400,
            "O_TRUNC" => 0o1000,
            "O_APPEND" => 0o2000,
            "O_NONBLOCK" => 0o4000,
            "O_DSYNC" => 0o10000,
            "O_DIRECT" => 0o40000,
            "O_LARGEFILE" => 0o100000,
            "O_DIRECTORY" => 0o200000,
            "O_NOFOLLOW" => 0o400000,
            "O_NOATIME" => 0o1000000,
            "O_CLOEXEC" => 0o2000000,
            "__O_SYNC" => 0o4000000,
            "O_PATH" => 0o10000000,
            "__O_TMPFILE" => 0o20000000,
            _ => return None,
        })
    };
    let own = |n: &str| -> Option<u64> {
        match arch {
            Arch::Mips | Arch::Mipsel => Some(match n {
                "O_APPEND" => 0x0008,
                "O_DSYNC" => 0x0010,
                "O_NONBLOCK" => 0x0080,
                "O_CREAT" => 0x0100,
                "O_TRUNC" => 0x0200,
                "O_EXCL" => 0x0400,
                "O_NOCTTY" => 0x0800,
                "O_LARGEFILE" => 0x2000,
                "__O_SYNC" => 0x4000,
                "O_DIRECT" => 0x8000,
                _ => return generic(n),
            }),
            Arch::Arm | Arch::Aarch64 => Some(match n {
                "O_DIRECTORY" => 0o40000,
                "O_NOFOLLOW" => 0o100000,
                "O_DIRECT" => 0o200000,
                "O_LARGEFILE" => 0o400000,
                _ => return generic(n),
            }),
            Arch::Ppc | Arch::Ppc64le => Some(match n {
                "O_DIRECTORY" => 0o40000,
                "O_NOFOLLOW" => 0o100000,
                "O_LARGEFILE" => 0o200000,
                "O_DIRECT" => 0o400000,
                _ => return generic(n),
            }),
            Arch::Riscv64 | Arch::X86_64 => generic(n),
        }
    };
    match name {
        "O_SYNC" => Some(own("__O_SYNC")? | own("O_DSYNC")?),
        "O_TMPFILE" => Some(own("__O_TMPFILE")? | own("O_DIRECTORY")?),
        n if NAMES.contains(&n) => own(n),
        _ => None,
    }
}

/// A compiled `flags` matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsMatch {
    /// Alternatives; each a conjunction of names.
    any_of: Vec<Vec<String>>,
}

impl FlagsMatch {
    /// Compile the elements (`"O_WRONLY"`, `"O_CREAT|O_TRUNC"`).
    pub fn new<S: AsRef<str>>(elems: &[S]) -> Result<FlagsMatch, String> {
        if elems.is_empty() {
            return Err("flags: an empty list matches nothing".into());
        }
        let mut any_of = Vec::new();
        for e in elems {
            let mut all = Vec::new();
            for n in e.as_ref().split('|').map(str::trim) {
                if !NAMES.contains(&n) {
                    return Err(format!(
                        "flags: unknown flag '{n}' (known: {})",
                        NAMES.join(", ")
                    ));
                }
                all.push(n.to_owned());
            }
            any_of.push(all);
        }
        Ok(FlagsMatch { any_of })
    }

    /// Do `flags` (in `arch`'s numbering) match?
    pub fn matches(&self, arch: Arch, flags: u64) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|n| {
                let Some(v) = value(arch, n) else {
                    return false;
                };
                match n.as_str() {
                    "O_RDONLY" | "O_WRONLY" | "O_RDWR" => flags & 3 == v,
                    _ => flags & v == v,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_arch_values() {
        assert_eq!(value(Arch::X86_64, "O_CREAT"), Some(0x40));
        assert_eq!(value(Arch::Mips, "O_CREAT"), Some(0x100));
        assert_eq!(value(Arch::Arm, "O_DIRECTORY"), Some(0x4000));
        assert_eq!(value(Arch::Mips, "O_DIRECTORY"), Some(0x10000));
        assert_eq!(value(Arch::X86_64, "O_SYNC"), Some(0x101000));
        assert_eq!(value(Arch::X86_64, "O_TMPFILE"), Some(0x410000));
        assert_eq!(value(Arch::X86_64, "O_BOGUS"), None);
        assert_eq!(value(Arch::X86_64, "__O_SYNC"), None);
    }

    #[test]
    fn host_values_are_libc_values() {
        assert_eq!(value(Arch::X86_64, "O_CREAT"), Some(libc::O_CREAT as u64));
        assert_eq!(
            value(Arch::X86_64, "O_CLOEXEC"),
            Some(libc::O_CLOEXEC as u64)
        );
        assert_eq!(value(Arch::X86_64, "O_PATH"), Some(libc::O_PATH as u64));
        assert_eq!(
            value(Arch::X86_64, "O_TMPFILE"),
            Some(libc::O_TMPFILE as u64)
        );
        assert_eq!(
            value(Arch::X86_64, "O_NOFOLLOW"),
            Some(libc::O_NOFOLLOW as u64)
        );
        assert_eq!(value(Arch::X86_64, "O_SYNC"), Some(libc::O_SYNC as u64));
    }

    /// The tables agree with the UAPI headers where Debian installed them.
    #[test]
    fn values_agree_with_installed_headers() {
        let headers = [
            (Arch::X86_64, "/usr/include/asm-generic/fcntl.h", None),
            (
                Arch::Mips,
                "/usr/mips-linux-gnu/include/asm/fcntl.h",
                Some("/usr/mips-linux-gnu/include/asm-generic/fcntl.h"),
            ),
            (
                Arch::Arm,
                "/usr/arm-linux-gnueabihf/include/asm/fcntl.h",
                Some("/usr/arm-linux-gnueabihf/include/asm-generic/fcntl.h"),
            ),
            (
                Arch::Ppc,
                "/usr/powerpc-linux-gnu/include/asm/fcntl.h",
                Some("/usr/powerpc-linux-gnu/include/asm-generic/fcntl.h"),
            ),
        ];
        let mut checked = 0;
        for (arch, own, generic) in headers {
            let Ok(text) = std::fs::read_to_string(own) else {
                continue;
            };
            let mut defs = std::collections::HashMap::new();
            // The arch header overrides; the generic one fills in.
            for t in [
                Some(text),
                generic.and_then(|g| std::fs::read_to_string(g).ok()),
            ]
            .into_iter()
            .flatten()
            {
                for line in t.lines() {
                    let mut w = line.split_whitespace();
                    if w.next() != Some("#define") {
                        continue;
                    }
                    let (Some(name), Some(v)) = (w.next(), w.next()) else {
                        continue;
                    };
                    let v = if let Some(h) = v.strip_prefix("0x") {
                        u64::from_str_radix(h, 16).ok()
                    } else if v.len() > 1 && v.starts_with('0') {
                        u64::from_str_radix(&v[1..], 8).ok()
                    } else {
                        v.parse().ok()
                    };
                    if let Some(v) = v {
                        defs.entry(name.to_owned()).or_insert(v);
                    }
                }
            }
            for n in NAMES {
                if let Some(&v) = defs.get(*n) {
                    assert_eq!(value(arch, n), Some(v), "{arch:?} {n}");
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 15,
            "only {checked} flags checked against headers"
        );
    }

    #[test]
    fn matcher_semantics() {
        let f = FlagsMatch::new(&["O_WRONLY", "O_RDWR", "O_CREAT|O_TRUNC"]).unwrap();
        let x = Arch::X86_64;
        assert!(f.matches(x, 1));
        assert!(f.matches(x, 2));
        assert!(!f.matches(x, 0));
        assert!(!f.matches(x, 0x40));
        assert!(f.matches(x, 0x240));
        // MIPS numbering: O_CREAT 0x100, O_TRUNC 0x200.
        assert!(f.matches(Arch::Mips, 0x300));
        assert!(!f.matches(Arch::Mips, 0x240));
        let r = FlagsMatch::new(&["O_RDONLY"]).unwrap();
        assert!(r.matches(x, 0x80000));
        assert!(!r.matches(x, 1));
        assert!(FlagsMatch::new(&["O_NOPE"]).is_err());
        assert!(FlagsMatch::new::<&str>(&[]).is_err());
    }
}
