//! Enforcement decided in the kernel, with real processes: kill rules on
//! host syscall numbers, the fork rate and the connect rate. Needs root;
//! fails (never skips) without it.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guestview_bpf::{EnforceReason, HostEvent, HostTracer, TracerOptions};

const NR_UNAME: u32 = 63;
const NR_CONNECT: i64 = 42;

fn tracer() -> HostTracer {
    HostTracer::new(&TracerOptions::default())
        .unwrap_or_else(|e| panic!("these tests need root and eBPF: {e}"))
}

/// Start `argv` held on stdin, trace it, release it.
fn start_traced(tracer: &HostTracer, argv: &[&str]) -> Child {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    tracer.trace_pid(child.id()).expect("trace_pid");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release");
    child
}

/// Events until the traced root process exits (20 s at most).
fn events_until_exit(tracer: &mut HostTracer, pid: u32) -> Vec<HostEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut evs = Vec::new();
    let mut done = false;
    while !done {
        assert!(Instant::now() < deadline, "timed out: {evs:?}");
        tracer
            .poll(Duration::from_millis(5), &mut |ev| {
                done |= matches!(ev, HostEvent::Exit { tgid, group_dead: true, .. } if tgid == pid);
                evs.push(ev);
            })
            .expect("poll");
    }
    tracer.drain(&mut |ev| evs.push(ev)).expect("drain");
    evs
}

fn enforce_events(evs: &[HostEvent]) -> Vec<(EnforceReason, i64, u32, u32, bool)> {
    evs.iter()
        .filter_map(|e| match *e {
            HostEvent::Enforce {
                reason,
                nr,
                count,
                limit,
                killed,
                ..
            } => Some((reason, nr, count, limit, killed)),
            _ => None,
        })
        .collect()
}

#[test]
fn root_a_kill_rule_kills_the_caller_in_the_kernel() {
    let mut t = tracer();
    t.enforce(&[NR_UNAME], 0, 0).unwrap();
    let mut c = start_traced(&t, &["/bin/sh", "-c", "read l; exec /bin/uname -a"]);
    let pid = c.id();
    let evs = events_until_exit(&mut t, pid);
    let st = c.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(out, "", "uname printed before it was killed");
    let enf = enforce_events(&evs);
    assert_eq!(
        enf,
        [(EnforceReason::KillRule, i64::from(NR_UNAME), 1, 0, true)]
    );
    assert_eq!(t.enforce_stats().kills, 1);
    // Out of range numbers are refused.
    assert!(t.enforce(&[512], 0, 0).is_err());
}

#[test]
fn root_untraced_processes_are_never_killed() {
    let t = tracer();
    t.enforce(&[NR_UNAME], 0, 0).unwrap();
    let st = Command::new("/bin/uname")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(t.enforce_stats().kills, 0);
}

#[test]
fn root_fork_rate_kills_new_processes_beyond_the_limit() {
    let mut t = tracer();
    t.enforce(&[], 3, 0).unwrap();
    // Ten children in a fast loop: at most 3 per one-second window live.
    let script =
        "read l; n=0; for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true || n=$((n+1)); done; echo $n";
    let mut c = start_traced(&t, &["/bin/sh", "-c", script]);
    let pid = c.id();
    let evs = events_until_exit(&mut t, pid);
    let st = c.wait().unwrap();
    assert!(st.success(), "the parent itself lives: {st:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut out).unwrap();
    let failed: u32 = out.trim().parse().unwrap();
    let killed = evs
        .iter()
        .filter(|e| matches!(e, HostEvent::Exit { tgid, exit_code: 9, group_dead: true, .. } if *tgid != pid))
        .count() as u32;
    assert!(killed >= 4, "{killed} children killed: {out}");
    assert_eq!(failed, killed, "the shell saw each killed child fail");
    let enf = enforce_events(&evs);
    assert!(
        !enf.is_empty() && enf.len() <= 3,
        "one alert per window: {enf:?}"
    );
    assert!(enf.iter().all(|e| e.0 == EnforceReason::ForkRate
        && e.1 == -1
        && e.2 > 3
        && e.3 == 3
        && e.4));
    let s = t.enforce_stats();
    assert_eq!(u64::from(killed), s.forks_over);
    assert_eq!(s.kills, s.forks_over);
}

fn connect_loop() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = dir.join("connect_loop");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/connect_loop.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (build-essential) is needed");
    assert!(ok.success());
    bin
}

#[test]
fn root_connect_rate_kills_the_caller_beyond_the_limit() {
    let bin = connect_loop();
    let mut t = tracer();
    t.enforce(&[], 0, 2).unwrap();
    let mut c = start_traced(&t, &[bin.to_str().unwrap(), "20", "9"]);
    let pid = c.id();
    let evs = events_until_exit(&mut t, pid);
    let st = c.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    let connects = evs
        .iter()
        .filter(|e| matches!(e, HostEvent::Syscall(s) if s.nr == NR_CONNECT))
        .count();
    assert!(
        (3..20).contains(&connects),
        "{connects} connects before the kill"
    );
    let enf = enforce_events(&evs);
    assert_eq!(enf.len(), 1, "{enf:?}");
    assert_eq!(
        (enf[0].0, enf[0].1, enf[0].3, enf[0].4),
        (EnforceReason::ConnectRate, NR_CONNECT, 2, true)
    );
}
