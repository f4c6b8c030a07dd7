//! The trace file: what `guestview run --trace FILE` and the plugin's
//! `out=FILE` write, and what `guestview report` and `diff` read.
//!
//! ```text
//! header  : magic "GVTRACE\0" (8) | format version u32 LE | header CRC32 of the first 12 bytes u32 LE
//! frame*  : payload length u32 LE | CRC32 of payload u32 LE | payload
//! payload : event count u32 LE | item*
//! item    : 0 u8 | bincode(TraceEvent)      any event
//!         | 1 u8 | compact syscall           a TraceEvent::Syscall (see `wire`)
//!         | 2 u8 | LEB128 length | UTF-8     defines the frame's next name
//! ```
//!
//! The event count counts items 0 and 1. Names (syscalls, errnos, verdicts)
//! are indices into a table that each frame builds from scratch, so every
//! frame decodes on its own.
//!
//! A frame is written whole or not at all from the reader's point of view:
//! after a crash the file is readable up to the last whole frame, and the
//! reader says where and why it stopped.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A string that is usually one of a fixed set (names, verdicts): no
/// allocation when it is.
pub type Name = Cow<'static, str>;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// First eight bytes of a trace file.
pub const TRACE_MAGIC: [u8; 8] = *b"GVTRACE\0";
/// Version of the trace format.
pub const TRACE_VERSION: u32 = 6;
/// Largest frame a reader accepts (a hostile length cannot make it allocate more).
pub const MAX_FRAME: u32 = 64 << 20;
/// Events per frame the writer aims at.
pub const FRAME_EVENTS: usize = 4096;

/// One event of a trace (the JSONL `type`s).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TraceEvent {
    /// Written first: what ran. (The large variants are boxed: events are
    /// moved several times on the way out, and an enum is as large as its
    /// largest variant; serde writes a box as what it holds.)
    Run(Box<RunInfo>),
    /// One guest syscall with the host syscalls QEMU made for it (boxed:
    /// it is by far the largest variant and the most moved).
    Syscall(Box<SyscallEvent>),
    /// Process fork, exec or exit.
    Process(Box<ProcessEvent>),
    /// Thread start or exit.
    Thread(ThreadEvent),
    /// Host syscalls outside every guest call.
    Internal(InternalEvent),
    /// Counts of dropped or refused records.
    Lost(LostEvent),
    /// Written last.
    Summary(Box<SummaryEvent>),
    /// A guest exception (fault, illegal instruction, trap) and its signal.
    Fault(Box<FaultEvent>),
    /// What a QEMU process offers the plugin (its plugin API), once per process.
    Plugin(PluginEvent),
    /// Something the run must not hide: an exec refused or stopped.
    Alert(Box<AlertEvent>),
}

/// What ran.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RunInfo {
    /// Guest architecture name (`mips`, …).
    pub arch: String,
    /// QEMU binary and version, if known.
    pub qemu: String,
    /// Guest program and arguments.
    pub argv: Vec<String>,
    /// guestview version.
    pub guestview: String,
    /// Wall clock at start, ns since the epoch.
    pub start_unix_ns: u64,
    /// Where the trace came from: `run` (joined) or `plugin` (guest side only).
    pub source: String,
}

/// One host syscall.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HostCall {
    /// Host (x86-64) syscall number.
    pub nr: i64,
    /// Its name.
    pub name: Name,
    /// Its six arguments.
    pub args: [u64; 6],
    /// Its return value (`None`: it never returned, e.g. `exit_group`).
    pub ret: Option<i64>,
    /// The path argument, decoded in the kernel.
    pub path: Option<String>,
    /// Host thread.
    pub tid: u32,
    /// Enter time (CLOCK_MONOTONIC ns).
    pub t_enter_ns: u64,
    /// Exit time.
    pub t_exit_ns: u64,
}

/// One guest syscall.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SyscallEvent {
    /// Order of this call in the run (by enter time).
    pub seq: u64,
    /// Host process id of the QEMU process.
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// QEMU vCPU index.
    pub vcpu: u32,
    /// Guest architecture.
    pub arch: Name,
    /// Guest PC of the syscall instruction.
    pub pc: Option<u64>,
    /// That PC as `function+offset`, from the guest ELF's symbols.
    pub pc_sym: Option<Name>,
    /// Guest syscall number.
    pub nr: i64,
    /// Its name for the guest architecture (`None`: not a syscall there).
    pub name: Option<Name>,
    /// All eight arguments QEMU passed (the call takes the first few).
    pub args: [u64; 8],
    /// A path the call names, as the host saw it.
    pub path: Option<String>,
    /// What the guest saw (`None`: never returned).
    pub ret: Option<i64>,
    /// Errno name when `ret` is an error (guest numbering).
    pub errno: Option<Name>,
    /// Enter time (CLOCK_MONOTONIC ns).
    pub t_enter_ns: u64,
    /// Exit time (0 when it never returned).
    pub t_exit_ns: u64,
    /// Host syscalls QEMU made for it, in order.
    pub host: Vec<HostCall>,
    /// `passthrough`, `translated`, `emulated`, `unsupported`, … (`guest-only` in plugin traces).
    pub verdict: Name,
    /// Policy decision (`allow` with no rule until policies exist).
    pub policy_action: Name,
    /// The rule that decided, if any.
    pub policy_rule: Option<String>,
    /// The path argument as the guest named it, read from guest memory by
    /// the plugin (QEMU plugin API v4+; untrusted, lossy UTF-8).
    pub guest_path: Option<String>,
}

/// A process event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ProcessEvent {
    /// `fork`, `exec`, `exit`.
    pub event: String,
    /// The process.
    pub pid: u32,
    /// Its parent (fork) .
    pub ppid: Option<u32>,
    /// Exit status (exit).
    pub status: Option<i32>,
    /// Terminating signal (exit).
    pub signal: Option<i32>,
    /// Executed file (exec): what the host kernel ran.
    pub filename: Option<String>,
    /// The guest program the exec runs under QEMU (exec in a sandbox,
    /// where the kernel runs QEMU through its loader).
    pub program: Option<String>,
    /// The process id in its own PID namespace (fork in a sandbox).
    pub ns_pid: Option<u32>,
    /// When.
    pub t_ns: u64,
}

/// A thread event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ThreadEvent {
    /// `start` or `exit`.
    pub event: String,
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// vCPU index.
    pub vcpu: u32,
    /// When.
    pub t_ns: u64,
}

/// QEMU's own host syscalls (outside any guest call).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct InternalEvent {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// `qemu` (QEMU's own work) or `plugin` (guestview's plugin, tagged).
    pub origin: String,
    /// The calls.
    pub host: Vec<HostCall>,
}

/// A guest exception: QEMU raised a signal for the instruction the guest
/// was executing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FaultEvent {
    /// Host process id.
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// QEMU vCPU index.
    pub vcpu: u32,
    /// Guest architecture.
    pub arch: String,
    /// Guest PC of the faulting instruction.
    pub pc: u64,
    /// That PC as `function+offset`, from the guest ELF's symbols.
    pub pc_sym: Option<String>,
    /// Guest signal number (the guest architecture's numbering), if known.
    pub signal: Option<i32>,
    /// Its name (`SIGSEGV`), if known.
    pub signal_name: Option<String>,
    /// The guest handler that ran next; `None` when the signal ended the process.
    pub handler: Option<u64>,
    /// The signal ended the process (no handler).
    pub fatal: bool,
    /// When (CLOCK_MONOTONIC ns).
    pub t_ns: u64,
}

/// What the QEMU running a process offers guestview's plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PluginEvent {
    /// Host process id.
    pub pid: u32,
    /// Plugin API version the plugin declared.
    pub api_version: u32,
    /// Oldest plugin API version this QEMU accepts.
    pub qemu_api_min: u32,
    /// Newest plugin API version this QEMU offers.
    pub qemu_api_max: u32,
    /// QEMU exports `qemu_plugin_read_register`.
    pub register_read: bool,
    /// Where guest PCs of syscalls come from: `register` or `instrumentation`.
    pub pc_from: String,
    /// QEMU exports `qemu_plugin_read_memory_vaddr`: `guest_path` is filled.
    pub memory_read: bool,
    /// QEMU exports the discontinuity callbacks: guest faults are recorded.
    pub discon: bool,
    /// The signal of a fault that ran a handler is known (read from the
    /// handler's first argument register; a fatal fault's signal comes from
    /// the kernel's account of the process's death).
    pub handled_fault_signal: bool,
    /// QEMU exports `qemu_plugin_register_vcpu_syscall_filter_cb` (guest-layer enforcement possible).
    pub syscall_filter: bool,
    /// When the plugin announced it.
    pub t_ns: u64,
}

/// An alert: a policy decision worth attention (a rule with action
/// `alert`, `deny` or `kill` matched, or a rate limit was exceeded), or
/// something the sandbox refused or stopped (an exec of host-native code).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AlertEvent {
    /// The rule that matched (`limits.fork_per_second` … for rate limits;
    /// the sandbox's own: `exec-native`, `exec-foreign`, `exec-unfollowed`,
    /// `exec-untraced`); `None` when the policy's default decided.
    pub rule: Option<String>,
    /// `alert`, `deny` or `kill`.
    pub action: String,
    /// Where it was decided: `guest` (the plugin's syscall filter),
    /// `seccomp` (host filter or its supervisor), `ebpf` (in the kernel),
    /// `join` (observed on the joined call, nothing enforced), `sandbox`
    /// (the sandbox's exec following and exec guard).
    pub layer: String,
    /// The guest call's `seq`, when the decision belongs to one.
    pub seq: Option<u64>,
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// The syscall (guest name; host name for host-layer decisions).
    pub syscall: Option<String>,
    /// What was judged: the path, the address, the rate.
    pub detail: Option<String>,
    /// The file concerned, if any.
    pub path: Option<String>,
    /// Why, for people.
    pub message: String,
    /// When.
    pub t_ns: u64,
}

/// Loss and validation counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LostEvent {
    /// Host events the kernel ring could not take.
    pub host_dropped: u64,
    /// Guest records the plugin's rings dropped.
    pub guest_dropped: u64,
    /// Guest threads that found no free ring.
    pub guest_no_ring: u64,
    /// Guest records refused by validation (corrupt or hostile).
    pub guest_corrupt: u64,
    /// Host records refused by validation.
    pub host_malformed: u64,
}

/// End of run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SummaryEvent {
    /// Guest syscalls.
    pub syscalls: u64,
    /// Host syscalls seen.
    pub host_syscalls: u64,
    /// Host syscalls attributed to guest calls.
    pub host_attributed: u64,
    /// Host syscalls outside guest calls.
    pub host_internal: u64,
    /// Guest exit status (as `wait` reports it: code or 128+signal).
    pub exit_code: Option<i32>,
    /// Wall time of the run, ns.
    pub wall_ns: u64,
    /// Producer waits on a full ring.
    pub ring_waits: u64,
    /// Guest calls held back until guestview had read the host ring down.
    pub host_ring_waits: u64,
    /// What the main QEMU process offered the plugin (`None`: no plugin, or it never started).
    pub qemu_plugin: Option<PluginEvent>,
}

/// Why a trace could not be (fully) read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// File system error.
    #[error("trace {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Not a guestview trace, or another version.
    #[error("{path} is not a guestview trace ({why})")]
    NotATrace {
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A frame fails its checksum or its length is absurd.
    #[error("trace {path} is corrupt at byte {offset} (frame {frame}): {why}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// Frame index.
        frame: u64,
        /// Why.
        why: String,
    },
    /// The file ends inside a frame (the writer was interrupted).
    #[error("trace {path} is truncated at byte {offset} after {frames} whole frames (the run that wrote it did not finish)")]
    Truncated {
        /// File.
        path: PathBuf,
        /// Where the partial frame starts.
        offset: u64,
        /// Whole frames before it.
        frames: u64,
    },
}

/// Writes a trace, one frame per [`FRAME_EVENTS`] events or per [`TraceWriter::flush`].
///
/// Each frame goes to the file in one `write` on an `O_APPEND` descriptor,
/// so processes that share a trace after `fork` never interleave frames.
pub struct TraceWriter {
    out: File,
    /// The frame being built: header space, event count, encoded events.
    frame: Vec<u8>,
    events: u32,
    names: crate::wire::NameTable,
    path: PathBuf,
}

/// Bytes before the first event of a frame: length, CRC, event count.
const FRAME_HEAD: usize = 12;
/// A frame is written once its events take this many bytes, whatever their number.
const FRAME_BYTES: usize = 4 << 20;

impl TraceWriter {
    /// Create (truncate) `path` and write the header.
    pub fn create(path: &Path) -> Result<TraceWriter, TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let mut hdr = Vec::with_capacity(16);
        hdr.extend_from_slice(&TRACE_MAGIC);
        hdr.extend_from_slice(&TRACE_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&hdr);
        hdr.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(path, &hdr).map_err(io)?;
        let out = File::options().append(true).open(path).map_err(io)?;
        let mut frame = Vec::with_capacity(1 << 20);
        frame.resize(FRAME_HEAD, 0);
        Ok(TraceWriter {
            out,
            frame,
            events: 0,
            names: Default::default(),
            path: path.to_owned(),
        })
    }

    /// Add an event (encoded at once, so the caller keeps it); writes a
    /// frame when enough are pending, and then returns `true`.
    pub fn push(&mut self, ev: &TraceEvent) -> Result<bool, TraceError> {
        if let TraceEvent::Syscall(s) = ev {
            crate::wire::encode_syscall(&mut self.frame, &mut self.names, s);
        } else {
            let mark = self.frame.len();
            self.frame.push(crate::wire::TAG_EVENT);
            if let Err(e) = bincode::serde::encode_into_std_write(
                ev,
                &mut self.frame,
                bincode::config::standard(),
            ) {
                self.frame.truncate(mark);
                return Err(TraceError::Io {
                    path: self.path.clone(),
                    source: io::Error::other(e),
                });
            }
        }
        self.events += 1;
        if self.events as usize >= FRAME_EVENTS || self.frame.len() >= FRAME_BYTES {
            self.write_frame()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Forget events not yet written (a forked child drops its parent's).
    pub fn discard_pending(&mut self) {
        self.frame.truncate(FRAME_HEAD);
        self.events = 0;
        self.names.clear();
    }

    fn write_frame(&mut self) -> Result<(), TraceError> {
        if self.events == 0 {
            return Ok(());
        }
        let err = |path: &Path, source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let payload = &mut self.frame[8..];
        payload[..4].copy_from_slice(&self.events.to_le_bytes());
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| err(&self.path, io::Error::other("frame larger than 64 MiB")))?;
        let crc = crc32fast::hash(payload);
        self.frame[..4].copy_from_slice(&len.to_le_bytes());
        self.frame[4..8].copy_from_slice(&crc.to_le_bytes());
        let r = self.out.write_all(&self.frame);
        self.discard_pending();
        r.map_err(|e| err(&self.path, e))
    }

    /// Write pending events as a frame.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.write_frame()
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Reads a trace frame by frame.
pub struct TraceReader {
    input: BufReader<File>,
    path: PathBuf,
    offset: u64,
    frames: u64,
    buf: Vec<u8>,
    done: bool,
}

impl TraceReader {
    /// Open and check the header.
    pub fn open(path: &Path) -> Result<TraceReader, TraceError> {
        let file = File::open(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut hdr = [0u8; 16];
        let not = |why: &str| TraceError::NotATrace {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        read_full(&mut input, &mut hdr)
            .map_err(|source| TraceError::Io {
                path: path.to_owned(),
                source,
            })?
            .then_some(())
            .ok_or_else(|| not("shorter than the 16-byte header"))?;
        if hdr[..8] != TRACE_MAGIC {
            return Err(not("bad magic"));
        }
        let crc = u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        if crc != crc32fast::hash(&hdr[..12]) {
            return Err(not("header checksum mismatch"));
        }
        let version = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        if version != TRACE_VERSION {
            return Err(not(&format!(
                "format version {version}, this guestview reads version {TRACE_VERSION}"
            )));
        }
        Ok(TraceReader {
            input,
            path: path.to_owned(),
            offset: 16,
            frames: 0,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Whole frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame's events; `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Vec<TraceEvent>>, TraceError> {
        if self.done {
            return Ok(None);
        }
        let io = |source| TraceError::Io {
            path: self.path.clone(),
            source,
        };
        let mut fh = [0u8; 8];
        let got = read_some(&mut self.input, &mut fh).map_err(io)?;
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        let truncated = TraceError::Truncated {
            path: self.path.clone(),
            offset: self.offset,
            frames: self.frames,
        };
        if got < 8 {
            self.done = true;
            return Err(truncated);
        }
        let len = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]);
        let crc = u32::from_le_bytes([fh[4], fh[5], fh[6], fh[7]]);
        let corrupt = |why: String| TraceError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            frame: self.frames,
            why,
        };
        if len > MAX_FRAME {
            self.done = true;
            return Err(corrupt(format!(
                "frame length {len} exceeds the {MAX_FRAME}-byte limit"
            )));
        }
        self.buf.resize(len as usize, 0);
        let got = read_some(&mut self.input, &mut self.buf).map_err(io)?;
        if got < len as usize {
            self.done = true;
            return Err(truncated);
        }
        if crc32fast::hash(&self.buf) != crc {
            self.done = true;
            return Err(corrupt("checksum mismatch".into()));
        }
        let events = decode_payload(&self.buf).map_err(|why| {
            self.done = true;
            corrupt(why)
        })?;
        self.offset += 8 + u64::from(len);
        self.frames += 1;
        Ok(Some(events))
    }
}

/// The events of one frame's payload: a u32 LE count, then items holding
/// that many events, and nothing after them.
fn decode_payload(buf: &[u8]) -> Result<Vec<TraceEvent>, String> {
    use crate::wire::{Cursor, TAG_EVENT, TAG_NAME, TAG_SYSCALL};
    let Some((count, rest)) = buf.split_first_chunk::<4>() else {
        return Err("frame shorter than its event count".into());
    };
    let count = u32::from_le_bytes(*count) as usize;
    // Every event takes at least two bytes: a hostile count cannot make us
    // reserve more than the frame could hold.
    let mut events = Vec::with_capacity(count.min(rest.len() / 2));
    let mut names: Vec<Name> = Vec::new();
    let mut c = Cursor { buf: rest };
    let limit = bincode::config::standard().with_limit::<{ 1 << 28 }>();
    while events.len() < count {
        let i = events.len();
        let undecodable = |e: String| format!("undecodable event {i} of {count}: {e}");
        match c.u8().map_err(undecodable)? {
            TAG_NAME => {
                let n = c.str().map_err(undecodable)?;
                names.push(crate::wire::intern(n));
            }
            TAG_SYSCALL => {
                let s = crate::wire::decode_syscall(&mut c, &names).map_err(undecodable)?;
                events.push(TraceEvent::Syscall(s));
            }
            TAG_EVENT => {
                let (ev, used): (TraceEvent, usize) =
                    bincode::serde::decode_from_slice(c.buf, limit)
                        .map_err(|e| undecodable(e.to_string()))?;
                c.buf = &c.buf[used..];
                events.push(ev);
            }
            t => return Err(undecodable(format!("unknown item tag {t}"))),
        }
    }
    if !c.buf.is_empty() {
        return Err("trailing bytes in frame".into());
    }
    Ok(events)
}

/// Read until `buf` is full or EOF; returns bytes read.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    Ok(read_some(r, buf)? == buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_small_to_move() {
        // Every event is moved several times between the join and the
        // writers; a large variant added unboxed would make all of them
        // that large (it cost the reader a fifth of its time once).
        assert!(std::mem::size_of::<TraceEvent>() <= 64);
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("gv-trace-test-{}-{name}", std::process::id()))
    }

    fn sample(i: u64) -> TraceEvent {
        TraceEvent::Syscall(Box::new(SyscallEvent {
            seq: i,
            pid: 1,
            tid: 1,
            arch: "mips".into(),
            nr: 4005,
            name: Some("open".into()),
            args: [1, 2, 3, 0, 0, 0, 0, 0],
            ret: Some(3),
            host: vec![HostCall {
                nr: 257,
                name: "openat".into(),
                args: [0; 6],
                ret: Some(3),
                path: Some("/etc/passwd".into()),
                ..Default::default()
            }],
            verdict: "translated".into(),
            policy_action: "allow".into(),
            ..Default::default()
        }))
    }

    fn write(path: &Path, n: u64) {
        let mut w = TraceWriter::create(path).unwrap();
        for i in 0..n {
            w.push(&sample(i)).unwrap();
        }
        w.flush().unwrap();
    }

    fn read_all(path: &Path) -> (Vec<TraceEvent>, Option<TraceError>) {
        let mut r = TraceReader::open(path).unwrap();
        let mut all = vec![];
        loop {
            match r.next_frame() {
                Ok(Some(f)) => all.extend(f),
                Ok(None) => return (all, None),
                Err(e) => return (all, Some(e)),
            }
        }
    }

    #[test]
    fn round_trip_many_frames() {
        let p = tmp("rt");
        write(&p, 10_000);
        let (all, err) = read_all(&p);
        assert!(err.is_none());
        assert_eq!(all.len(), 10_000);
        assert_eq!(all[9_999], sample(9_999));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn truncated_trace_reads_up_to_the_last_whole_frame() {
        let p = tmp("trunc");
        write(&p, 10_000);
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (all, err) = read_all(&p);
        assert_eq!(all.len(), 2 * FRAME_EVENTS);
        assert!(
            matches!(err, Some(TraceError::Truncated { frames: 2, .. })),
            "{err:?}"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn corrupt_frame_is_refused_by_name() {
        let p = tmp("corrupt");
        write(&p, 100);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let (all, err) = read_all(&p);
        assert!(all.is_empty());
        let msg = err.unwrap().to_string();
        assert!(msg.contains("corrupt at byte 16"), "{msg}");
        // an absurd length is refused before any allocation
        bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let msg = read_all(&p).1.unwrap().to_string();
        assert!(msg.contains("exceeds"), "{msg}");
        std::fs::write(&p, b"ELF\x7f not a trace at all").unwrap();
        assert!(matches!(
            TraceReader::open(&p),
            Err(TraceError::NotATrace { .. })
        ));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn hostile_event_count_is_refused_without_allocating_it() {
        let p = tmp("count");
        write(&p, 1);
        let mut bytes = std::fs::read(&p).unwrap();
        // A frame whose CRC is right but whose count claims 4 billion events.
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&bytes[24..]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let msg = read_all(&p).1.unwrap().to_string();
        assert!(msg.contains("undecodable event 1 of 4294967295"), "{msg}");
        // A count of 0 with an event behind it: trailing bytes.
        bytes[24..28].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[24..]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let msg = read_all(&p).1.unwrap().to_string();
        assert!(msg.contains("trailing bytes"), "{msg}");
        std::fs::remove_file(&p).unwrap();
    }

    fn rich(i: u64) -> TraceEvent {
        let host = |k: u64| HostCall {
            nr: 257 + k as i64,
            name: if k.is_multiple_of(2) {
                "openat".into()
            } else {
                Cow::Owned(format!("syscall_{k}"))
            },
            args: [u64::MAX, 0, k, 1 << 40, 7, 0x7fff_0000_1234],
            ret: (!k.is_multiple_of(3)).then_some(-(k as i64)),
            path: (k.is_multiple_of(2)).then(|| format!("/tmp/\u{e9}t\u{e9}-{k}")),
            tid: 100 + (k as u32 % 2),
            t_enter_ns: if k.is_multiple_of(4) { 0 } else { 1_000 + k },
            t_exit_ns: if k == 5 { 3 } else { 2_000_000 + k },
        };
        TraceEvent::Syscall(Box::new(SyscallEvent {
            seq: i,
            pid: 99,
            tid: 100,
            vcpu: 3,
            arch: "mipsel".into(),
            pc: (i.is_multiple_of(2)).then_some(0x0040_05f0 + i),
            pc_sym: (i.is_multiple_of(3)).then(|| Cow::Owned(format!("write+{i:#x}"))),
            nr: if i.is_multiple_of(5) { -1 } else { 4004 },
            name: (!i.is_multiple_of(5)).then(|| "write".into()),
            args: [i, u64::MAX, 0, 1, 2, 3, 4, 5],
            path: (i % 2 == 1).then(|| "/etc/passwd".into()),
            ret: (!i.is_multiple_of(7)).then_some(-(i as i64 % 200)),
            errno: (i % 7 == 1).then(|| "ENOENT".into()),
            t_enter_ns: 1_000_000 + i,
            t_exit_ns: if i.is_multiple_of(7) {
                0
            } else {
                1_500_000 + i
            },
            host: (0..(i % 12)).map(host).collect(),
            verdict: ["passthrough", "translated", "mismatch"][i as usize % 3].into(),
            policy_action: "allow".into(),
            policy_rule: (i.is_multiple_of(4)).then(|| "no-shadow".into()),
            guest_path: (i % 3 == 1).then(|| format!("../g\u{e9}st-{i}")),
        }))
    }

    #[test]
    fn compact_syscalls_round_trip_with_every_field_shape() {
        let p = tmp("rich");
        let mut w = TraceWriter::create(&p).unwrap();
        let mut want = vec![];
        for i in 0..3 * FRAME_EVENTS as u64 {
            let ev = if i % 1000 == 17 {
                TraceEvent::Lost(LostEvent {
                    host_dropped: i,
                    ..Default::default()
                })
            } else if i % 1000 == 18 {
                TraceEvent::Fault(Box::new(FaultEvent {
                    pid: 9,
                    tid: 10,
                    arch: "mips".into(),
                    pc: 0x400890,
                    signal: Some(11),
                    signal_name: Some("SIGSEGV".into()),
                    handler: (i % 2 == 0).then_some(0x4008a4),
                    fatal: i % 2 == 1,
                    t_ns: i,
                    ..Default::default()
                }))
            } else if i % 1000 == 19 {
                let plugin = PluginEvent {
                    pid: 9,
                    api_version: 5,
                    qemu_api_min: 2,
                    qemu_api_max: 5,
                    pc_from: "register".into(),
                    memory_read: true,
                    ..Default::default()
                };
                if i % 2 == 0 {
                    TraceEvent::Plugin(plugin)
                } else {
                    TraceEvent::Summary(Box::new(SummaryEvent {
                        qemu_plugin: Some(plugin),
                        ..Default::default()
                    }))
                }
            } else {
                rich(i)
            };
            w.push(&ev).unwrap();
            want.push(ev);
        }
        w.flush().unwrap();
        drop(w);
        let (all, err) = read_all(&p);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(all.len(), want.len());
        for (a, b) in all.iter().zip(&want) {
            assert_eq!(a, b);
        }
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn damaged_frames_are_errors_never_panics() {
        // Every single-byte change and every cut of a frame (with its CRC
        // fixed up so the payload decoder sees it) is decoded or refused.
        let p = tmp("fuzz");
        let mut w = TraceWriter::create(&p).unwrap();
        for i in 0..40 {
            w.push(&rich(i)).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        let payload = &bytes[24..];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for pos in 0..payload.len() {
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut b = payload.to_vec();
                b[pos] ^= (seed as u8).max(1);
                let _ = decode_payload(&b);
            }
            let _ = decode_payload(&payload[..pos]);
        }
        assert_eq!(decode_payload(payload).unwrap().len(), 40);
    }

    #[test]
    fn a_name_index_outside_the_frame_table_is_refused() {
        let mut names = crate::wire::NameTable::default();
        let mut b = 1u32.to_le_bytes().to_vec();
        crate::wire::encode_syscall(
            &mut b,
            &mut names,
            match &rich(1) {
                TraceEvent::Syscall(s) => s,
                _ => unreachable!(),
            },
        );
        // Drop the name items: the record now refers to undefined names.
        let mut cut = 1u32.to_le_bytes().to_vec();
        let mut k = 4;
        while b[k] == crate::wire::TAG_NAME {
            let len = b[k + 1] as usize;
            k += 2 + len;
        }
        assert_eq!(b[k], crate::wire::TAG_SYSCALL);
        cut.extend_from_slice(&b[k..]);
        let msg = decode_payload(&cut).unwrap_err();
        assert!(msg.contains("not defined in this frame"), "{msg}");
    }
}
