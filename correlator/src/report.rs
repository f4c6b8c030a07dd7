//! `guestview report TRACE`: counts per syscall and verdict, the guest→host
//! translation table, QEMU's internal host syscalls, lost counts.

use crate::tables;
use serde::Serialize;
use shmem_proto::trace::{
    AlertEvent, FaultEvent, LostEvent, PluginEvent, RunInfo, SummaryEvent, TraceError, TraceEvent,
    TraceReader,
};
use shmem_proto::Arch;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Aggregates of one trace.
#[derive(Default, Debug, Serialize)]
pub struct Report {
    /// What ran.
    pub run: Option<RunInfo>,
    /// Guest calls.
    pub syscalls: u64,
    /// Per guest syscall name: count, errors, per-verdict counts.
    pub per_syscall: BTreeMap<String, SyscallStats>,
    /// Per verdict.
    pub per_verdict: BTreeMap<String, u64>,
    /// Guest name → host call sequence (joined by `+`) → count.
    pub translations: BTreeMap<String, BTreeMap<String, u64>>,
    /// Internal host calls by origin, then name.
    pub internal: BTreeMap<String, BTreeMap<String, u64>>,
    /// Calls judged `mismatch`, with why (the first [`MISMATCHES_KEPT`]).
    pub mismatches: Vec<MismatchEntry>,
    /// Processes seen (fork/exec/exit events).
    pub processes: BTreeMap<String, u64>,
    /// Guest exceptions (the first [`MISMATCHES_KEPT`]).
    pub faults: Vec<FaultEvent>,
    /// Guest exceptions in all.
    pub fault_count: u64,
    /// What the first QEMU process offered the plugin.
    pub qemu_plugin: Option<PluginEvent>,
    /// Alerts (execs refused or stopped), the first [`MISMATCHES_KEPT`].
    pub alerts: Vec<AlertEvent>,
    /// Loss counters.
    pub lost: Option<LostEvent>,
    /// Alerts: `"<action> <rule>"` → count.
    pub alert_counts: BTreeMap<String, u64>,
    /// End of run.
    pub summary: Option<SummaryEvent>,
    /// Frames read.
    pub frames: u64,
    /// Why reading stopped early, if it did.
    pub incomplete: Option<String>,
    /// Reused for building translation keys.
    #[serde(skip)]
    scratch: String,
}

/// Mismatches listed one by one in a report; more are counted only.
pub const MISMATCHES_KEPT: usize = 200;

/// One `mismatch` call, as a QEMU bug report would start.
#[derive(Debug, Serialize)]
pub struct MismatchEntry {
    /// Its `seq`.
    pub seq: u64,
    /// Host thread.
    pub tid: u32,
    /// Guest syscall name.
    pub name: String,
    /// Guest PC of the syscall instruction.
    pub pc: Option<u64>,
    /// What differs (`guest EACCES, host openat ENOENT`).
    pub why: String,
}

/// Per-syscall counts.
#[derive(Default, Debug, Serialize)]
pub struct SyscallStats {
    /// Calls.
    pub count: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Verdict → count.
    pub verdicts: BTreeMap<String, u64>,
}

impl Report {
    fn add(&mut self, ev: TraceEvent) {
        /// The value at `k`, created with a key of its own only when new.
        fn entry<'m, V: Default>(m: &'m mut BTreeMap<String, V>, k: &str) -> &'m mut V {
            if !m.contains_key(k) {
                m.insert(k.to_owned(), V::default());
            }
            m.get_mut(k).expect("just inserted")
        }
        match ev {
            TraceEvent::Run(r) => self.run = Some(*r),
            TraceEvent::Syscall(s) => {
                self.syscalls += 1;
                let fallback;
                let name: &str = match &s.name {
                    Some(n) => n,
                    None => {
                        fallback = Arch::from_name(&s.arch)
                            .and_then(|a| tables::guest_syscall_name(a, s.nr))
                            .map_or_else(|| Cow::Owned(format!("syscall_{}", s.nr)), Cow::Borrowed);
                        &fallback
                    }
                };
                if s.verdict == "mismatch" && self.mismatches.len() < MISMATCHES_KEPT {
                    let why = Arch::from_name(&s.arch)
                        .and_then(|a| crate::verdict::mismatch(a, Some(name), s.ret, &s.host))
                        .unwrap_or_else(|| "(no longer judged a mismatch)".into());
                    self.mismatches.push(MismatchEntry {
                        seq: s.seq,
                        tid: s.tid,
                        name: name.to_owned(),
                        pc: s.pc,
                        why,
                    });
                }
                // Millions of calls, a few dozen keys: look up by reference
                // and allocate a key only the first time it is seen.
                let st = entry(&mut self.per_syscall, name);
                st.count += 1;
                if s.errno.is_some() || s.ret.is_some_and(|r| (-4095..0).contains(&r)) {
                    st.errors += 1;
                }
                *entry(&mut st.verdicts, &s.verdict) += 1;
                *entry(&mut self.per_verdict, &s.verdict) += 1;
                let key = &mut self.scratch;
                key.clear();
                if s.host.is_empty() {
                    key.push_str("(none)");
                } else {
                    let mut last: Option<&str> = None;
                    for h in &s.host {
                        if last != Some(&h.name) {
                            if last.is_some() {
                                key.push('+');
                            }
                            key.push_str(&h.name);
                            last = Some(&h.name);
                        }
                    }
                }
                *entry(entry(&mut self.translations, name), key) += 1;
            }
            TraceEvent::Internal(i) => {
                let m = self.internal.entry(i.origin).or_default();
                for h in i.host {
                    *m.entry(h.name.into_owned()).or_default() += 1;
                }
            }
            TraceEvent::Process(p) => *self.processes.entry(p.event).or_default() += 1,
            TraceEvent::Thread(_) => {}
            TraceEvent::Fault(f) => {
                self.fault_count += 1;
                if self.faults.len() < MISMATCHES_KEPT {
                    self.faults.push(*f);
                }
            }
            TraceEvent::Plugin(p) => {
                self.qemu_plugin.get_or_insert(p);
            }
            TraceEvent::Alert(a) => {
                *self
                    .alert_counts
                    .entry(format!(
                        "{} {}",
                        a.action,
                        a.rule.as_deref().unwrap_or("(default)")
                    ))
                    .or_default() += 1;
                if self.alerts.len() < MISMATCHES_KEPT {
                    self.alerts.push(*a);
                }
            }
            TraceEvent::Lost(l) => self.lost = Some(l),
            TraceEvent::Summary(s) => self.summary = Some(*s),
        }
    }

    /// Read a whole trace. A damaged trace gives the report of what could be
    /// read plus the error.
    pub fn from_trace(path: &Path) -> (Report, Option<TraceError>) {
        let mut rep = Report::default();
        let mut r = match TraceReader::open(path) {
            Ok(r) => r,
            Err(e) => return (rep, Some(e)),
        };
        loop {
            match r.next_frame() {
                Ok(Some(evs)) => evs.into_iter().for_each(|e| rep.add(e)),
                Ok(None) => break,
                Err(e) => {
                    rep.frames = r.frames();
                    rep.incomplete = Some(e.to_string());
                    return (rep, Some(e));
                }
            }
        }
        rep.frames = r.frames();
        (rep, None)
    }

    /// Human-readable report.
    pub fn write_text(&self, w: &mut dyn Write) -> std::io::Result<()> {
        if let Some(r) = &self.run {
            writeln!(
                w,
                "guestview report: {} {} ({} trace)",
                r.arch,
                r.argv.join(" "),
                r.source
            )?;
            if !r.qemu.is_empty() {
                writeln!(w, "qemu: {}", r.qemu)?;
            }
        }
        writeln!(w, "\n{} guest syscalls", self.syscalls)?;
        writeln!(w, "\nper verdict:")?;
        for (v, n) in &self.per_verdict {
            writeln!(w, "  {v:<12} {n:>10}")?;
        }
        writeln!(w, "\nper syscall:            calls     errors  verdicts")?;
        let mut rows: Vec<_> = self.per_syscall.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for (name, st) in rows {
            let v: Vec<String> = st
                .verdicts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                w,
                "  {name:<18} {:>10} {:>10}  {}",
                st.count,
                st.errors,
                v.join(", ")
            )?;
        }
        writeln!(w, "\nguest -> host translation:")?;
        for (name, m) in &self.translations {
            for (seq, n) in m {
                writeln!(w, "  {name:<18} -> {seq} ({n})")?;
            }
        }
        for (origin, m) in &self.internal {
            let total: u64 = m.values().sum();
            writeln!(w, "\ninternal host syscalls ({origin}): {total}")?;
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (name, n) in rows {
                writeln!(w, "  {name:<18} {n:>10}")?;
            }
        }
        if let Some(n) = self.per_verdict.get("mismatch") {
            writeln!(
                w,
                "\nmismatches (the guest did not get what the host returned): {n}"
            )?;
            for m in &self.mismatches {
                let pc = m.pc.map(|p| format!(" @{p:#x}")).unwrap_or_default();
                writeln!(w, "  #{:<8} [{}] {}{pc}: {}", m.seq, m.tid, m.name, m.why)?;
            }
            if *n > self.mismatches.len() as u64 {
                writeln!(w, "  ... {} more", *n - self.mismatches.len() as u64)?;
            }
        }
        if !self.processes.is_empty() {
            let p: Vec<String> = self
                .processes
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(w, "\nprocess events: {}", p.join(", "))?;
        }
        if self.fault_count > 0 {
            writeln!(w, "\nguest faults: {}", self.fault_count)?;
            for f in &self.faults {
                writeln!(w, "  {}", crate::output::fault_text(f))?;
            }
            if self.fault_count > self.faults.len() as u64 {
                writeln!(
                    w,
                    "  ... {} more",
                    self.fault_count - self.faults.len() as u64
                )?;
            }
        }
        if let Some(p) = &self.qemu_plugin {
            writeln!(w, "\n{}", crate::output::plugin_text(p))?;
        }
        if !self.alerts.is_empty() {
            writeln!(w, "\nalerts: {}", self.alerts.len())?;
            for a in &self.alerts {
                writeln!(
                    w,
                    "  [{}/{}] {} ({}, {}): {}",
                    a.pid,
                    a.tid,
                    a.rule.as_deref().unwrap_or("(default)"),
                    a.action,
                    a.layer,
                    a.message
                )?;
            }
            let a: Vec<String> = self
                .alert_counts
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            writeln!(w, "ALERTS: {}", a.join(", "))?;
        }
        match &self.lost {
            Some(l) => writeln!(
                w,
                "\nlost: host dropped {}, guest dropped {}, threads without ring {}, corrupt guest records {}, malformed host records {}",
                l.host_dropped, l.guest_dropped, l.guest_no_ring, l.guest_corrupt, l.host_malformed
            )?,
            None => writeln!(w, "\nlost: no loss record (guest-only trace, or the run did not finish)")?,
        }
        if let Some(s) = &self.summary {
            writeln!(
                w,
                "summary: {} host syscalls ({} attributed to guest calls, {} internal), exit status {}, {:.3} s",
                s.host_syscalls,
                s.host_attributed,
                s.host_internal,
                s.exit_code.map_or("?".into(), |c| c.to_string()),
                s.wall_ns as f64 / 1e9
            )?;
        }
        Ok(())
    }

    /// The report as one self-contained HTML page (no scripts, no external
    /// resources). Every string from the trace is escaped: paths, names and
    /// arguments come from the guest.
    pub fn write_html(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let title = match &self.run {
            Some(r) => format!("guestview report: {} {}", r.arch, r.argv.join(" ")),
            None => "guestview report".to_owned(),
        };
        writeln!(
            w,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>",
            esc(&title)
        )?;
        writeln!(
            w,
            "<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}td.n{{text-align:right}}\
             .mismatch,.unsupported{{background:#fdd}}.emulated{{background:#eef}}code{{font-size:90%}}</style></head><body>"
        )?;
        writeln!(w, "<h1>{}</h1>", esc(&title))?;
        if let Some(r) = &self.run {
            writeln!(
                w,
                "<p>QEMU: {} &middot; source: {} &middot; guestview {}</p>",
                esc(&r.qemu),
                esc(&r.source),
                esc(&r.guestview)
            )?;
        }
        writeln!(
            w,
            "<h2>{} guest syscalls</h2><table><tr><th>verdict</th><th>calls</th></tr>",
            self.syscalls
        )?;
        for (v, n) in &self.per_verdict {
            writeln!(
                w,
                "<tr class=\"{0}\"><td>{0}</td><td class=n>{n}</td></tr>",
                esc(v)
            )?;
        }
        writeln!(w, "</table>")?;
        if let Some(n) = self.per_verdict.get("mismatch") {
            writeln!(
                w,
                "<h2>Mismatches ({n})</h2><table><tr><th>seq</th><th>thread</th><th>syscall</th><th>guest PC</th><th>what differs</th></tr>"
            )?;
            for m in &self.mismatches {
                writeln!(
                    w,
                    "<tr class=mismatch><td class=n>{}</td><td class=n>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    m.seq,
                    m.tid,
                    esc(&m.name),
                    m.pc.map(|p| format!("{p:#x}")).unwrap_or_default(),
                    esc(&m.why)
                )?;
            }
            writeln!(w, "</table>")?;
        }
        if !self.alerts.is_empty() {
            writeln!(
                w,
                "<h2>Alerts ({})</h2><table><tr><th>process</th><th>thread</th><th>rule</th><th>action</th><th>what</th></tr>",
                self.alerts.len()
            )?;
            for a in &self.alerts {
                writeln!(
                    w,
                    "<tr class=mismatch><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    a.pid,
                    a.tid,
                    esc(a.rule.as_deref().unwrap_or("(default)")),
                    esc(&a.action),
                    esc(&a.message)
                )?;
            }
            writeln!(w, "</table>")?;
        }
        writeln!(
            w,
            "<h2>Per syscall</h2><table><tr><th>syscall</th><th>calls</th><th>errors</th><th>verdicts</th><th>host calls (count)</th></tr>"
        )?;
        let mut rows: Vec<_> = self.per_syscall.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for (name, st) in rows {
            let v: Vec<String> = st
                .verdicts
                .iter()
                .map(|(k, n)| format!("{} {n}", esc(k)))
                .collect();
            let t: Vec<String> = self
                .translations
                .get(name.as_str())
                .into_iter()
                .flatten()
                .map(|(seq, n)| format!("<code>{}</code> ({n})", esc(seq)))
                .collect();
            let class = st.verdicts.keys().next_back().map_or("", |k| k.as_str());
            writeln!(
                w,
                "<tr class=\"{}\"><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                esc(class),
                esc(name),
                st.count,
                st.errors,
                v.join(", "),
                t.join("<br>")
            )?;
        }
        writeln!(w, "</table>")?;
        for (origin, m) in &self.internal {
            let total: u64 = m.values().sum();
            writeln!(
                w,
                "<h2>Internal host syscalls ({}): {total}</h2><table><tr><th>host syscall</th><th>calls</th></tr>",
                esc(origin)
            )?;
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (name, n) in rows {
                writeln!(w, "<tr><td>{}</td><td class=n>{n}</td></tr>", esc(name))?;
            }
            writeln!(w, "</table>")?;
        }
        if self.fault_count > 0 {
            writeln!(w, "<h2>Guest faults: {}</h2><ul>", self.fault_count)?;
            for f in &self.faults {
                writeln!(
                    w,
                    "<li><code>{}</code></li>",
                    esc(&crate::output::fault_text(f))
                )?;
            }
            writeln!(w, "</ul>")?;
        }
        match &self.lost {
            Some(l) => writeln!(
                w,
                "<p>Lost: host dropped {}, guest dropped {}, threads without ring {}, corrupt guest records {}, malformed host records {}</p>",
                l.host_dropped, l.guest_dropped, l.guest_no_ring, l.guest_corrupt, l.host_malformed
            )?,
            None => writeln!(w, "<p>Lost: no loss record (guest-only trace, or the run did not finish)</p>")?,
        }
        if let Some(e) = &self.incomplete {
            writeln!(w, "<p><strong>Incomplete trace:</strong> {}</p>", esc(e))?;
        }
        writeln!(w, "</body></html>")
    }

    /// The report as one JSON object.
    pub fn write_json(&self, w: &mut dyn Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *w, self)?;
        writeln!(w)
    }
}

/// Text for HTML (element content and quoted attributes).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmem_proto::trace::{HostCall, SyscallEvent, TraceWriter};

    #[test]
    fn mismatches_are_listed_with_why() {
        let path = std::env::temp_dir().join(format!("gv-report-{}.gvtrace", std::process::id()));
        let mut w = TraceWriter::create(&path).unwrap();
        let call = |seq, ret, host_ret, verdict: &'static str| {
            TraceEvent::Syscall(Box::new(SyscallEvent {
                seq,
                tid: 7,
                arch: "mips".into(),
                pc: Some(0x400120),
                nr: 4005,
                name: Some("open".into()),
                ret: Some(ret),
                host: vec![HostCall {
                    nr: 257,
                    name: "openat".into(),
                    ret: Some(host_ret),
                    ..Default::default()
                }],
                verdict: verdict.into(),
                ..Default::default()
            }))
        };
        w.push(&call(1, 3, 3, "passthrough")).unwrap();
        w.push(&call(2, -13, -2, "mismatch")).unwrap();
        w.flush().unwrap();
        let (rep, err) = Report::from_trace(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(err.is_none());
        assert_eq!(rep.mismatches.len(), 1);
        let mut text = Vec::new();
        rep.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("mismatches (the guest did not get what the host returned): 1"),
            "{text}"
        );
        assert!(
            text.contains("#2        [7] open @0x400120: guest EACCES, host openat ENOENT"),
            "{text}"
        );
        let mut html = Vec::new();
        rep.write_html(&mut html).unwrap();
        let html = String::from_utf8(html).unwrap();
        assert!(html.contains("<h2>Mismatches (1)</h2>"), "{html}");
        assert!(html.contains("guest EACCES, host openat ENOENT"), "{html}");
        assert!(html.ends_with("</body></html>\n"));
    }

    #[test]
    fn html_escapes_what_the_guest_controls() {
        let mut rep = Report::default();
        rep.add(TraceEvent::Syscall(Box::new(SyscallEvent {
            arch: "mips".into(),
            name: Some("<script>alert(1)</script>".into()),
            verdict: "emulated\"><img src=x>".into(),
            ..Default::default()
        })));
        let mut html = Vec::new();
        rep.write_html(&mut html).unwrap();
        let html = String::from_utf8(html).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
