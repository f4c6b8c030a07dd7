//! Live output: strace-like text, or one JSON object per line (the JSONL
//! contract of docs/jsonl.md).

use crate::tables;
use serde_json::{json, Value};
use shmem_proto::trace::{AlertEvent, FaultEvent, HostCall, PluginEvent, SyscallEvent, TraceEvent};
use std::io::{self, Write};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// strace-like lines.
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// Writes events in a format.
pub struct Output {
    out: Box<dyn Write + Send>,
    format: Format,
    /// Show QEMU's internal host calls in text output.
    pub show_internal: bool,
    /// The first enforced kill of the run, said again with the summary.
    kill: Option<AlertEvent>,
    /// One JSONL line, built here and written whole (serde writes in
    /// small pieces; each through `out` was a call through a vtable).
    line: Vec<u8>,
}

/// The words the summary adds when the policy killed the run.
pub fn killed_note(k: &AlertEvent) -> String {
    format!(
        "KILLED by guestview's policy: rule {} ({} layer){}",
        k.rule
            .as_deref()
            .map_or_else(|| "(default)".to_owned(), |r| format!("\"{r}\"")),
        k.layer,
        k.seq
            .map_or(String::new(), |s| format!(" at guest call seq {s}"))
    )
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn shown_args(name: Option<&str>, args: &[u64]) -> usize {
    name.and_then(tables::arg_count)
        .unwrap_or(6)
        .min(args.len())
}

/// JSON for a host call.
pub fn host_json(h: &HostCall) -> Value {
    json!({
        "nr": h.nr,
        "name": h.name,
        "args": h.args.iter().map(|a| hex(*a)).collect::<Vec<_>>(),
        "ret": h.ret,
        "path": h.path,
        "tid": h.tid,
        "t_enter_ns": h.t_enter_ns,
        "t_exit_ns": h.t_exit_ns,
    })
}

/// The JSONL `syscall` line, written by hand: the same keys in the same
/// (sorted) order and the same bytes as [`syscall_json`] serialised by
/// serde_json (the test below holds them equal). Nearly every line of a
/// run is one of these; through serde's generic serializer the reader
/// spent most of its time escaping strings that never need it (hex
/// numbers, syscall names) and went slower than QEMU.
mod line {
    use super::shown_args;
    use shmem_proto::trace::{HostCall, SyscallEvent};

    /// A JSON string. Only `"`, `\` and control characters are escaped
    /// (as serde_json does): anything else is copied as it is.
    fn string(out: &mut Vec<u8>, s: &str) {
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
    }

    fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => string(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }

    fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn opt_int(out: &mut Vec<u8>, v: Option<i64>) {
        match v {
            Some(v) => int(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }

    /// `"0x…"`, lower case, no leading zeros (`format!("{v:#x}")`).
    fn hex(out: &mut Vec<u8>, v: u64) {
        let mut buf = [0u8; 18];
        out.push(b'"');
        out.extend_from_slice(super::hex_bytes(v, &mut buf));
        out.push(b'"');
    }

    fn hex_list(out: &mut Vec<u8>, vs: &[u64]) {
        out.push(b'[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            hex(out, *v);
        }
        out.push(b']');
    }

    fn host(out: &mut Vec<u8>, h: &HostCall) {
        out.extend_from_slice(b"{\"args\":");
        hex_list(out, &h.args);
        out.extend_from_slice(b",\"name\":");
        string(out, &h.name);
        out.extend_from_slice(b",\"nr\":");
        int(out, h.nr);
        out.extend_from_slice(b",\"path\":");
        opt_string(out, h.path.as_deref());
        out.extend_from_slice(b",\"ret\":");
        opt_int(out, h.ret);
        out.extend_from_slice(b",\"t_enter_ns\":");
        int(out, h.t_enter_ns);
        out.extend_from_slice(b",\"t_exit_ns\":");
        int(out, h.t_exit_ns);
        out.extend_from_slice(b",\"tid\":");
        int(out, h.tid);
        out.push(b'}');
    }

    /// Append the call's JSON object (no newline) to `out`.
    pub(super) fn syscall(out: &mut Vec<u8>, s: &SyscallEvent) {
        let n = shown_args(s.name.as_deref(), &s.args);
        out.extend_from_slice(b"{\"arch\":");
        string(out, &s.arch);
        out.extend_from_slice(b",\"args\":");
        hex_list(out, &s.args[..n]);
        out.extend_from_slice(b",\"errno\":");
        opt_string(out, s.errno.as_deref());
        out.extend_from_slice(b",\"guest_path\":");
        opt_string(out, s.guest_path.as_deref());
        out.extend_from_slice(b",\"host\":[");
        for (i, h) in s.host.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            host(out, h);
        }
        out.extend_from_slice(b"],\"name\":");
        opt_string(out, s.name.as_deref());
        out.extend_from_slice(b",\"nr\":");
        int(out, s.nr);
        out.extend_from_slice(b",\"path\":");
        opt_string(out, s.path.as_deref());
        out.extend_from_slice(b",\"pc\":");
        match s.pc {
            Some(pc) => hex(out, pc),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"pc_sym\":");
        opt_string(out, s.pc_sym.as_deref());
        out.extend_from_slice(b",\"pid\":");
        int(out, s.pid);
        out.extend_from_slice(b",\"policy\":{\"action\":");
        string(out, &s.policy_action);
        out.extend_from_slice(b",\"rule\":");
        opt_string(out, s.policy_rule.as_deref());
        out.extend_from_slice(b"},\"ret\":");
        opt_int(out, s.ret);
        out.extend_from_slice(b",\"seq\":");
        int(out, s.seq);
        out.extend_from_slice(b",\"t_enter_ns\":");
        int(out, s.t_enter_ns);
        out.extend_from_slice(b",\"t_exit_ns\":");
        int(out, s.t_exit_ns);
        out.extend_from_slice(b",\"tid\":");
        int(out, s.tid);
        out.extend_from_slice(b",\"type\":\"syscall\",\"vcpu\":");
        int(out, s.vcpu);
        out.extend_from_slice(b",\"verdict\":");
        string(out, &s.verdict);
        out.push(b'}');
    }
}

/// JSON for a guest call (the `syscall` record of the contract).
pub fn syscall_json(s: &SyscallEvent) -> Value {
    let n = shown_args(s.name.as_deref(), &s.args);
    json!({
        "type": "syscall",
        "seq": s.seq,
        "pid": s.pid,
        "tid": s.tid,
        "vcpu": s.vcpu,
        "arch": s.arch,
        "pc": s.pc.map(hex),
        "pc_sym": s.pc_sym,
        "nr": s.nr,
        "name": s.name,
        "args": s.args[..n].iter().map(|a| hex(*a)).collect::<Vec<_>>(),
        "path": s.path,
        "guest_path": s.guest_path,
        "ret": s.ret,
        "errno": s.errno,
        "t_enter_ns": s.t_enter_ns,
        "t_exit_ns": s.t_exit_ns,
        "host": s.host.iter().map(host_json).collect::<Vec<_>>(),
        "verdict": s.verdict,
        "policy": {"action": s.policy_action, "rule": s.policy_rule},
    })
}

/// JSON for a guest exception (the `fault` record).
pub fn fault_json(f: &FaultEvent) -> Value {
    json!({
        "type": "fault",
        "pid": f.pid,
        "tid": f.tid,
        "vcpu": f.vcpu,
        "arch": f.arch,
        "pc": hex(f.pc),
        "pc_sym": f.pc_sym,
        "signal": f.signal,
        "signal_name": f.signal_name,
        "handler": f.handler.map(hex),
        "fatal": f.fatal,
        "t_ns": f.t_ns,
    })
}

/// JSON for any event, with its `type`.
pub fn event_json(ev: &TraceEvent) -> Value {
    let (ty, v) = match ev {
        TraceEvent::Syscall(s) => return syscall_json(s),
        TraceEvent::Fault(f) => return fault_json(f),
        TraceEvent::Plugin(p) => ("plugin", serde_json::to_value(p)),
        TraceEvent::Run(r) => ("run", serde_json::to_value(r)),
        TraceEvent::Process(p) => ("process", serde_json::to_value(p)),
        TraceEvent::Thread(t) => ("thread", serde_json::to_value(t)),
        TraceEvent::Internal(i) => {
            return json!({
                "type": "internal",
                "pid": i.pid,
                "tid": i.tid,
                "origin": i.origin,
                "count": i.host.len(),
                "host": i.host.iter().map(host_json).collect::<Vec<_>>(),
            })
        }
        TraceEvent::Lost(l) => ("lost", serde_json::to_value(l)),
        TraceEvent::Summary(s) => ("summary", serde_json::to_value(s)),
        TraceEvent::Alert(a) => ("alert", serde_json::to_value(a)),
    };
    let mut with_type = serde_json::Map::new();
    with_type.insert("type".into(), Value::String(ty.into()));
    if let Ok(Value::Object(m)) = v {
        with_type.extend(m);
    }
    Value::Object(with_type)
}

/// `v` as `format!("{v:#x}")` writes it, into the end of `buf`: the
/// formatting machinery is most of the time of a line made of numbers.
fn hex_bytes(v: u64, buf: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf[i - 2..i].copy_from_slice(b"0x");
    &buf[i - 2..]
}

fn push_hex(out: &mut String, v: u64) {
    let mut buf = [0u8; 18];
    out.push_str(std::str::from_utf8(hex_bytes(v, &mut buf)).unwrap_or_default());
}

fn push_int(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
}

fn push_ret(out: &mut String, ret: Option<i64>, errno: Option<&str>) {
    match (ret, errno) {
        (None, _) => out.push('?'),
        (Some(r), Some(e)) => {
            push_int(out, r);
            out.push(' ');
            out.push_str(e);
        }
        (Some(r), None) if r > 0xffff => push_hex(out, r as u64),
        (Some(r), None) => push_int(out, r),
    }
}

/// The `plugin` record as one line: what the process's QEMU offers.
pub fn plugin_text(p: &PluginEvent) -> String {
    let mut has = vec![format!("PC from {}", p.pc_from)];
    if p.memory_read {
        has.push("guest paths".into());
    }
    if p.discon {
        has.push(if p.handled_fault_signal {
            "faults".into()
        } else {
            "faults (signal only when fatal)".to_string()
        });
    }
    if p.syscall_filter {
        has.push("syscall filter".into());
    }
    format!(
        "[{}] QEMU plugin API v{} (QEMU offers v{}-v{}): {}",
        p.pid,
        p.api_version,
        p.qemu_api_min,
        p.qemu_api_max,
        has.join(", ")
    )
}

/// A guest exception as one line.
pub fn fault_text(f: &FaultEvent) -> String {
    use std::fmt::Write as _;
    let mut line = format!("[{}/{}] fault ", f.pid, f.tid);
    let _ = match (&f.signal_name, f.signal) {
        (Some(n), Some(s)) => write!(line, "{n} ({s})"),
        (None, Some(s)) => write!(line, "signal {s}"),
        _ => write!(line, "(signal unknown)"),
    };
    let _ = write!(line, " @{:#x}", f.pc);
    if let Some(sym) = &f.pc_sym {
        let _ = write!(line, " <{sym}>");
    }
    let _ = match f.handler {
        Some(h) => write!(line, ", handler {h:#x}"),
        None => write!(line, ", no handler: the process dies"),
    };
    line
}

fn push_args(out: &mut String, name: Option<&str>, args: &[u64], path: Option<&str>) {
    use std::fmt::Write as _;
    let n = shown_args(name, args);
    let pidx = if path.is_some() {
        name.and_then(tables::path_arg)
    } else {
        None
    };
    for (i, a) in args[..n].iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match (pidx, path) {
            (Some(p), Some(path)) if p == i => {
                let _ = write!(out, "{path:?}");
            }
            _ => push_hex(out, *a),
        }
    }
}

/// One guest call as text (with its host calls on following lines).
pub fn syscall_text(s: &SyscallEvent) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160 + 100 * s.host.len());
    line.push('[');
    push_int(&mut line, s.pid);
    line.push('/');
    push_int(&mut line, s.tid);
    line.push_str("] ");
    match &s.name {
        Some(n) => line.push_str(n),
        None => {
            line.push_str("syscall_");
            push_int(&mut line, s.nr);
        }
    }
    line.push('(');
    // The path as the guest named it when the plugin could read it, else
    // as the host saw it (the host calls below show theirs).
    let path = s.guest_path.as_deref().or(s.path.as_deref());
    push_args(&mut line, s.name.as_deref(), &s.args, path);
    line.push_str(") = ");
    push_ret(&mut line, s.ret, s.errno.as_deref());
    line.push_str("  <");
    line.push_str(&s.verdict);
    line.push('>');
    if s.verdict == "mismatch" {
        let why = shmem_proto::Arch::from_name(&s.arch)
            .and_then(|a| crate::verdict::mismatch(a, s.name.as_deref(), s.ret, &s.host));
        if let Some(why) = why {
            let _ = write!(line, " ({why})");
        }
    }
    if let Some(pc) = s.pc {
        line.push_str(" @");
        push_hex(&mut line, pc);
        if let Some(sym) = &s.pc_sym {
            line.push_str(" <");
            line.push_str(sym);
            line.push('>');
        }
    }
    // A native call is its own host call: nothing to show twice.
    let host: &[HostCall] = if s.verdict == crate::diff::NATIVE_VERDICT {
        &[]
    } else {
        &s.host
    };
    for h in host {
        let herr = h
            .ret
            .filter(|r| (-4095..0).contains(r))
            .and_then(|r| tables::host_errno_name(-r));
        line.push_str("\n      host: ");
        line.push_str(&h.name);
        line.push('(');
        push_args(&mut line, Some(&h.name), &h.args, h.path.as_deref());
        line.push_str(") = ");
        push_ret(&mut line, h.ret, herr);
    }
    line
}

/// An alert as text: one line that stands out among the calls.
pub fn alert_text(a: &AlertEvent) -> String {
    use std::fmt::Write as _;
    let mut l = format!("guestview: ALERT {} ", a.action.to_uppercase());
    match &a.rule {
        Some(r) => {
            let _ = write!(l, "rule \"{r}\"");
        }
        None => l.push_str("(policy default)"),
    }
    let _ = write!(l, " [{}] [{}/{}]", a.layer, a.pid, a.tid);
    if let Some(s) = &a.syscall {
        let _ = write!(l, " {s}");
    }
    if let Some(d) = &a.detail {
        let _ = write!(l, " {d:?}");
    }
    if let Some(seq) = a.seq {
        let _ = write!(l, " (seq {seq})");
    }
    if !a.message.is_empty() {
        let _ = write!(l, ": {}", a.message);
    }
    l
}

/// The verdict a guest call gets once the policy has acted on it:
/// `killed` when a kill rule was enforced on it, `denied` when a deny was
/// (the guest saw the refusal), otherwise the verdict judged from the host
/// calls (`passthrough`, `translated` …).
pub fn policy_verdict(base: &'static str, action: &str, enforced: bool) -> &'static str {
    match (action, enforced) {
        ("kill", true) => "killed",
        ("deny", true) => "denied",
        _ => base,
    }
}

/// Any event as text; `None` for events text output leaves out.
pub fn event_text(ev: &TraceEvent, show_internal: bool) -> Option<String> {
    Some(match ev {
        TraceEvent::Syscall(s) => syscall_text(s),
        TraceEvent::Run(r) => format!(
            "guestview: {} program {} under {}",
            r.arch,
            r.argv.join(" "),
            r.qemu
        ),
        TraceEvent::Process(p) => match p.event.as_str() {
            "fork" => format!("[{}] process forked from {}", p.pid, p.ppid.unwrap_or(0)),
            "exec" => match &p.program {
                Some(prog) => format!("[{}] process exec {prog} (under QEMU)", p.pid),
                None => format!(
                    "[{}] process exec {}",
                    p.pid,
                    p.filename.as_deref().unwrap_or("?")
                ),
            },
            _ => match (p.status, p.signal) {
                (Some(st), _) => format!("[{}] process exited with status {st}", p.pid),
                (_, Some(sig)) => format!("[{}] process killed by signal {sig}", p.pid),
                _ => format!("[{}] process exited", p.pid),
            },
        },
        TraceEvent::Thread(t) => {
            format!("[{}/{}] thread {} (vcpu {})", t.pid, t.tid, t.event, t.vcpu)
        }
        TraceEvent::Internal(i) if show_internal => {
            let names: Vec<_> = i.host.iter().map(|h| h.name.as_ref()).collect();
            format!(
                "[{}/{}] internal ({}): {} host call(s): {}",
                i.pid,
                i.tid,
                i.origin,
                i.host.len(),
                names.join(" ")
            )
        }
        TraceEvent::Internal(_) => return None,
        TraceEvent::Fault(f) => fault_text(f),
        TraceEvent::Plugin(p) => plugin_text(p),
        TraceEvent::Lost(l) => {
            let total = l.host_dropped
                + l.guest_dropped
                + l.guest_no_ring
                + l.guest_corrupt
                + l.host_malformed;
            if total == 0 {
                "guestview: lost 0 events".into()
            } else {
                format!(
                    "guestview: LOST EVENTS: host dropped {}, guest dropped {}, threads without ring {}, corrupt guest records {}, malformed host records {}",
                    l.host_dropped, l.guest_dropped, l.guest_no_ring, l.guest_corrupt, l.host_malformed
                )
            }
        }
        TraceEvent::Alert(a) => alert_text(a),
        TraceEvent::Summary(s) => {
            let waits = s.ring_waits + s.host_ring_waits;
            format!(
                "guestview: {} guest syscalls, {} host syscalls ({} attributed, {} internal), exit status {}, {:.3} s{}",
                s.syscalls,
                s.host_syscalls,
                s.host_attributed,
                s.host_internal,
                s.exit_code.map_or("?".into(), |c| c.to_string()),
                s.wall_ns as f64 / 1e9,
                if waits == 0 {
                    String::new()
                } else {
                    format!(
                        " (the guest waited {waits} times for guestview to read: {} guest ring, {} host ring)",
                        s.ring_waits, s.host_ring_waits
                    )
                }
            )
        }
    })
}

impl Output {
    /// Write to `out` in `format`.
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Output {
        Output {
            out,
            format,
            show_internal: false,
            kill: None,
            line: Vec::with_capacity(1024),
        }
    }

    /// Write one event.
    pub fn write(&mut self, ev: &TraceEvent) -> io::Result<()> {
        if let TraceEvent::Alert(a) = ev {
            if a.action == "kill" && a.layer != "join" && self.kill.is_none() {
                self.kill = Some((**a).clone());
            }
        }
        match self.format {
            Format::Jsonl => {
                if let TraceEvent::Syscall(sc) = ev {
                    // Nearly every line: written directly.
                    self.line.clear();
                    line::syscall(&mut self.line, sc);
                    self.line.push(b'\n');
                    return self.out.write_all(&self.line);
                }
                let mut v = event_json(ev);
                if let (TraceEvent::Summary(_), Value::Object(m)) = (ev, &mut v) {
                    m.insert(
                        "policy_kill".into(),
                        self.kill.as_ref().map_or(
                            Value::Null,
                            |k| json!({"rule": k.rule, "layer": k.layer, "seq": k.seq}),
                        ),
                    );
                }
                serde_json::to_writer(&mut self.out, &v)?;
                self.out.write_all(b"\n")
            }
            Format::Text => match event_text(ev, self.show_internal) {
                Some(s) => match (ev, &self.kill) {
                    (TraceEvent::Summary(_), Some(k)) => {
                        writeln!(self.out, "{s}\nguestview: {}", killed_note(k))
                    }
                    _ => {
                        self.out.write_all(s.as_bytes())?;
                        self.out.write_all(b"\n")
                    }
                },
                None => Ok(()),
            },
        }
    }

    /// Flush.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyscallEvent {
        SyscallEvent {
            seq: 17,
            pid: 4242,
            tid: 4242,
            arch: "mips".into(),
            pc: Some(0x7f6a1c30),
            nr: 4005,
            name: Some("open".into()),
            args: [0x4a10a0, 0, 0, 0, 0, 0, 0, 0],
            path: Some("/etc/passwd".into()),
            ret: Some(3),
            host: vec![HostCall {
                nr: 257,
                name: "openat".into(),
                args: [0xffffff9c, 0x4a20a0, 0, 0, 0, 0],
                ret: Some(3),
                path: Some("/etc/passwd".into()),
                ..Default::default()
            }],
            verdict: "translated".into(),
            policy_action: "allow".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_direct_syscall_json_is_byte_for_byte_the_built_one() {
        let mut events = vec![sample(), SyscallEvent::default()];
        let mut odd = sample();
        odd.pc = None;
        odd.pc_sym = Some("write+0x38".into());
        odd.errno = Some("ENOENT".into());
        odd.ret = None;
        odd.path = Some("a \"quoted\"\n\\path\u{7f}\u{1}é".into());
        odd.guest_path = Some("/tmp/x".into());
        odd.policy_rule = Some("no-shadow".into());
        odd.name = None;
        odd.args = [0, 1, 0xf, 0x10, u64::MAX, 0xdead_beef, 7, 8];
        odd.host.push(HostCall {
            ret: None,
            path: None,
            t_enter_ns: 1,
            t_exit_ns: u64::MAX,
            ..Default::default()
        });
        events.push(odd);
        // Every hex width, and strings serde_json escapes (or not: DEL,
        // non-ASCII) in every string field.
        for (i, v) in [0u64, 1, 0xf, 0x10, 0xff, 0x100, 1 << 60, 1 << 63, u64::MAX]
            .into_iter()
            .enumerate()
        {
            let mut e = sample();
            e.args = [v; 8];
            e.pc = Some(v);
            e.nr = -(i as i64);
            e.ret = Some(i64::MIN + i as i64);
            e.t_exit_ns = u64::MAX - i as u64;
            let odd = [
                "\"",
                "\\",
                "\t",
                "\u{0}",
                "\u{1f}",
                "\u{7f}",
                "é€😀",
                "a\u{8}b",
                "x",
            ][i];
            e.arch = odd.into();
            e.errno = Some(odd.into());
            e.guest_path = Some(odd.into());
            e.name = Some(format!("n{odd}").into());
            e.pc_sym = Some(odd.into());
            e.policy_action = odd.into();
            e.policy_rule = Some(odd.into());
            e.verdict = odd.into();
            e.host[0].name = odd.into();
            e.host[0].path = Some(odd.into());
            e.host[0].args = [v; 6];
            e.host[0].nr = i64::MAX - i as i64;
            e.host[0].tid = u32::MAX;
            e.host.push(HostCall::default());
            events.push(e);
        }
        for s in &events {
            let built = serde_json::to_string(&syscall_json(s)).unwrap();
            let mut direct = Vec::new();
            line::syscall(&mut direct, s);
            assert_eq!(String::from_utf8(direct).unwrap(), built);
        }
    }

    #[test]
    fn jsonl_has_the_contract_fields() {
        let v = syscall_json(&sample());
        for k in [
            "type",
            "seq",
            "pid",
            "tid",
            "vcpu",
            "arch",
            "pc",
            "nr",
            "name",
            "args",
            "path",
            "guest_path",
            "ret",
            "errno",
            "t_enter_ns",
            "t_exit_ns",
            "host",
            "verdict",
            "policy",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["pc"], "0x7f6a1c30");
        assert_eq!(v["args"][0], "0x4a10a0");
        assert_eq!(v["host"][0]["name"], "openat");
        assert_eq!(v["policy"]["action"], "allow");
        assert!(v["errno"].is_null());
    }

    #[test]
    fn text_shows_path_verdict_and_host_calls() {
        let t = syscall_text(&sample());
        assert!(t.starts_with("[4242/4242] open(\"/etc/passwd\""), "{t}");
        assert!(t.contains("= 3  <translated> @0x7f6a1c30"), "{t}");
        assert!(
            t.contains("host: openat(0xffffff9c, \"/etc/passwd\""),
            "{t}"
        );
    }

    fn kill_alert() -> AlertEvent {
        AlertEvent {
            rule: Some("no-shell".into()),
            action: "kill".into(),
            layer: "seccomp".into(),
            seq: Some(42),
            pid: 7,
            tid: 8,
            syscall: Some("execve".into()),
            detail: Some("/bin/sh".into()),
            path: Some("/bin/sh".into()),
            message: String::new(),
            t_ns: 5,
        }
    }

    #[test]
    fn alerts_have_the_contract_fields_and_stand_out_in_text() {
        let v = event_json(&TraceEvent::Alert(Box::new(kill_alert())));
        for k in [
            "type", "rule", "action", "layer", "seq", "pid", "tid", "syscall", "detail", "t_ns",
        ] {
            assert!(v.get(k).is_some(), "missing {k}: {v}");
        }
        assert_eq!(v["type"], "alert");
        assert_eq!(v["seq"], 42);
        let t = alert_text(&kill_alert());
        assert_eq!(
            t,
            "guestview: ALERT KILL rule \"no-shell\" [seccomp] [7/8] execve \"/bin/sh\" (seq 42)"
        );
        let mut d = kill_alert();
        d.rule = None;
        d.seq = None;
        d.detail = None;
        d.action = "deny".into();
        assert_eq!(
            alert_text(&d),
            "guestview: ALERT DENY (policy default) [seccomp] [7/8] execve"
        );
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_killed_run_says_so_in_its_summary() {
        for (format, want) in [
            (Format::Text, "KILLED by guestview's policy: rule \"no-shell\" (seccomp layer) at guest call seq 42"),
            (Format::Jsonl, "\"policy_kill\":{\"layer\":\"seccomp\",\"rule\":\"no-shell\",\"seq\":42}"),
        ] {
            let buf = Buf::default();
            let mut o = Output::new(Box::new(buf.clone()), format);
            o.write(&TraceEvent::Alert(Box::new(kill_alert()))).unwrap();
            o.write(&TraceEvent::Summary(Default::default())).unwrap();
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert!(text.contains(want), "{text}");
        }
        // No kill: the JSON summary says null, the text adds nothing.
        let buf = Buf::default();
        let mut o = Output::new(Box::new(buf.clone()), Format::Jsonl);
        o.write(&TraceEvent::Summary(Default::default())).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("\"policy_kill\":null"), "{text}");
    }

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        let mut values = vec![0u64, 1, 9, 10, 0xf, 0x10, 0xffff, 0x1_0000, u64::MAX];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((0..64).map(|b| (1u64 << b) - 1));
        for v in values {
            let mut s = String::new();
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v:#x}"));
            let r = v as i64;
            let mut s = String::new();
            push_ret(&mut s, Some(r), None);
            let want = if r > 0xffff {
                format!("{:#x}", r as u64)
            } else {
                format!("{r}")
            };
            assert_eq!(s, want);
            let mut s = String::new();
            push_ret(&mut s, Some(r), Some("ENOENT"));
            assert_eq!(s, format!("{r} ENOENT"));
        }
        let mut s = String::new();
        push_ret(&mut s, None, Some("ENOENT"));
        assert_eq!(s, "?");
    }

    #[test]
    fn policy_verdicts() {
        assert_eq!(policy_verdict("passthrough", "kill", true), "killed");
        assert_eq!(policy_verdict("emulated", "deny", true), "denied");
        assert_eq!(policy_verdict("translated", "deny", false), "translated");
        assert_eq!(policy_verdict("translated", "alert", true), "translated");
    }

    #[test]
    fn every_event_type_has_a_type_field() {
        let evs = [
            TraceEvent::Lost(Default::default()),
            TraceEvent::Summary(Default::default()),
            TraceEvent::Process(Default::default()),
            TraceEvent::Thread(Default::default()),
            TraceEvent::Run(Default::default()),
            TraceEvent::Fault(Default::default()),
            TraceEvent::Plugin(Default::default()),
            TraceEvent::Alert(Default::default()),
        ];
        for (ev, ty) in evs.iter().zip([
            "lost", "summary", "process", "thread", "run", "fault", "plugin", "alert",
        ]) {
            assert_eq!(event_json(ev)["type"], ty);
        }
    }
}
