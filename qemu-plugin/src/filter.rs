// SPDX-License-Identifier: GPL-2.0-or-later
//! The guest layer of a policy (`policy=RULES`): on a QEMU with the
//! syscall-filter API (our 10.2, upstream 11) the plugin answers the guest
//! calls a `deny` rule refuses, and QEMU makes no host call for them.
//!
//! guestview compiles the policy for the guest architecture into entries,
//! tried in order per guest syscall number, the first that matches
//! deciding: `NR.p[.GLOB]` lets the call go on (an allowing rule, or one
//! the plugin cannot judge: the host layers decide), `NR.ERRNO[.GLOB]`
//! answers `-ERRNO` (guest numbering). GLOB (hex of the text) is matched on
//! the call's path read from guest memory: `*` (no `/`), `**`, `?` and
//! literal characters. Entries are separated by `:`.
//!
//! A guest that controls QEMU can skip this layer; the host layers stand
//! behind it (docs/threat-model.md).

use std::collections::HashMap;

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// `None`: let the call go on; `Some(e)`: answer `-e`.
    errno: Option<i64>,
    glob: Option<Vec<u8>>,
}

/// The entries per guest syscall number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    by_nr: HashMap<i64, Vec<Entry>>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Rules {
    /// Parse the `policy=` argument.
    pub fn parse(s: &str) -> Result<Rules, String> {
        let mut r = Rules::default();
        for e in s.split(':').filter(|e| !e.is_empty()) {
            let bad = || format!("policy=: bad entry '{e}'");
            let mut f = e.split('.');
            let nr: i64 = f.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
            let errno = match f.next().ok_or_else(bad)? {
                "p" => None,
                n => Some(n.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad)?),
            };
            let glob = f.next().map(|g| unhex(g).ok_or_else(bad)).transpose()?;
            if f.next().is_some() {
                return Err(bad());
            }
            r.by_nr.entry(nr).or_default().push(Entry { errno, glob });
        }
        Ok(r)
    }

    /// Does any entry look at the path of `nr`?
    pub fn wants_path(&self, nr: i64) -> bool {
        self.by_nr
            .get(&nr)
            .is_some_and(|v| v.iter().any(|e| e.glob.is_some()))
    }

    /// The errno to answer guest call `nr` with (its path, if read), or
    /// `None` to let it go on.
    pub fn decide(&self, nr: i64, path: Option<&[u8]>) -> Option<i64> {
        for e in self.by_nr.get(&nr)? {
            if let Some(g) = &e.glob {
                match path {
                    Some(p) if matches(g, p) => {}
                    // An unreadable path is the host layers' to judge.
                    None => return None,
                    _ => continue,
                }
            }
            return e.errno;
        }
        None
    }
}

/// `*` (no `/`), `**` (anything), `?` (one, not `/`), literals: a set of
/// pattern positions advanced over the path, bounded by their product.
pub fn matches(glob: &[u8], path: &[u8]) -> bool {
    let n = glob.len();
    // Positions reachable after consuming nothing: skip over stars.
    let close = |set: &mut Vec<bool>| {
        let mut i = 0;
        while i < n {
            if set[i] && glob[i] == b'*' {
                set[i + 1] = true;
            }
            i += 1;
        }
    };
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    close(&mut cur);
    for &c in path {
        let mut next = vec![false; n + 1];
        for i in 0..n {
            if !cur[i] {
                continue;
            }
            match glob[i] {
                b'*' => {
                    let deep = glob.get(i + 1) == Some(&b'*') || (i > 0 && glob[i - 1] == b'*');
                    if c != b'/' || deep {
                        next[i] = true;
                    }
                }
                b'?' if c != b'/' => next[i + 1] = true,
                b'?' => {}
                l if l == c => next[i + 1] = true,
                _ => {}
            }
        }
        close(&mut next);
        cur = next;
        if !cur.iter().any(|b| *b) {
            return false;
        }
    }
    cur[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn globs() {
        assert!(matches(b"/etc/shadow*", b"/etc/shadow"));
        assert!(matches(b"/etc/shadow*", b"/etc/shadow-"));
        assert!(!matches(b"/etc/shadow*", b"/etc/shadow/x"));
        assert!(!matches(b"/etc/shadow*", b"/etc/passwd"));
        assert!(matches(b"/bin/*sh", b"/bin/bash"));
        assert!(matches(b"/**/x", b"/a/b/x"));
        assert!(matches(b"/a?c", b"/abc"));
        assert!(!matches(b"/a?c", b"/a/c"));
    }

    #[test]
    fn first_entry_that_matches_decides() {
        let s = format!(
            "4005.1.{}:4005.p:4288.p.{}:4288.13",
            hex("/etc/shadow*"),
            hex("/tmp/*")
        );
        let r = Rules::parse(&s).unwrap();
        assert_eq!(r.decide(4005, Some(b"/etc/shadow")), Some(1));
        assert_eq!(r.decide(4005, Some(b"/etc/passwd")), None);
        assert_eq!(r.decide(4005, None), None);
        assert_eq!(r.decide(4288, Some(b"/tmp/a")), None);
        assert_eq!(r.decide(4288, Some(b"/etc/a")), Some(13));
        assert_eq!(r.decide(1, None), None);
        assert!(r.wants_path(4005) && !r.wants_path(1));
        assert!(Rules::parse("x.1").is_err());
        assert!(Rules::parse("1.0").is_err());
        assert!(Rules::parse("1.1.zz").is_err());
    }
}
