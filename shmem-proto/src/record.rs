//! Raw ring records become domain types here, and only here.

use crate::layout::*;

/// What the plugin reports. Built by the producer, validated by the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRecord {
    /// A guest syscall was entered (before QEMU made any host syscall for it).
    SysEnter {
        /// Common fields.
        at: Origin,
        /// Guest syscall number as the guest architecture numbers it.
        nr: i64,
        /// The eight syscall arguments QEMU hands to plugins.
        args: [u64; 8],
        /// Guest PC of the syscall instruction, if known.
        pc: Option<u64>,
        /// The host ring's producer position, read after everything the
        /// plugin did for this entry and before QEMU made any host call for
        /// the guest call (see `guestview_bpf::HostSyscall::pos`); `None`
        /// when the plugin cannot read positions.
        hpos: Option<u64>,
    },
    /// A guest syscall returned (after QEMU's last host syscall for it).
    SysExit {
        /// Common fields.
        at: Origin,
        /// Guest syscall number.
        nr: i64,
        /// Value the guest sees (negative target errno on failure).
        ret: i64,
        /// The host ring's producer position, read before the plugin did
        /// anything else for this return.
        hpos: Option<u64>,
    },
    /// A guest thread started.
    ThreadStart {
        /// Common fields.
        at: Origin,
    },
    /// A guest thread ended.
    ThreadExit {
        /// Common fields.
        at: Origin,
    },
    /// The plugin made host syscalls of its own on this thread in `[at.t_ns, end_ns]`.
    PluginSpan {
        /// Common fields (`t_ns` = start).
        at: Origin,
        /// End of the span.
        end_ns: u64,
        /// Why (a `SPAN_*` constant).
        reason: u32,
        /// Host ring positions at the span's start and end, if read.
        hpos: Option<(u64, u64)>,
    },
    /// A QEMU process attached to the region.
    ProcessStart {
        /// Common fields.
        at: Origin,
        /// Host parent process id.
        ppid: u32,
        /// Guest architecture id (see [`crate::arch`]).
        arch: u32,
        /// What the QEMU running this process offers the plugin.
        plugin: PluginInfo,
    },
    /// Up to [`PATH_CHUNK`] bytes of a path argument of the call this
    /// thread entered last, as the guest named it (read from guest memory;
    /// untrusted). A path is sent in chunks at offsets 0, 64, 128 … up to
    /// [`MAX_GUEST_PATH`] bytes, right after the call's entry record.
    GuestPath {
        /// Common fields.
        at: Origin,
        /// Guest number of the call the path belongs to.
        nr: i64,
        /// Index of the path argument.
        arg: u8,
        /// Byte offset of this chunk in the path.
        offset: u16,
        /// The bytes (`len` of them are valid; no NUL among them).
        bytes: [u8; PATH_CHUNK],
        /// Valid bytes in `bytes`.
        len: u8,
        /// `PATH_*` flags: last chunk, truncated, unreadable.
        flags: u16,
    },
    /// A guest exception: QEMU raised a signal for the instruction the
    /// guest was executing (a fault, an illegal instruction, a trap).
    Fault {
        /// Common fields.
        at: Origin,
        /// Guest PC the exception interrupted (the faulting instruction).
        pc: u64,
        /// The guest handler that runs next; `None` when the signal ends the process.
        handler: Option<u64>,
        /// Guest signal number, when the plugin could read it.
        signal: Option<u32>,
    },
    /// The QEMU process is exiting.
    ProcessExit {
        /// Common fields.
        at: Origin,
        /// Guest exit code.
        code: i64,
    },
    /// Something the plugin did or refused (a `NOTE_*` code).
    Note {
        /// Common fields.
        at: Origin,
        /// What (`NOTE_*`).
        code: u32,
        /// Its detail (for `NOTE_EXEC_REFUSED`, an `EXEC_REFUSED_*` reason).
        detail: u32,
        /// Up to 64 bytes of text (a path), NUL-padded.
        text: [u8; NOTE_TEXT],
    },
}

/// Bytes of text a [`GuestRecord::Note`] carries.
pub const NOTE_TEXT: usize = 64;
/// The guest exec'd a guest program: the plugin starts QEMU with itself on
/// it (`text` = the program). Sent just before the host exec.
pub const NOTE_EXEC: u32 = 1;
/// The plugin refused a guest exec (`detail` = why, `text` = the file).
pub const NOTE_EXEC_REFUSED: u32 = 2;
/// The file is an ELF for the host (x86-64 or i386): host-native code.
pub const EXEC_REFUSED_NATIVE: u32 = 1;
/// The file is an ELF for another guest architecture than this QEMU's.
pub const EXEC_REFUSED_FOREIGN: u32 = 2;
/// The exec could not be followed under QEMU (too many script levels, no
/// way to restart QEMU): refused rather than run untraced.
pub const EXEC_REFUSED_UNFOLLOWED: u32 = 3;

/// The text of a note as a string (up to the first NUL; lossy UTF-8).
pub fn note_text(text: &[u8; NOTE_TEXT]) -> String {
    let end = text.iter().position(|b| *b == 0).unwrap_or(NOTE_TEXT);
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// A note's text field from bytes (cut at [`NOTE_TEXT`]).
pub fn note_bytes(s: &[u8]) -> [u8; NOTE_TEXT] {
    let mut t = [0u8; NOTE_TEXT];
    let n = s.len().min(NOTE_TEXT);
    t[..n].copy_from_slice(&s[..n]);
    t
}

/// Fields every record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    /// QEMU vCPU index.
    pub vcpu: u32,
    /// Host process id.
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// CLOCK_MONOTONIC, ns.
    pub t_ns: u64,
}

/// The plugin set up its thread state (ring claim, thread id).
pub const SPAN_SETUP: u32 = 1;
/// The plugin waited for ring space.
pub const SPAN_RING_WAIT: u32 = 2;
/// The plugin wrote its `out=` file.
pub const SPAN_FILE_OUTPUT: u32 = 3;
/// The plugin looked at the file a guest exec names (`exec=on`).
pub const SPAN_EXEC_CHECK: u32 = 4;
/// The plugin held a guest call back until guestview had read the host
/// ring buffer down (it was more than half full).
pub const SPAN_HOST_BACKLOG: u32 = 5;

/// `flags` bit on `KIND_SYS_ENTER`: `pc` is valid.
pub const FLAG_PC_VALID: u16 = 1;
/// `flags` bit: the record carries host ring positions (`ret` of an
/// entry, `pc` of a return, `args[2..4]` of a span).
pub const FLAG_HPOS_VALID: u16 = 2;

/// Bytes of a path per [`GuestRecord::GuestPath`] record.
pub const PATH_CHUNK: usize = 64;
/// Longest guest path the plugin sends (longer ones are truncated to it).
pub const MAX_GUEST_PATH: usize = 256;
/// `GuestPath` flag: the path ends with this chunk.
pub const PATH_LAST: u16 = 1;
/// `GuestPath` flag: the path is longer than [`MAX_GUEST_PATH`] (cut).
pub const PATH_TRUNCATED: u16 = 2;
/// `GuestPath` flag: guest memory could not be read past this chunk (cut).
pub const PATH_UNREADABLE: u16 = 4;
const PATH_FLAGS: u16 = PATH_LAST | PATH_TRUNCATED | PATH_UNREADABLE;

/// `Fault` flag: `handler` is valid (a handler runs next).
pub const FAULT_HANDLER: u16 = 1;
/// `Fault` flag: `signal` is valid.
pub const FAULT_SIGNAL: u16 = 2;
const FAULT_FLAGS: u16 = FAULT_HANDLER | FAULT_SIGNAL;

/// What the QEMU of a process offers the plugin, and what the plugin uses
/// (sent in [`GuestRecord::ProcessStart`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PluginInfo {
    /// Plugin API version the plugin declared (what QEMU holds it to).
    pub api: u8,
    /// Oldest plugin API version QEMU accepts.
    pub qemu_min: u8,
    /// Newest plugin API version QEMU offers.
    pub qemu_max: u8,
    /// `CAP_*` bits.
    pub caps: u32,
}

/// QEMU exports `qemu_plugin_read_register` (API v2+).
pub const CAP_REGISTER_READ: u32 = 1 << 0;
/// The plugin reads the guest PC of each syscall from a register (else:
/// from instruction instrumentation, as on API v1).
pub const CAP_PC_REGISTER: u32 = 1 << 1;
/// QEMU exports `qemu_plugin_read_memory_vaddr` (API v4+): path arguments
/// are read from guest memory.
pub const CAP_MEMORY_READ: u32 = 1 << 2;
/// QEMU exports `qemu_plugin_register_vcpu_discon_cb`: guest exceptions
/// become `Fault` records (linux-user raises them with the patch series).
pub const CAP_DISCON: u32 = 1 << 3;
/// QEMU exports `qemu_plugin_register_vcpu_syscall_filter_cb` (our patch
/// series, upstream QEMU 11): the plugin could answer guest syscalls itself.
pub const CAP_SYSCALL_FILTER: u32 = 1 << 4;
/// The signal of a handled fault is read from the handler's first argument register.
pub const CAP_SIGNAL_REGISTER: u32 = 1 << 5;
/// Every `CAP_*` bit.
pub const CAP_ALL: u32 = (1 << 6) - 1;

impl PluginInfo {
    fn pack_versions(&self) -> u64 {
        u64::from(self.api) | u64::from(self.qemu_min) << 8 | u64::from(self.qemu_max) << 16
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The checksum does not match the contents (torn or overwritten).
    #[error("record checksum mismatch (torn or overwritten record)")]
    Checksum,
    /// The record is not where its sequence number says it should be.
    #[error("record out of sequence: expected {expected}, found {found}")]
    Sequence {
        /// Position we read.
        expected: u64,
        /// Position the record claims.
        found: u64,
    },
    /// Unknown record kind.
    #[error("unknown record kind {0}")]
    Kind(u16),
    /// The record names another thread than the ring's owner.
    #[error("record from thread {found} in ring owned by thread {owner}")]
    Owner {
        /// Owner of the ring.
        owner: u32,
        /// Thread in the record.
        found: u32,
    },
    /// A field is out of range for its kind.
    #[error("record field out of range: {0}")]
    Field(&'static str),
}

impl GuestRecord {
    /// The common fields.
    pub fn origin(&self) -> &Origin {
        match self {
            GuestRecord::SysEnter { at, .. }
            | GuestRecord::SysExit { at, .. }
            | GuestRecord::ThreadStart { at }
            | GuestRecord::ThreadExit { at }
            | GuestRecord::PluginSpan { at, .. }
            | GuestRecord::ProcessStart { at, .. }
            | GuestRecord::ProcessExit { at, .. }
            | GuestRecord::GuestPath { at, .. }
            | GuestRecord::Fault { at, .. } => at,
            GuestRecord::Note { at, .. } => at,
        }
    }

    /// Where and when, to rewrite (ids seen inside a PID namespace are
    /// mapped to the host's by the consumer).
    pub fn origin_mut(&mut self) -> &mut Origin {
        match self {
            GuestRecord::SysEnter { at, .. }
            | GuestRecord::SysExit { at, .. }
            | GuestRecord::ThreadStart { at }
            | GuestRecord::ThreadExit { at }
            | GuestRecord::PluginSpan { at, .. }
            | GuestRecord::ProcessStart { at, .. }
            | GuestRecord::ProcessExit { at, .. }
            | GuestRecord::GuestPath { at, .. }
            | GuestRecord::Fault { at, .. } => at,
            GuestRecord::Note { at, .. } => at,
        }
    }

    /// Encode for the ring; the producer fills in `seq` and `check`.
    #[inline]
    pub fn to_raw(&self) -> RawRecord {
        let at = *self.origin();
        let mut r = RawRecord {
            vcpu: at.vcpu,
            pid: at.pid,
            tid: at.tid,
            t_ns: at.t_ns,
            ..Default::default()
        };
        match *self {
            GuestRecord::SysEnter {
                nr, args, pc, hpos, ..
            } => {
                r.kind = KIND_SYS_ENTER;
                r.nr = nr;
                r.args = args;
                if let Some(pc) = pc {
                    r.flags |= FLAG_PC_VALID;
                    r.pc = pc;
                }
                if let Some(p) = hpos {
                    r.flags |= FLAG_HPOS_VALID;
                    r.ret = p as i64;
                }
            }
            GuestRecord::SysExit { nr, ret, hpos, .. } => {
                r.kind = KIND_SYS_EXIT;
                r.nr = nr;
                r.ret = ret;
                if let Some(p) = hpos {
                    r.flags |= FLAG_HPOS_VALID;
                    r.pc = p;
                }
            }
            GuestRecord::ThreadStart { .. } => r.kind = KIND_THREAD_START,
            GuestRecord::ThreadExit { .. } => r.kind = KIND_THREAD_EXIT,
            GuestRecord::PluginSpan {
                end_ns,
                reason,
                hpos,
                ..
            } => {
                r.kind = KIND_PLUGIN_SPAN;
                r.args[0] = end_ns;
                r.args[1] = u64::from(reason);
                if let Some((a, b)) = hpos {
                    r.flags |= FLAG_HPOS_VALID;
                    r.args[2] = a;
                    r.args[3] = b;
                }
            }
            GuestRecord::ProcessStart {
                ppid, arch, plugin, ..
            } => {
                r.kind = KIND_PROCESS_START;
                r.args[0] = u64::from(ppid);
                r.args[1] = u64::from(arch);
                r.args[2] = u64::from(plugin.caps);
                r.args[3] = plugin.pack_versions();
            }
            GuestRecord::ProcessExit { code, .. } => {
                r.kind = KIND_PROCESS_EXIT;
                r.ret = code;
            }
            GuestRecord::GuestPath {
                nr,
                arg,
                offset,
                bytes,
                len,
                flags,
                ..
            } => {
                r.kind = KIND_GUEST_PATH;
                r.flags = flags;
                r.nr = nr;
                r.ret = i64::from(offset);
                r.pc = u64::from(arg) | u64::from(len) << 8;
                for (w, c) in r.args.iter_mut().zip(bytes.chunks_exact(8)) {
                    *w = u64::from_le_bytes(c.try_into().unwrap_or_default());
                }
            }
            GuestRecord::Fault {
                pc,
                handler,
                signal,
                ..
            } => {
                r.kind = KIND_FAULT;
                r.pc = pc;
                if let Some(h) = handler {
                    r.flags |= FAULT_HANDLER;
                    r.args[0] = h;
                }
                if let Some(sig) = signal {
                    r.flags |= FAULT_SIGNAL;
                    r.args[1] = u64::from(sig);
                }
            }
            GuestRecord::Note {
                code, detail, text, ..
            } => {
                r.kind = KIND_NOTE;
                r.nr = i64::from(code);
                r.ret = i64::from(detail);
                for (i, w) in r.args.iter_mut().enumerate() {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&text[i * 8..i * 8 + 8]);
                    *w = u64::from_le_bytes(b);
                }
            }
        }
        r
    }
}

/// Validate a record read at ring position `expected_seq` of a ring owned by
/// thread `owner_tid` (0 = any).
pub fn decode(
    raw: &RawRecord,
    expected_seq: u64,
    owner_tid: u32,
) -> Result<GuestRecord, RecordError> {
    if checksum(raw) != raw.check {
        return Err(RecordError::Checksum);
    }
    if raw.seq != expected_seq {
        return Err(RecordError::Sequence {
            expected: expected_seq,
            found: raw.seq,
        });
    }
    if owner_tid != 0 && raw.tid != owner_tid {
        return Err(RecordError::Owner {
            owner: owner_tid,
            found: raw.tid,
        });
    }
    GuestRecord::try_from(raw)
}

impl TryFrom<&RawRecord> for GuestRecord {
    type Error = RecordError;

    /// Field-level validation only (no checksum or sequence: see [`decode`]).
    fn try_from(r: &RawRecord) -> Result<Self, Self::Error> {
        if r.pid == 0 || r.tid == 0 {
            return Err(RecordError::Field("pid/tid is 0"));
        }
        let at = Origin {
            vcpu: r.vcpu,
            pid: r.pid,
            tid: r.tid,
            t_ns: r.t_ns,
        };
        let hpos = r.flags & FLAG_HPOS_VALID != 0;
        Ok(match r.kind {
            KIND_SYS_ENTER => GuestRecord::SysEnter {
                at,
                nr: r.nr,
                args: r.args,
                pc: (r.flags & FLAG_PC_VALID != 0).then_some(r.pc),
                hpos: hpos.then_some(r.ret as u64),
            },
            KIND_SYS_EXIT => GuestRecord::SysExit {
                at,
                nr: r.nr,
                ret: r.ret,
                hpos: hpos.then_some(r.pc),
            },
            KIND_THREAD_START => GuestRecord::ThreadStart { at },
            KIND_THREAD_EXIT => GuestRecord::ThreadExit { at },
            KIND_PLUGIN_SPAN => {
                if r.args[0] < r.t_ns {
                    return Err(RecordError::Field("plugin span ends before it starts"));
                }
                let reason =
                    u32::try_from(r.args[1]).map_err(|_| RecordError::Field("span reason"))?;
                if hpos && r.args[3] < r.args[2] {
                    return Err(RecordError::Field("plugin span ends before it starts"));
                }
                GuestRecord::PluginSpan {
                    at,
                    end_ns: r.args[0],
                    reason,
                    hpos: hpos.then_some((r.args[2], r.args[3])),
                }
            }
            KIND_PROCESS_START => {
                let caps = u32::try_from(r.args[2])
                    .ok()
                    .filter(|c| c & !CAP_ALL == 0)
                    .ok_or(RecordError::Field("plugin capabilities"))?;
                if r.args[3] >> 24 != 0 {
                    return Err(RecordError::Field("plugin API versions"));
                }
                let v = |shift: u32| (r.args[3] >> shift) as u8;
                GuestRecord::ProcessStart {
                    at,
                    ppid: u32::try_from(r.args[0]).map_err(|_| RecordError::Field("ppid"))?,
                    arch: u32::try_from(r.args[1]).map_err(|_| RecordError::Field("arch"))?,
                    plugin: PluginInfo {
                        api: v(0),
                        qemu_min: v(8),
                        qemu_max: v(16),
                        caps,
                    },
                }
            }
            KIND_PROCESS_EXIT => GuestRecord::ProcessExit { at, code: r.ret },
            KIND_GUEST_PATH => guest_path(r, at)?,
            KIND_FAULT => {
                if r.flags & !FAULT_FLAGS != 0 {
                    return Err(RecordError::Field("fault flags"));
                }
                let signal = if r.flags & FAULT_SIGNAL != 0 {
                    Some(
                        u32::try_from(r.args[1])
                            .ok()
                            .filter(|s| (1..=64).contains(s))
                            .ok_or(RecordError::Field("fault signal"))?,
                    )
                } else {
                    None
                };
                GuestRecord::Fault {
                    at,
                    pc: r.pc,
                    handler: (r.flags & FAULT_HANDLER != 0).then_some(r.args[0]),
                    signal,
                }
            }
            KIND_NOTE => {
                let code = u32::try_from(r.nr)
                    .ok()
                    .filter(|c| (NOTE_EXEC..=NOTE_EXEC_REFUSED).contains(c))
                    .ok_or(RecordError::Field("note code"))?;
                let detail = u32::try_from(r.ret).map_err(|_| RecordError::Field("note detail"))?;
                let mut text = [0u8; NOTE_TEXT];
                for (i, w) in r.args.iter().enumerate() {
                    text[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
                }
                GuestRecord::Note {
                    at,
                    code,
                    detail,
                    text,
                }
            }
            k => return Err(RecordError::Kind(k)),
        })
    }
}

/// A `GuestPath` record, checked: a chunk is where a path can be, holds
/// no NUL, is full unless it is the last, and has nothing after its bytes.
fn guest_path(r: &RawRecord, at: Origin) -> Result<GuestRecord, RecordError> {
    let bad = |what| Err(RecordError::Field(what));
    if r.flags & !PATH_FLAGS != 0 {
        return bad("path flags");
    }
    let offset = match u16::try_from(r.ret) {
        Ok(o) if usize::from(o) % PATH_CHUNK == 0 && usize::from(o) < MAX_GUEST_PATH => o,
        _ => return bad("path offset"),
    };
    if r.pc >> 16 != 0 || r.pc & 0xff >= 8 {
        return bad("path argument");
    }
    let arg = r.pc as u8;
    let len = (r.pc >> 8) as u8;
    let last = r.flags & PATH_LAST != 0;
    if usize::from(len) > PATH_CHUNK || (!last && usize::from(len) != PATH_CHUNK) {
        return bad("path chunk length");
    }
    let mut bytes = [0u8; PATH_CHUNK];
    for (c, w) in bytes.chunks_exact_mut(8).zip(r.args) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    let (used, rest) = bytes.split_at(usize::from(len));
    if used.contains(&0) || rest.iter().any(|b| *b != 0) {
        return bad("path bytes");
    }
    Ok(GuestRecord::GuestPath {
        at,
        nr: r.nr,
        arg,
        offset,
        bytes,
        len,
        flags: r.flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(rec: &GuestRecord, seq: u64) -> RawRecord {
        let mut r = rec.to_raw();
        r.seq = seq;
        r.check = checksum(&r);
        r
    }

    fn at() -> Origin {
        Origin {
            vcpu: 0,
            pid: 10,
            tid: 11,
            t_ns: 5,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let recs = [
            GuestRecord::SysEnter {
                at: at(),
                nr: 4005,
                args: [1, 2, 3, 4, 5, 6, 7, 8],
                pc: Some(0x400100),
                hpos: Some(1 << 40),
            },
            GuestRecord::SysEnter {
                at: at(),
                nr: 4005,
                args: [0; 8],
                pc: None,
                hpos: None,
            },
            GuestRecord::SysExit {
                at: at(),
                nr: 4005,
                ret: -89,
                hpos: Some(u64::MAX),
            },
            GuestRecord::SysExit {
                at: at(),
                nr: 4005,
                ret: 3,
                hpos: None,
            },
            GuestRecord::ThreadStart { at: at() },
            GuestRecord::ThreadExit { at: at() },
            GuestRecord::PluginSpan {
                at: at(),
                end_ns: 9,
                reason: SPAN_RING_WAIT,
                hpos: Some((112, 448)),
            },
            GuestRecord::PluginSpan {
                at: at(),
                end_ns: 9,
                reason: SPAN_SETUP,
                hpos: None,
            },
            GuestRecord::ProcessStart {
                at: at(),
                ppid: 3,
                arch: 1,
                plugin: PluginInfo {
                    api: 5,
                    qemu_min: 2,
                    qemu_max: 5,
                    caps: CAP_REGISTER_READ | CAP_MEMORY_READ | CAP_SYSCALL_FILTER,
                },
            },
            GuestRecord::ProcessExit { at: at(), code: 7 },
            path_chunk(0, b"/etc/passwd", PATH_LAST),
            path_chunk(64, &[b'a'; 64], 0),
            path_chunk(192, &[b'b'; 64], PATH_LAST | PATH_TRUNCATED),
            path_chunk(0, b"", PATH_LAST | PATH_UNREADABLE),
            GuestRecord::Fault {
                at: at(),
                pc: 0x400890,
                handler: Some(0x4008a4),
                signal: Some(11),
            },
            GuestRecord::Fault {
                at: at(),
                pc: 0x400890,
                handler: None,
                signal: None,
            },
            GuestRecord::Note {
                at: at(),
                code: NOTE_EXEC_REFUSED,
                detail: EXEC_REFUSED_NATIVE,
                text: note_bytes(b"/tmp/native"),
            },
        ];
        for (i, rec) in recs.iter().enumerate() {
            let raw = sealed(rec, i as u64);
            assert_eq!(decode(&raw, i as u64, 11).as_ref(), Ok(rec));
        }
    }

    fn path_chunk(offset: u16, s: &[u8], flags: u16) -> GuestRecord {
        let mut bytes = [0u8; PATH_CHUNK];
        bytes[..s.len()].copy_from_slice(s);
        GuestRecord::GuestPath {
            at: at(),
            nr: 4005,
            arg: 0,
            offset,
            bytes,
            len: s.len() as u8,
            flags,
        }
    }

    fn resealed(mut r: RawRecord, f: impl FnOnce(&mut RawRecord)) -> RawRecord {
        f(&mut r);
        r.check = checksum(&r);
        r
    }

    #[test]
    fn hostile_paths_faults_and_capabilities_are_refused() {
        let good = sealed(&path_chunk(64, &[b'x'; 64], 0), 0);
        assert!(decode(&good, 0, 11).is_ok());
        let refused = [
            // not a chunk boundary, or past the limit
            resealed(good, |r| r.ret = 65),
            resealed(good, |r| r.ret = MAX_GUEST_PATH as i64),
            resealed(good, |r| r.ret = -64),
            // a NUL inside, a short chunk that is not the last, bytes after the end
            resealed(good, |r| r.args[3] = 0),
            resealed(good, |r| r.pc = 10 << 8),
            resealed(good, |r| {
                r.pc = 8 << 8;
                r.flags = PATH_LAST;
            }),
            // a length over the chunk, an argument index over 7, unknown flags
            resealed(good, |r| r.pc = 65 << 8),
            resealed(good, |r| r.pc = 8 | 64 << 8),
            resealed(good, |r| r.flags = 8),
        ];
        for (i, r) in refused.iter().enumerate() {
            assert!(
                matches!(decode(r, 0, 11), Err(RecordError::Field(_))),
                "case {i} accepted"
            );
        }
        let fault = sealed(
            &GuestRecord::Fault {
                at: at(),
                pc: 4,
                handler: None,
                signal: Some(4),
            },
            0,
        );
        for bad in [
            resealed(fault, |r| r.args[1] = 0),
            resealed(fault, |r| r.args[1] = 65),
            resealed(fault, |r| r.flags |= 4),
        ] {
            assert!(matches!(decode(&bad, 0, 11), Err(RecordError::Field(_))));
        }
        let start = sealed(
            &GuestRecord::ProcessStart {
                at: at(),
                ppid: 1,
                arch: 1,
                plugin: PluginInfo::default(),
            },
            0,
        );
        for bad in [
            resealed(start, |r| r.args[2] = u64::from(CAP_ALL) + 1),
            resealed(start, |r| r.args[3] = 1 << 24),
        ] {
            assert!(matches!(decode(&bad, 0, 11), Err(RecordError::Field(_))));
        }
    }

    #[test]
    fn hostile_records_are_refused_not_believed() {
        let rec = GuestRecord::SysExit {
            at: at(),
            nr: 1,
            ret: 0,
            hpos: None,
        };
        let good = sealed(&rec, 3);
        let mut torn = good;
        torn.ret = 1;
        assert_eq!(decode(&torn, 3, 11), Err(RecordError::Checksum));
        assert!(matches!(
            decode(&good, 4, 11),
            Err(RecordError::Sequence { .. })
        ));
        assert!(matches!(
            decode(&good, 3, 12),
            Err(RecordError::Owner { .. })
        ));
        let mut bad_kind = good;
        bad_kind.kind = 99;
        bad_kind.check = checksum(&bad_kind);
        assert_eq!(decode(&bad_kind, 3, 11), Err(RecordError::Kind(99)));
        let mut bad_span = sealed(
            &GuestRecord::PluginSpan {
                at: at(),
                end_ns: 9,
                reason: 1,
                hpos: None,
            },
            0,
        );
        bad_span.args[0] = 1;
        bad_span.check = checksum(&bad_span);
        assert!(matches!(
            decode(&bad_span, 0, 0),
            Err(RecordError::Field(_))
        ));
        let zero = RawRecord::default();
        let mut z = zero;
        z.check = checksum(&z);
        assert!(decode(&z, 0, 0).is_err());
    }
}
