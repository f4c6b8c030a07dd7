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
    },
    /// A guest syscall returned (after QEMU's last host syscall for it).
    SysExit {
        /// Common fields.
        at: Origin,
        /// Guest syscall number.
        nr: i64,
        /// Value the guest sees (negative target errno on failure).
        ret: i64,
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
    },
    /// A QEMU process attached to the region.
    ProcessStart {
        /// Common fields.
        at: Origin,
        /// Host parent process id.
        ppid: u32,
        /// Guest architecture id (see [`crate::arch`]).
        arch: u32,
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

/// `flags` bit on `KIND_SYS_ENTER`: `pc` is valid.
pub const FLAG_PC_VALID: u16 = 1;

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
            | GuestRecord::Note { at, .. } => at,
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
            | GuestRecord::Note { at, .. } => at,
        }
    }

    /// Encode for the ring; the producer fills in `seq` and `check`.
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
            GuestRecord::SysEnter { nr, args, pc, .. } => {
                r.kind = KIND_SYS_ENTER;
                r.nr = nr;
                r.args = args;
                if let Some(pc) = pc {
                    r.flags |= FLAG_PC_VALID;
                    r.pc = pc;
                }
            }
            GuestRecord::SysExit { nr, ret, .. } => {
                r.kind = KIND_SYS_EXIT;
                r.nr = nr;
                r.ret = ret;
            }
            GuestRecord::ThreadStart { .. } => r.kind = KIND_THREAD_START,
            GuestRecord::ThreadExit { .. } => r.kind = KIND_THREAD_EXIT,
            GuestRecord::PluginSpan { end_ns, reason, .. } => {
                r.kind = KIND_PLUGIN_SPAN;
                r.args[0] = end_ns;
                r.args[1] = u64::from(reason);
            }
            GuestRecord::ProcessStart { ppid, arch, .. } => {
                r.kind = KIND_PROCESS_START;
                r.args[0] = u64::from(ppid);
                r.args[1] = u64::from(arch);
            }
            GuestRecord::ProcessExit { code, .. } => {
                r.kind = KIND_PROCESS_EXIT;
                r.ret = code;
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
        Ok(match r.kind {
            KIND_SYS_ENTER => GuestRecord::SysEnter {
                at,
                nr: r.nr,
                args: r.args,
                pc: (r.flags & FLAG_PC_VALID != 0).then_some(r.pc),
            },
            KIND_SYS_EXIT => GuestRecord::SysExit {
                at,
                nr: r.nr,
                ret: r.ret,
            },
            KIND_THREAD_START => GuestRecord::ThreadStart { at },
            KIND_THREAD_EXIT => GuestRecord::ThreadExit { at },
            KIND_PLUGIN_SPAN => {
                if r.args[0] < r.t_ns {
                    return Err(RecordError::Field("plugin span ends before it starts"));
                }
                let reason =
                    u32::try_from(r.args[1]).map_err(|_| RecordError::Field("span reason"))?;
                GuestRecord::PluginSpan {
                    at,
                    end_ns: r.args[0],
                    reason,
                }
            }
            KIND_PROCESS_START => GuestRecord::ProcessStart {
                at,
                ppid: u32::try_from(r.args[0]).map_err(|_| RecordError::Field("ppid"))?,
                arch: u32::try_from(r.args[1]).map_err(|_| RecordError::Field("arch"))?,
            },
            KIND_PROCESS_EXIT => GuestRecord::ProcessExit { at, code: r.ret },
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
            },
            GuestRecord::SysEnter {
                at: at(),
                nr: 4005,
                args: [0; 8],
                pc: None,
            },
            GuestRecord::SysExit {
                at: at(),
                nr: 4005,
                ret: -89,
            },
            GuestRecord::ThreadStart { at: at() },
            GuestRecord::ThreadExit { at: at() },
            GuestRecord::PluginSpan {
                at: at(),
                end_ns: 9,
                reason: SPAN_RING_WAIT,
            },
            GuestRecord::ProcessStart {
                at: at(),
                ppid: 3,
                arch: 1,
            },
            GuestRecord::ProcessExit { at: at(), code: 7 },
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

    #[test]
    fn hostile_records_are_refused_not_believed() {
        let rec = GuestRecord::SysExit {
            at: at(),
            nr: 1,
            ret: 0,
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
