//! Raw ring-buffer records to [`HostEvent`]s. The only place that interprets
//! the bytes; anything that does not fit is an error, never a panic.

use crate::sys::{
    self, gv_event_hdr, gv_exec_event, gv_exit_event, gv_fork_event, gv_sc_event, gv_syscall_event,
    gv_syscall_path_event, read_record, Record,
};
use crate::{HostEvent, HostSyscall};

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a record header.
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    /// The header's size field disagrees with the bytes present or the op.
    #[error("record op {op} declares {declared} bytes, {present} present, {needed} needed")]
    BadSize {
        /// The header's op.
        op: u16,
        /// The header's size field.
        declared: u32,
        /// Bytes actually handed over by the ring.
        present: usize,
        /// Bytes the op's record type needs.
        needed: usize,
    },
    /// An op this version does not know.
    #[error("unknown record op {0}")]
    UnknownOp(u16),
}

/// Read a `T` whose header says `hdr.size`, checking it against the bytes.
fn body<T: Record>(hdr: &gv_event_hdr, bytes: &[u8]) -> Result<T, DecodeError> {
    let needed = std::mem::size_of::<T>();
    let declared = hdr.size;
    let bad = || DecodeError::BadSize {
        op: hdr.op,
        declared,
        present: bytes.len(),
        needed,
    };
    let declared_len = usize::try_from(declared).map_err(|_| bad())?;
    if declared_len < needed || declared_len > bytes.len() {
        return Err(bad());
    }
    read_record::<T>(&bytes[..declared_len]).ok_or_else(bad)
}

/// Lossy UTF-8 of the first `len` bytes of a C char buffer, stopping early at
/// a NUL.
fn c_string(buf: &[std::os::raw::c_char], len: u16) -> String {
    let len = usize::from(len).min(buf.len());
    // c_char is i8 or u8 depending on the target; both convert bytewise.
    let bytes: Vec<u8> = buf[..len]
        .iter()
        .map(|&c| c.to_ne_bytes()[0])
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn syscall(sc: &gv_syscall_event, ret: Option<i64>, path: Option<String>) -> HostSyscall {
    HostSyscall {
        tgid: sc.tgid,
        tid: sc.tid,
        nr: sc.nr,
        args: sc.args,
        ret,
        t_enter_ns: sc.t_enter,
        t_exit_ns: sc.t_exit,
        pos: sc.pos,
        path,
    }
}

/// A short record (`GV_OP_SC`): its fixed 24 bytes, the time when timed,
/// then exactly `nargs` arguments; the rest of the arguments are 0.
fn short_syscall(bytes: &[u8]) -> Result<HostSyscall, DecodeError> {
    const FIXED: usize = std::mem::offset_of!(gv_sc_event, words);
    let mut buf = [0u8; std::mem::size_of::<gv_sc_event>()];
    let bad = |declared: usize| DecodeError::BadSize {
        op: sys::GV_OP_SC as u16,
        declared: u32::try_from(declared).unwrap_or(u32::MAX),
        present: bytes.len(),
        needed: declared,
    };
    if bytes.len() < FIXED || bytes.len() > buf.len() {
        return Err(bad(FIXED));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let e: gv_sc_event = read_record(&buf).ok_or_else(|| bad(FIXED))?;
    let (nargs, timed) = (usize::from(e.nargs), usize::from(e.timed));
    let declared = FIXED + 8 * (nargs + timed);
    if nargs > 6 || timed > 1 || declared != bytes.len() {
        return Err(bad(declared));
    }
    let mut args = [0u64; 6];
    args[..nargs].copy_from_slice(&e.words[timed..timed + nargs]);
    Ok(HostSyscall {
        tgid: e.tgid,
        tid: e.tid,
        nr: i64::from(e.nr),
        args,
        ret: Some(e.ret),
        t_enter_ns: 0,
        t_exit_ns: if timed == 1 { e.words[0] } else { 0 },
        pos: 0,
        path: None,
    })
}

impl HostEvent {
    /// Set the position of the record this event came from (the programs
    /// leave it 0: only the reader knows it).
    pub(crate) fn set_ring_pos(&mut self, p: u64) {
        match self {
            HostEvent::Syscall(s) => s.pos = p,
            HostEvent::Exec { pos, .. } => *pos = p,
            _ => {}
        }
    }
}

impl TryFrom<&[u8]> for HostEvent {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let hdr: gv_event_hdr = read_record(bytes).ok_or(DecodeError::Short(bytes.len()))?;
        let op = u32::from(hdr.op);
        Ok(match op {
            sys::GV_OP_SC => HostEvent::Syscall(short_syscall(bytes)?),
            sys::GV_OP_SYSCALL => {
                let e: gv_syscall_event = body(&hdr, bytes)?;
                HostEvent::Syscall(syscall(&e, Some(e.ret), None))
            }
            sys::GV_OP_NORETURN => {
                let e: gv_syscall_event = body(&hdr, bytes)?;
                HostEvent::Syscall(syscall(&e, None, None))
            }
            sys::GV_OP_SYSCALL_PATH => {
                let e: gv_syscall_path_event = body(&hdr, bytes)?;
                let path = (u32::from(hdr.flags) & sys::GV_F_PATH_FAULT == 0)
                    .then(|| c_string(&e.path, e.path_len));
                HostEvent::Syscall(syscall(&e.sc, Some(e.sc.ret), path))
            }
            sys::GV_OP_FORK => {
                let e: gv_fork_event = body(&hdr, bytes)?;
                HostEvent::Fork {
                    parent_tgid: e.parent_tgid,
                    parent_tid: e.parent_tid,
                    child_tgid: e.child_tgid,
                    child_tid: e.child_tid,
                    child_ns_tgid: e.child_ns_tgid,
                    child_ns_tid: e.child_ns_tid,
                    is_thread: e.is_thread != 0,
                    t_ns: hdr.ktime,
                }
            }
            sys::GV_OP_EXEC => {
                let e: gv_exec_event = body(&hdr, bytes)?;
                HostEvent::Exec {
                    tgid: e.tgid,
                    tid: e.tid,
                    old_tid: e.old_tid,
                    filename: c_string(&e.filename, e.filename_len),
                    killed: u32::from(hdr.flags) & sys::GV_F_EXEC_KILLED != 0,
                    t_ns: hdr.ktime,
                    pos: e.pos,
                }
            }
            sys::GV_OP_EXIT => {
                let e: gv_exit_event = body(&hdr, bytes)?;
                HostEvent::Exit {
                    tgid: e.tgid,
                    tid: e.tid,
                    exit_code: e.exit_code,
                    group_dead: e.group_dead != 0,
                    t_ns: hdr.ktime,
                }
            }
            sys::GV_OP_ENFORCE => {
                let e: sys::gv_enforce_event = body(&hdr, bytes)?;
                let reason = match e.reason {
                    sys::GV_ENF_KILL_NR => crate::EnforceReason::KillRule,
                    sys::GV_ENF_FORK_RATE => crate::EnforceReason::ForkRate,
                    sys::GV_ENF_CONNECT_RATE => crate::EnforceReason::ConnectRate,
                    _ => return Err(DecodeError::UnknownOp(hdr.op)),
                };
                HostEvent::Enforce {
                    tgid: e.tgid,
                    tid: e.tid,
                    nr: e.nr,
                    reason,
                    count: e.count,
                    limit: e.limit,
                    killed: e.killed != 0,
                    t_ns: hdr.ktime,
                }
            }
            _ => return Err(DecodeError::UnknownOp(hdr.op)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn put(b: &mut [u8], at: usize, v: &[u8]) {
        b[at..at + v.len()].copy_from_slice(v);
    }

    fn record(op: u32, size: usize, total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        b[0..2].copy_from_slice(&u16::try_from(op).unwrap().to_ne_bytes());
        b[4..8].copy_from_slice(&u32::try_from(size).unwrap().to_ne_bytes());
        b[8..16].copy_from_slice(&42u64.to_ne_bytes());
        b
    }

    #[test]
    fn decodes_a_syscall_record() {
        let n = size_of::<gv_syscall_event>();
        let mut b = record(sys::GV_OP_SYSCALL, n, n);
        put(
            &mut b,
            offset_of!(gv_syscall_event, tgid),
            &7u32.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(gv_syscall_event, nr),
            &39i64.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(gv_syscall_event, ret),
            &(-2i64).to_ne_bytes(),
        );
        match HostEvent::try_from(b.as_slice()).unwrap() {
            HostEvent::Syscall(s) => {
                assert_eq!((s.tgid, s.nr, s.ret, s.path), (7, 39, Some(-2), None));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn path_is_cut_at_path_len_and_lossy() {
        let n = size_of::<gv_syscall_path_event>();
        let mut b = record(sys::GV_OP_SYSCALL_PATH, n, n);
        put(
            &mut b,
            offset_of!(gv_syscall_path_event, path_len),
            &5u16.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(gv_syscall_path_event, path),
            b"/e\xfftcXYZ",
        );
        match HostEvent::try_from(b.as_slice()).unwrap() {
            HostEvent::Syscall(s) => assert_eq!(s.path.as_deref(), Some("/e\u{fffd}tc")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn path_fault_gives_no_path() {
        let n = size_of::<gv_syscall_path_event>();
        let mut b = record(sys::GV_OP_SYSCALL_PATH, n, n);
        b[2..4].copy_from_slice(&u16::try_from(sys::GV_F_PATH_FAULT).unwrap().to_ne_bytes());
        match HostEvent::try_from(b.as_slice()).unwrap() {
            HostEvent::Syscall(s) => assert_eq!(s.path, None),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn noreturn_has_no_ret() {
        let n = size_of::<gv_syscall_event>();
        let b = record(sys::GV_OP_NORETURN, n, n);
        match HostEvent::try_from(b.as_slice()).unwrap() {
            HostEvent::Syscall(s) => assert_eq!(s.ret, None),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn size_larger_than_bytes_present_is_refused() {
        let n = size_of::<gv_syscall_event>();
        let b = record(sys::GV_OP_SYSCALL, n + 8, n);
        assert!(matches!(
            HostEvent::try_from(b.as_slice()),
            Err(DecodeError::BadSize { .. })
        ));
    }

    #[test]
    fn size_smaller_than_record_is_refused() {
        let n = size_of::<gv_exec_event>();
        let b = record(sys::GV_OP_EXEC, 16, n);
        assert!(matches!(
            HostEvent::try_from(b.as_slice()),
            Err(DecodeError::BadSize { .. })
        ));
    }

    #[test]
    fn enforce_records_decode_and_unknown_reasons_are_refused() {
        let n = size_of::<sys::gv_enforce_event>();
        assert_eq!(n, 48);
        let mut b = record(sys::GV_OP_ENFORCE, n, n);
        assert!(HostEvent::try_from(b.as_slice()).is_err(), "reason 0");
        put(
            &mut b,
            offset_of!(sys::gv_enforce_event, reason),
            &sys::GV_ENF_FORK_RATE.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(sys::gv_enforce_event, nr),
            &(-1i64).to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(sys::gv_enforce_event, count),
            &21u32.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(sys::gv_enforce_event, limit),
            &20u32.to_ne_bytes(),
        );
        b[offset_of!(sys::gv_enforce_event, killed)] = 1;
        match HostEvent::try_from(b.as_slice()) {
            Ok(HostEvent::Enforce {
                reason: crate::EnforceReason::ForkRate,
                nr: -1,
                count: 21,
                limit: 20,
                killed: true,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A short record as the program writes it: `nargs` arguments (1, 2,
    /// ...), after the time when `t` is not 0.
    fn short(nargs: u8, t: u64) -> Vec<u8> {
        let mut b = vec![0u8; offset_of!(gv_sc_event, words)];
        b[0..2].copy_from_slice(&u16::try_from(sys::GV_OP_SC).unwrap().to_ne_bytes());
        b[2] = nargs;
        b[3] = u8::from(t != 0);
        put(&mut b, offset_of!(gv_sc_event, nr), &1i32.to_ne_bytes());
        put(&mut b, offset_of!(gv_sc_event, tgid), &7u32.to_ne_bytes());
        put(&mut b, offset_of!(gv_sc_event, tid), &8u32.to_ne_bytes());
        put(&mut b, offset_of!(gv_sc_event, ret), &(-9i64).to_ne_bytes());
        if t != 0 {
            b.extend_from_slice(&t.to_ne_bytes());
        }
        for i in 0..u64::from(nargs) {
            b.extend_from_slice(&(i + 1).to_ne_bytes());
        }
        b
    }

    #[test]
    fn short_records_carry_their_arguments_and_time() {
        for nargs in 0..=6u8 {
            for t in [0u64, 123_456] {
                let b = short(nargs, t);
                let Ok(HostEvent::Syscall(s)) = HostEvent::try_from(b.as_slice()) else {
                    panic!("nargs {nargs} t {t}: not a syscall");
                };
                let mut want = [0u64; 6];
                for (i, w) in want.iter_mut().enumerate().take(usize::from(nargs)) {
                    *w = i as u64 + 1;
                }
                assert_eq!(
                    (s.tgid, s.tid, s.nr, s.ret, s.args, s.t_exit_ns, s.path),
                    (7, 8, 1, Some(-9), want, t, None)
                );
            }
        }
    }

    #[test]
    fn short_records_of_the_wrong_length_or_counts_are_refused() {
        let b = short(3, 5);
        for cut in 0..b.len() {
            assert!(HostEvent::try_from(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut long = b.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(HostEvent::try_from(long.as_slice()).is_err());
        let mut seven = short(6, 0);
        seven[2] = 7;
        seven.extend_from_slice(&[0; 8]);
        assert!(HostEvent::try_from(seven.as_slice()).is_err());
        let mut timed2 = short(2, 0);
        timed2[3] = 2;
        assert!(HostEvent::try_from(timed2.as_slice()).is_err());
    }

    #[test]
    fn unknown_op_and_short_input_are_errors() {
        let b = record(99, 16, 16);
        assert_eq!(
            HostEvent::try_from(b.as_slice()),
            Err(DecodeError::UnknownOp(99))
        );
        assert_eq!(HostEvent::try_from(&b[..3]), Err(DecodeError::Short(3)));
    }

    #[test]
    fn every_truncation_of_every_record_is_an_error_not_a_panic() {
        for (op, n) in [
            (sys::GV_OP_SYSCALL, size_of::<gv_syscall_event>()),
            (sys::GV_OP_SYSCALL_PATH, size_of::<gv_syscall_path_event>()),
            (sys::GV_OP_FORK, size_of::<gv_fork_event>()),
            (sys::GV_OP_EXEC, size_of::<gv_exec_event>()),
            (sys::GV_OP_EXIT, size_of::<gv_exit_event>()),
            (sys::GV_OP_ENFORCE, size_of::<sys::gv_enforce_event>()),
        ] {
            let mut b = record(op, n, n);
            if op == sys::GV_OP_ENFORCE {
                let at = offset_of!(sys::gv_enforce_event, reason);
                put(&mut b, at, &sys::GV_ENF_KILL_NR.to_ne_bytes());
            }
            assert!(HostEvent::try_from(b.as_slice()).is_ok(), "op {op}");
            for cut in 0..n {
                assert!(HostEvent::try_from(&b[..cut]).is_err(), "op {op} cut {cut}");
            }
        }
    }
}
