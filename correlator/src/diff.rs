//! `guestview diff A B`: align the guest syscalls of two traces thread by
//! thread and show what was added, removed or changed, with the host
//! translations and verdicts of both sides.
//!
//! Threads are paired by the order they first made a syscall: the n-th
//! thread of the m-th process in A with the same in B (host pids and tids
//! differ between runs). Within a pair, calls are aligned on their
//! architecture-neutral names ([`canonical_name`]) with Myers' diff; two
//! aligned calls differ when one failed and the other did not, when their
//! errno names differ, when QEMU made different host calls for them, or
//! when their verdicts differ. Return values of successful calls (addresses,
//! pids, byte counts) are shown, never compared, and arguments are left out:
//! they change from run to run.

use crate::tables;
use serde::Serialize;
use shmem_proto::trace::{RunInfo, SyscallEvent, TraceEvent, TraceReader};
use shmem_proto::Arch;
use similar::{Algorithm, DiffOp};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The verdict of a call traced natively (`guestview run --native`): it is
/// its own host call.
pub const NATIVE_VERDICT: &str = "native";

/// One name for a syscall across architectures: what the same libc call
/// becomes on each. The 64-bit-offset, 32-bit-id and 64-bit-time variants
/// of 32-bit ABIs become the plain call; the legacy path calls that the
/// generic (asm-generic) table of aarch64 and riscv64 lacks become their
/// `*at` successor (`unlink` → `unlinkat`, `open`/`creat` → `openat`), and
/// every `stat` flavour (`stat64`, `fstat64`, `newfstatat`, `statx`, ...)
/// one `fstatat`: libc's `stat()` is `statx` on mips and arm,
/// `newfstatat` on aarch64 and x86-64. Traces of one architecture are still
/// told apart by name (see [`diff`]).
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    let fixed = match name {
        "_llseek" | "llseek" => "lseek",
        "mmap2" => "mmap",
        "select" | "_newselect" | "newselect" => "pselect6",
        "poll" => "ppoll",
        "getrlimit" | "ugetrlimit" | "setrlimit" => "prlimit64",
        "stat" | "lstat" | "fstat" | "stat64" | "lstat64" | "fstat64" | "newfstatat"
        | "fstatat64" | "statx" | "oldstat" | "oldlstat" | "oldfstat" => "fstatat",
        "open" | "creat" => "openat",
        "unlink" | "rmdir" => "unlinkat",
        "rename" | "renameat" => "renameat2",
        "mkdir" => "mkdirat",
        "mknod" => "mknodat",
        "readlink" => "readlinkat",
        "link" => "linkat",
        "symlink" => "symlinkat",
        "chmod" => "fchmodat",
        "chown" | "lchown" | "chown32" | "lchown32" => "fchownat",
        "access" | "faccessat2" => "faccessat",
        "utime" | "utimes" | "futimesat" => "utimensat",
        "dup2" => "dup3",
        "pipe" => "pipe2",
        "eventfd" => "eventfd2",
        "signalfd" => "signalfd4",
        "inotify_init" => "inotify_init1",
        "epoll_create" => "epoll_create1",
        "epoll_wait" => "epoll_pwait",
        "fork" | "vfork" => "clone",
        "getpgrp" => "getpgid",
        "arm_fadvise64_64" | "fadvise64_64" => "fadvise64",
        "sync_file_range2" | "arm_sync_file_range" => "sync_file_range",
        "timer_settime64" => "timer_settime",
        "timer_gettime64" => "timer_gettime",
        "timerfd_settime64" => "timerfd_settime",
        "timerfd_gettime64" => "timerfd_gettime",
        "clock_settime64" => "clock_settime",
        "clock_adjtime64" => "clock_adjtime",
        "clock_gettime64" => "clock_gettime",
        _ => "",
    };
    if !fixed.is_empty() {
        return Cow::Borrowed(fixed);
    }
    if let Some(base) = name.strip_suffix("_time64") {
        return Cow::Owned(base.to_owned());
    }
    const SUFFIX_64: &[&str] = &[
        "fcntl64",
        "truncate64",
        "ftruncate64",
        "statfs64",
        "fstatfs64",
        "sendfile64",
    ];
    if SUFFIX_64.contains(&name) {
        return Cow::Borrowed(&name[..name.len() - 2]);
    }
    if let Some(base) = name.strip_suffix("32") {
        // The 32-bit uid/gid calls of arm, ppc and friends.
        if base.contains("uid")
            || base.contains("gid")
            || base.contains("groups")
            || base.contains("chown")
        {
            return Cow::Owned(base.to_owned());
        }
    }
    Cow::Borrowed(name)
}

/// One guest call as the diff sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Call {
    /// Its `seq` in its trace.
    pub seq: u64,
    /// Guest syscall name (as the trace has it).
    pub name: String,
    /// Architecture-neutral name (what calls are aligned on).
    pub canonical: String,
    /// Guest syscall number.
    pub nr: i64,
    /// A path the call names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What the guest saw (`None`: never returned).
    pub ret: Option<i64>,
    /// Errno name when it failed.
    pub errno: Option<String>,
    /// Verdict.
    pub verdict: String,
    /// Host calls QEMU made for it, by name, repeats folded.
    pub host: Vec<String>,
}

impl Call {
    fn from_event(s: &SyscallEvent) -> Call {
        let name = match &s.name {
            Some(n) => n.to_string(),
            None => Arch::from_name(&s.arch)
                .and_then(|a| tables::guest_syscall_name(a, s.nr))
                .map_or_else(|| format!("syscall_{}", s.nr), str::to_owned),
        };
        let mut host: Vec<String> = Vec::with_capacity(s.host.len());
        for h in &s.host {
            if host.last().map(String::as_str) != Some(h.name.as_ref()) {
                host.push(h.name.to_string());
            }
        }
        Call {
            seq: s.seq,
            canonical: canonical_name(&name).into_owned(),
            name,
            nr: s.nr,
            path: s.path.clone(),
            ret: s.ret,
            errno: s.errno.as_ref().map(|e| e.to_string()),
            verdict: s.verdict.to_string(),
            host,
        }
    }

    fn failed(&self) -> bool {
        self.errno.is_some()
    }

    /// What differs between two aligned calls (empty: the same). Names
    /// count only between traces of one architecture (`same_arch`): there
    /// `open` against `openat` is a change, across architectures it is what
    /// the same libc call is called there; host calls are likewise compared
    /// by their [`canonical_name`] across architectures.
    fn changes(&self, other: &Call, same_arch: bool) -> Vec<&'static str> {
        let mut c = Vec::new();
        if same_arch && self.name != other.name {
            c.push("name");
        }
        if self.ret.is_some() != other.ret.is_some() {
            c.push("returned");
        } else if self.failed() != other.failed() || self.errno != other.errno {
            c.push("errno");
        }
        let host_differs = if same_arch {
            self.host != other.host
        } else {
            // QEMU passes `statx` through as `statx`, `newfstatat` as
            // `newfstatat`: across architectures that is the same call.
            !self
                .host
                .iter()
                .map(|h| canonical_name(h))
                .eq(other.host.iter().map(|h| canonical_name(h)))
        };
        if host_differs {
            c.push("host");
        }
        let native = self.verdict == NATIVE_VERDICT || other.verdict == NATIVE_VERDICT;
        if !native && self.verdict != other.verdict {
            c.push("verdict");
        }
        c
    }

    fn outcome(&self) -> String {
        match (self.ret, &self.errno) {
            (None, _) => "(no return)".into(),
            (Some(r), Some(e)) => format!("{r} {e}"),
            // Addresses in hex; counts, fds and ids in decimal.
            (Some(r), None) if !(-0x40_0000..0x40_0000).contains(&r) => format!("{r:#x}"),
            (Some(r), None) => r.to_string(),
        }
    }

    fn host_text(&self) -> String {
        if self.host.is_empty() {
            "no host call".into()
        } else {
            format!("host {}", self.host.join("+"))
        }
    }

    fn short(&self) -> String {
        let path = self
            .path
            .as_deref()
            .map(|p| format!("({p:?})"))
            .unwrap_or_else(|| "()".into());
        format!(
            "{}{path} = {} [{}; {}]",
            self.name,
            self.outcome(),
            self.verdict,
            self.host_text()
        )
    }
}

/// The guest calls of one thread of one trace.
#[derive(Debug, Default)]
pub struct ThreadCalls {
    /// Host pid and tid in its trace.
    pub pid: u32,
    /// Host tid.
    pub tid: u32,
    /// Its calls, in order.
    pub calls: Vec<Call>,
}

/// One trace, grouped for the diff.
#[derive(Debug, Default)]
pub struct Side {
    /// What ran.
    pub run: Option<RunInfo>,
    /// Threads keyed by (process index, thread index) in order of first call.
    pub threads: Vec<((usize, usize), ThreadCalls)>,
}

impl Side {
    /// Read a whole trace; any damage is an error (a diff of half a trace
    /// would report the missing half as removed).
    pub fn load(path: &Path) -> Result<Side, String> {
        let mut r = TraceReader::open(path).map_err(|e| e.to_string())?;
        let mut side = Side::default();
        let mut procs: HashMap<u32, (usize, usize)> = HashMap::new(); // pid -> (index, threads so far)
        let mut index: HashMap<u32, usize> = HashMap::new(); // tid -> position in side.threads
        loop {
            let frame = match r.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            for ev in frame {
                match ev {
                    TraceEvent::Run(info) => side.run = Some(*info),
                    TraceEvent::Syscall(s) => {
                        let pos = match index.get(&s.tid) {
                            Some(p) => *p,
                            None => {
                                let n = procs.len();
                                let p = procs.entry(s.pid).or_insert((n, 0));
                                let key = (p.0, p.1);
                                p.1 += 1;
                                side.threads.push((
                                    key,
                                    ThreadCalls {
                                        pid: s.pid,
                                        tid: s.tid,
                                        calls: Vec::new(),
                                    },
                                ));
                                index.insert(s.tid, side.threads.len() - 1);
                                side.threads.len() - 1
                            }
                        };
                        side.threads[pos].1.calls.push(Call::from_event(&s));
                    }
                    _ => {}
                }
            }
        }
        if side.run.is_none() && side.threads.is_empty() {
            return Err(format!("{} holds no guest syscalls", path.display()));
        }
        Ok(side)
    }

    fn describe(&self) -> String {
        match &self.run {
            Some(r) => {
                let qemu = if r.qemu.is_empty() {
                    String::new()
                } else {
                    format!(", {}", r.qemu)
                };
                format!("{} {}{qemu}", r.arch, r.argv.join(" "))
            }
            None => "(no run record)".into(),
        }
    }
}

/// One difference.
#[derive(Debug, Serialize, PartialEq)]
pub struct Difference {
    /// `added` (only in B), `removed` (only in A) or `changed`.
    pub op: &'static str,
    /// Thread pair, `process.thread` counted from 1 in order of first call.
    pub thread: String,
    /// The call in A.
    pub a: Option<Call>,
    /// The call in B.
    pub b: Option<Call>,
    /// For `changed`: `name` (same architecture only), `returned`,
    /// `errno`, `host`, `verdict`.
    pub changes: Vec<&'static str>,
}

/// Counts over the whole diff.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct DiffSummary {
    /// Thread pairs compared.
    pub threads_paired: usize,
    /// Threads only in A.
    pub threads_only_a: usize,
    /// Threads only in B.
    pub threads_only_b: usize,
    /// Aligned calls that agree.
    pub same: u64,
    /// Aligned calls that differ.
    pub changed: u64,
    /// Calls only in B.
    pub added: u64,
    /// Calls only in A.
    pub removed: u64,
}

/// The diff of two traces.
#[derive(Debug, Default)]
pub struct Diff {
    /// Everything that differs, thread by thread, in order.
    pub differences: Vec<Difference>,
    /// Counts.
    pub summary: DiffSummary,
    /// Per thread pair: label, (pid, tid) in A and in B, calls in A and B.
    pub threads: Vec<ThreadPair>,
}

/// A thread of A and its partner in B.
#[derive(Debug, Serialize)]
pub struct ThreadPair {
    /// `process.thread`.
    pub thread: String,
    /// (pid, tid) in A.
    pub a: Option<(u32, u32)>,
    /// (pid, tid) in B.
    pub b: Option<(u32, u32)>,
    /// Calls in A.
    pub calls_a: usize,
    /// Calls in B.
    pub calls_b: usize,
}

/// Align two traces.
pub fn diff(a: &Side, b: &Side) -> Diff {
    let mut out = Diff::default();
    let by_key_b: HashMap<(usize, usize), &ThreadCalls> =
        b.threads.iter().map(|(k, t)| (*k, t)).collect();
    let mut keys: Vec<(usize, usize)> = a.threads.iter().map(|(k, _)| *k).collect();
    for (k, _) in &b.threads {
        if !keys.contains(k) {
            keys.push(*k);
        }
    }
    keys.sort_unstable();
    let by_key_a: HashMap<(usize, usize), &ThreadCalls> =
        a.threads.iter().map(|(k, t)| (*k, t)).collect();
    let empty = ThreadCalls::default();
    let same_arch = match (&a.run, &b.run) {
        (Some(x), Some(y)) => x.arch == y.arch,
        // Without run records nothing says: names are normalised.
        _ => false,
    };
    for key in keys {
        let label = format!("{}.{}", key.0 + 1, key.1 + 1);
        let ta = by_key_a.get(&key).copied();
        let tb = by_key_b.get(&key).copied();
        match (ta, tb) {
            (Some(_), Some(_)) => out.summary.threads_paired += 1,
            (Some(_), None) => out.summary.threads_only_a += 1,
            _ => out.summary.threads_only_b += 1,
        }
        out.threads.push(ThreadPair {
            thread: label.clone(),
            a: ta.map(|t| (t.pid, t.tid)),
            b: tb.map(|t| (t.pid, t.tid)),
            calls_a: ta.map_or(0, |t| t.calls.len()),
            calls_b: tb.map_or(0, |t| t.calls.len()),
        });
        let ca = &ta.unwrap_or(&empty).calls;
        let cb = &tb.unwrap_or(&empty).calls;
        let na: Vec<&str> = ca.iter().map(|c| c.canonical.as_str()).collect();
        let nb: Vec<&str> = cb.iter().map(|c| c.canonical.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &na, &nb, Some(deadline));
        let removed = |c: &Call, out: &mut Diff| {
            out.summary.removed += 1;
            out.differences.push(Difference {
                op: "removed",
                thread: label.clone(),
                a: Some(c.clone()),
                b: None,
                changes: vec![],
            });
        };
        for op in ops {
            match op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for i in 0..len {
                        let (x, y) = (&ca[old_index + i], &cb[new_index + i]);
                        let changes = x.changes(y, same_arch);
                        if changes.is_empty() {
                            out.summary.same += 1;
                        } else {
                            out.summary.changed += 1;
                            out.differences.push(Difference {
                                op: "changed",
                                thread: label.clone(),
                                a: Some(x.clone()),
                                b: Some(y.clone()),
                                changes,
                            });
                        }
                    }
                }
                DiffOp::Delete {
                    old_index, old_len, ..
                } => ca[old_index..old_index + old_len]
                    .iter()
                    .for_each(|c| removed(c, &mut out)),
                DiffOp::Insert {
                    new_index, new_len, ..
                } => {
                    for c in &cb[new_index..new_index + new_len] {
                        out.summary.added += 1;
                        out.differences.push(Difference {
                            op: "added",
                            thread: label.clone(),
                            a: None,
                            b: Some(c.clone()),
                            changes: vec![],
                        });
                    }
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    ca[old_index..old_index + old_len]
                        .iter()
                        .for_each(|c| removed(c, &mut out));
                    for c in &cb[new_index..new_index + new_len] {
                        out.summary.added += 1;
                        out.differences.push(Difference {
                            op: "added",
                            thread: label.clone(),
                            a: None,
                            b: Some(c.clone()),
                            changes: vec![],
                        });
                    }
                }
            }
        }
    }
    out
}

impl Diff {
    /// Is there any difference?
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
            && self.summary.threads_only_a == 0
            && self.summary.threads_only_b == 0
    }

    /// Human-readable diff: `-` only in A, `+` only in B, `~` changed.
    pub fn write_text(&self, a: &Side, b: &Side, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "--- A: {}", a.describe())?;
        writeln!(w, "+++ B: {}", b.describe())?;
        let mut diffs = self.differences.iter().peekable();
        for t in &self.threads {
            let side = |x: Option<(u32, u32)>, n: usize| match x {
                Some((p, t)) => format!("pid {p} tid {t}, {n} calls"),
                None => "absent".into(),
            };
            writeln!(
                w,
                "thread {}: A {}; B {}",
                t.thread,
                side(t.a, t.calls_a),
                side(t.b, t.calls_b)
            )?;
            while let Some(d) = diffs.next_if(|d| d.thread == t.thread) {
                match (d.op, &d.a, &d.b) {
                    ("removed", Some(x), _) => writeln!(w, "- A#{:<7} {}", x.seq, x.short())?,
                    ("added", _, Some(y)) => writeln!(w, "+ B#{:<7} {}", y.seq, y.short())?,
                    (_, Some(x), Some(y)) => {
                        writeln!(
                            w,
                            "~ A#{:<7} {}   ({} differ)",
                            x.seq,
                            x.short(),
                            d.changes.join(", ")
                        )?;
                        writeln!(w, "  B#{:<7} {}", y.seq, y.short())?;
                    }
                    _ => {}
                }
            }
        }
        let s = &self.summary;
        writeln!(
            w,
            "summary: {} same, {} changed, {} added, {} removed; threads: {} paired, {} only in A, {} only in B",
            s.same, s.changed, s.added, s.removed, s.threads_paired, s.threads_only_a, s.threads_only_b
        )
    }

    /// One JSON object per line: every difference (`"type":"diff"`), then
    /// the summary (`"type":"diff_summary"`).
    pub fn write_jsonl(&self, w: &mut dyn Write) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(rename = "type")]
            ty: &'static str,
            #[serde(flatten)]
            d: &'a Difference,
        }
        #[derive(Serialize)]
        struct Sum<'a> {
            #[serde(rename = "type")]
            ty: &'static str,
            #[serde(flatten)]
            s: &'a DiffSummary,
            threads: &'a [ThreadPair],
        }
        for d in &self.differences {
            serde_json::to_writer(&mut *w, &Line { ty: "diff", d })?;
            writeln!(w)?;
        }
        serde_json::to_writer(
            &mut *w,
            &Sum {
                ty: "diff_summary",
                s: &self.summary,
                threads: &self.threads,
            },
        )?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(seq: u64, name: &str, errno: Option<&str>, host: &[&str]) -> Call {
        Call {
            seq,
            name: name.into(),
            canonical: canonical_name(name).into_owned(),
            nr: 0,
            path: None,
            ret: Some(if errno.is_some() { -2 } else { 0 }),
            errno: errno.map(str::to_owned),
            verdict: if host.is_empty() {
                "emulated"
            } else {
                "passthrough"
            }
            .into(),
            host: host.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn side(threads: Vec<Vec<Call>>) -> Side {
        Side {
            run: None,
            threads: threads
                .into_iter()
                .enumerate()
                .map(|(i, calls)| {
                    (
                        (0, i),
                        ThreadCalls {
                            pid: 1,
                            tid: 1 + i as u32,
                            calls,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn names_of_abi_variants_meet() {
        for (a, b) in [
            ("_llseek", "lseek"),
            ("mmap2", "mmap"),
            ("fstat64", "fstat"),
            ("fstatat64", "newfstatat"),
            ("clock_gettime64", "clock_gettime"),
            ("futex_time64", "futex"),
            ("getuid32", "getuid"),
            ("_newselect", "select"),
            ("fstat64", "newfstatat"),
            ("statx", "newfstatat"),
            ("stat", "fstat"),
            ("unlink", "unlinkat"),
            ("rename", "renameat"),
            ("creat", "openat"),
            ("readlink", "readlinkat"),
            ("getrlimit", "prlimit64"),
            ("ugetrlimit", "prlimit64"),
            ("chown32", "fchownat"),
            ("poll", "ppoll"),
        ] {
            assert_eq!(canonical_name(a), canonical_name(b), "{a} vs {b}");
        }
        assert_eq!(canonical_name("getdents64"), "getdents64");
        assert_eq!(canonical_name("pread64"), "pread64");
        assert_eq!(canonical_name("openat"), "openat");
    }

    #[test]
    fn added_removed_and_changed_are_found_per_thread() {
        let a = side(vec![
            vec![
                call(1, "brk", None, &[]),
                call(2, "openat", Some("ENOENT"), &["openat"]),
                call(3, "write", None, &["write"]),
                call(4, "getppid", None, &["getppid"]),
            ],
            vec![call(5, "futex", None, &["futex"])],
        ]);
        let b = side(vec![
            vec![
                call(1, "brk", None, &[]),
                call(2, "openat", None, &["openat"]),
                call(3, "write", None, &["write"]),
                call(4, "write", None, &["write"]),
            ],
            vec![call(5, "futex_time64", None, &["futex"])],
        ]);
        let d = diff(&a, &b);
        assert_eq!(
            d.summary,
            DiffSummary {
                threads_paired: 2,
                same: 3,
                changed: 1,
                added: 1,
                removed: 1,
                ..Default::default()
            }
        );
        let ops: Vec<_> = d
            .differences
            .iter()
            .map(|x| (x.op, x.thread.as_str()))
            .collect();
        assert_eq!(
            ops,
            [("changed", "1.1"), ("removed", "1.1"), ("added", "1.1")]
        );
        assert_eq!(d.differences[0].changes, ["errno"]);
        let mut text = Vec::new();
        d.write_text(&a, &b, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("~ A#2"), "{text}");
        assert!(
            text.contains("- A#4       getppid() = 0 [passthrough; host getppid]"),
            "{text}"
        );
        assert!(
            text.contains("summary: 3 same, 1 changed, 1 added, 1 removed"),
            "{text}"
        );
    }

    #[test]
    fn identical_traces_have_no_difference_and_a_lone_thread_is_one() {
        let a = side(vec![vec![call(1, "getpid", None, &["getpid"])]]);
        assert!(diff(&a, &a).is_empty());
        let b = side(vec![
            vec![call(1, "getpid", None, &["getpid"])],
            vec![call(2, "exit", None, &["exit"])],
        ]);
        let d = diff(&a, &b);
        assert!(!d.is_empty());
        assert_eq!(d.summary.threads_only_b, 1);
        assert_eq!(d.summary.added, 1);
    }

    #[test]
    fn host_calls_and_verdicts_matter_but_native_verdicts_do_not() {
        let x = call(1, "open", None, &["openat"]);
        let mut y = x.clone();
        y.host = vec!["open".into()];
        assert_eq!(x.changes(&y, true), ["host"]);
        let mut n = x.clone();
        n.verdict = NATIVE_VERDICT.into();
        assert!(x.changes(&n, true).is_empty());
        let mut e = x.clone();
        e.verdict = "translated".into();
        assert_eq!(x.changes(&e, true), ["verdict"]);
        // open and openat align; on one architecture the name is a change.
        let mut at = x.clone();
        at.name = "openat".into();
        assert_eq!(at.canonical, x.canonical);
        assert_eq!(x.changes(&at, true), ["name"]);
        assert!(x.changes(&at, false).is_empty());
        let mut st = call(1, "statx", None, &["statx"]);
        let fst = call(1, "newfstatat", None, &["newfstatat"]);
        assert!(st.changes(&fst, false).is_empty());
        assert_eq!(st.changes(&fst, true), ["name", "host"]);
        st.host.insert(0, "access".into());
        assert_eq!(st.changes(&fst, false), ["host"]);
    }
}
