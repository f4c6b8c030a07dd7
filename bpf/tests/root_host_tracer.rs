//! Real eBPF tests: they load the programs into the running kernel, so they
//! need root (or CAP_BPF+CAP_PERFMON). With `CI=true` a refusal fails the
//! test; elsewhere a non-root run skips with a printed reason.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guestview_bpf::{HostEvent, HostSyscall, HostTracer, TracerOptions};

const NR_READ: i64 = 0;
const NR_OPENAT: i64 = 257;
const NR_EXIT_GROUP: i64 = 231;

/// The tracer, or `None` when the test may be skipped (not root, not CI).
fn tracer_or_skip(test: &str) -> Option<HostTracer> {
    match HostTracer::new(&TracerOptions::default()) {
        Ok(t) => Some(t),
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            let root = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .map(|l| l.split_whitespace().nth(2) == Some("0"))
                })
                .unwrap_or(false);
            if e.is_permission_denied() && !ci && !root {
                eprintln!("SKIPPED {test}: {e}");
                None
            } else {
                panic!("{test}: {e}");
            }
        }
    }
}

/// Poll until `done` says so or 20 s pass; returns everything seen.
fn collect_until(
    tracer: &mut HostTracer,
    mut done: impl FnMut(&HostEvent) -> bool,
) -> Vec<HostEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    let mut finished = false;
    while !finished {
        assert!(Instant::now() < deadline, "timed out; saw {events:#?}");
        tracer
            .poll(Duration::from_millis(5), &mut |ev| {
                finished |= done(&ev);
                events.push(ev);
            })
            .expect("poll");
    }
    // Anything still on its way from another CPU.
    tracer.drain(&mut |ev| events.push(ev)).expect("drain");
    events
}

fn syscalls(events: &[HostEvent]) -> impl Iterator<Item = &HostSyscall> {
    events.iter().filter_map(|e| match e {
        HostEvent::Syscall(s) => Some(s),
        _ => None,
    })
}

#[test]
fn root_traces_child_process() {
    let Some(mut tracer) = tracer_or_skip("root_traces_child_process") else {
        return;
    };

    // The child waits on stdin until it is traced, then forks a grandchild
    // (`true &`), runs cat on /etc/hostname, and exits with status 3.
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "read line; /bin/true & wait; /bin/cat /etc/hostname; exit 3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh");
    let pid = child.id();
    tracer.trace_pid(pid).expect("trace_pid");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release the child");
    drop(stdin);

    let events = collect_until(
        &mut tracer,
        |ev| matches!(ev, HostEvent::Exit { tgid, group_dead: true, .. } if *tgid == pid),
    );
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));

    // The traced tree, grown from fork events in ring order.
    let mut tree: HashSet<u32> = HashSet::from([pid]);
    for ev in &events {
        match ev {
            HostEvent::Fork {
                parent_tgid,
                child_tgid,
                ..
            } => {
                assert!(tree.contains(parent_tgid), "fork outside the tree: {ev:?}");
                tree.insert(*child_tgid);
            }
            HostEvent::Syscall(HostSyscall { tgid, .. })
            | HostEvent::Exec { tgid, .. }
            | HostEvent::Enforce { tgid, .. }
            | HostEvent::Exit { tgid, .. } => {
                assert!(tree.contains(tgid), "event outside the tree: {ev:?}");
            }
        }
    }
    let me = std::process::id();
    assert!(!tree.contains(&me), "the test process itself was traced");
    assert!(tree.len() >= 3, "expected sh, true and cat: {tree:?}");
    // The kernel took every process of the tree out of the traced set as it
    // exited: a pid reused later is not traced by mistake.
    for t in &tree {
        assert!(!tracer.is_traced(*t), "{t} still traced after its exit");
    }

    let open = syscalls(&events)
        .find(|s| s.nr == NR_OPENAT && s.path.as_deref() == Some("/etc/hostname"))
        .unwrap_or_else(|| panic!("no openat(/etc/hostname) in {events:#?}"));
    assert!(open.ret.is_some_and(|r| r >= 0), "openat failed: {open:?}");
    // Recorded at sys_exit alone (no program runs at sys_enter), path read
    // then. A successful exec returns in the new image: its path is the one
    // sched_process_exec saw, its arguments are gone.
    assert!(open.t_enter_ns == 0 && open.t_exit_ns > 0, "{open:?}");
    let exec = syscalls(&events)
        .find(|s| s.nr == 59 && s.path.as_deref() == Some("/bin/cat"))
        .unwrap_or_else(|| panic!("no execve(/bin/cat) in {events:#?}"));
    assert!(exec.ret == Some(0) && exec.t_exit_ns > 0, "{exec:?}");
    assert_eq!(exec.args, [0; 6], "{exec:?}");
    assert_eq!(open.tgid, open.tid);
    assert_ne!(open.tgid, pid, "cat runs in a forked child");

    assert!(
        syscalls(&events).any(|s| s.nr == NR_READ && s.tgid == open.tgid && s.ret > Some(0)),
        "no read by cat"
    );
    for file in ["/bin/true", "/bin/cat"] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, HostEvent::Exec { filename, tgid, .. }
                    if filename == file && *tgid != pid)),
            "no exec of {file} in a grandchild"
        );
    }
    assert!(
        events.iter().any(|e| matches!(e,
            HostEvent::Exit { tgid, exit_code: 0x300, group_dead: true, .. } if *tgid == pid)),
        "no exit event with status 3 for the child"
    );
    assert!(
        syscalls(&events).any(|s| s.tgid == pid && s.nr == NR_EXIT_GROUP && s.ret.is_none()),
        "exit_group should be a no-return record"
    );

    let stats = tracer.stats().expect("stats");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert!(
        stats.emitted >= events.len() as u64,
        "{stats:?} vs {}",
        events.len()
    );
}

#[test]
fn root_untraced_processes_are_invisible() {
    let Some(mut tracer) = tracer_or_skip("root_untraced_processes_are_invisible") else {
        return;
    };
    let status = Command::new("/bin/sh")
        .args(["-c", "cat /etc/hostname >/dev/null"])
        .status()
        .expect("run sh");
    assert!(status.success());
    let mut n = 0;
    tracer.drain(&mut |_| n += 1).expect("drain");
    assert_eq!(n, 0, "nothing is traced before trace_pid");
}

/// A process marked untimed gets no clock read per syscall: its records
/// carry only their ring position, which grows record by record. A child it
/// forks is untimed too (it has its parent's memory, mapping included); an
/// exec starts timing again (a new image has no mapping).
#[test]
fn root_untimed_processes_are_placed_by_ring_position() {
    let Some(mut tracer) = tracer_or_skip("root_untimed_processes_are_placed_by_ring_position")
    else {
        return;
    };
    // The shell forks a subshell that reads a file with a builtin (no
    // exec), then execs cat.
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "read line; (read x < /etc/hostname) & wait; exec /bin/cat /etc/hostname",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh");
    let pid = child.id();
    tracer.trace_pid(pid).expect("trace_pid");
    // The shell may still be on its way into /bin/sh (an exec clears the
    // mark): mark it once it sleeps in sh, waiting for its line.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains("(sh) S") {
            break;
        }
        assert!(Instant::now() < deadline, "the shell never waited: {stat}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut events = Vec::new();
    tracer.drain(&mut |ev| events.push(ev)).expect("drain");
    tracer.set_untimed(pid);
    assert!(tracer.is_untimed(pid));
    let mark = events.len();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release the child");
    drop(stdin);
    events.extend(collect_until(
        &mut tracer,
        |ev| matches!(ev, HostEvent::Exit { tgid, group_dead: true, .. } if *tgid == pid),
    ));
    assert!(child.wait().expect("wait").success());
    let mut last = None;
    let (mut untimed, mut timed_after_exec, mut sub, mut cat) = (0, 0, None, false);
    for ev in &events[mark..] {
        match ev {
            HostEvent::Fork {
                parent_tgid,
                child_tgid,
                is_thread: false,
                ..
            } if *parent_tgid == pid => sub = Some(*child_tgid),
            HostEvent::Exec { tgid, filename, .. } if *tgid == pid && filename == "/bin/cat" => {
                cat = true;
            }
            HostEvent::Syscall(s) => {
                if let Some(l) = last {
                    assert!(s.pos > l, "positions grow: {l} then {s:?}");
                }
                last = Some(s.pos);
                if s.ret.is_none() || s.nr == 59 {
                    // exit/exit_group (seen as the thread dies) and execs:
                    // rare, always timed.
                    continue;
                }
                if (s.tgid == pid && !cat) || Some(s.tgid) == sub {
                    assert_eq!(s.t_exit_ns, 0, "untimed: {s:?}");
                    untimed += 1;
                } else if s.tgid == pid {
                    assert!(s.t_exit_ns > 0, "timed again after exec: {s:?}");
                    timed_after_exec += 1;
                }
            }
            _ => {}
        }
    }
    assert!(sub.is_some() && cat, "saw the subshell and the exec of cat");
    assert!(
        untimed >= 3 && timed_after_exec >= 5,
        "{untimed} {timed_after_exec}"
    );
    assert!(!tracer.is_untimed(pid), "the set forgets an exited process");
}

/// Run `args` through a shell that `tracer` starts tracing before it execs
/// them: its pid and how it ended.
fn exec_traced(tracer: &HostTracer, args: &[&str]) -> (u32, std::process::ExitStatus) {
    // Traced before it execs: it waits on stdin.
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read line; exec \"$@\"", "guard"])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Traced only once its own exec is over (spawn returns as soon as the
    // exec has taken the new memory, a moment before the exec tracepoint):
    // it sleeps in `read` then.
    let stat = format!("/proc/{}/stat", child.id());
    while !std::fs::read_to_string(&stat)
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('S')))
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    tracer.trace_pid(child.id()).unwrap();
    writeln!(child.stdin.take().unwrap()).unwrap();
    let st = child.wait().unwrap();
    (child.id(), st)
}

/// The exec guard: an exec whose image is not the allowed file with the
/// allowed arguments is killed before its first instruction; the allowed
/// one runs.
#[test]
fn root_exec_guard_kills_what_is_not_allowed_before_it_runs() {
    use std::os::unix::fs::MetadataExt;
    let Some(mut tracer) =
        tracer_or_skip("root_exec_guard_kills_what_is_not_allowed_before_it_runs")
    else {
        return;
    };
    // Allowed: the file /bin/sh names, with exactly the arguments
    // "/bin/sh -c 'exit 7'" first.
    let m = std::fs::metadata("/bin/sh").unwrap();
    tracer
        .guard_exec(m.ino(), m.dev(), b"/bin/sh\0-c\0exit 7\0")
        .expect("set the guard");
    let run = |args: &[&str]| exec_traced(&tracer, args);
    use std::os::unix::process::ExitStatusExt;
    let (pid7, st) = run(&["/bin/sh", "-c", "exit 7"]);
    if st.code() != Some(7) {
        let mut evs = Vec::new();
        tracer.drain(&mut |e| evs.push(e)).unwrap();
        let execs: Vec<_> = evs
            .iter()
            .filter(|e| matches!(e, HostEvent::Exec { tgid, .. } if *tgid == pid7))
            .collect();
        panic!("the allowed exec was stopped: {st:?}: {execs:#?}");
    }
    // The same file with other arguments, and another file: killed.
    let (_, st) = run(&["/bin/sh", "-c", "exit 8"]);
    assert_eq!(st.signal(), Some(9), "{st:?}");
    let (pid, st) = run(&["/bin/true"]);
    assert_eq!(st.signal(), Some(9), "/bin/true ran: {st:?}");
    let events = collect_until(
        &mut tracer,
        |e| matches!(e, HostEvent::Exit { tgid, group_dead: true, .. } if *tgid == pid),
    );
    assert!(
        events.iter().any(|e| matches!(e,
            HostEvent::Exec { tgid, killed: true, filename, .. } if *tgid == pid && filename == "/bin/true")),
        "no killed exec of /bin/true: {events:#?}"
    );
    // A prefix of kilobytes (QEMU's command line with a policy's guest
    // rules): compared to its last byte, a partial last word included.
    let long = format!("exit 7 #{}", "a".repeat(1501));
    let mut prefix = b"/bin/sh\0-c\0".to_vec();
    prefix.extend_from_slice(long.as_bytes());
    prefix.push(0);
    assert_ne!(prefix.len() % 8, 0, "the last word is partial");
    tracer
        .guard_exec(m.ino(), m.dev(), &prefix)
        .expect("set a long guard");
    let run = |args: &[&str]| exec_traced(&tracer, args).1;
    assert_eq!(run(&["/bin/sh", "-c", &long]).code(), Some(7));
    let mut late = long.clone().into_bytes();
    late[1400] = b'b';
    let late = String::from_utf8(late).unwrap();
    assert_eq!(run(&["/bin/sh", "-c", &late]).signal(), Some(9));
    // The last byte differs (the partial word): killed too.
    let last = format!("{}b", &long[..long.len() - 1]);
    assert_eq!(run(&["/bin/sh", "-c", &last]).signal(), Some(9));
}

/// A process says it reads ring positions with `fcntl(-1, GV_UNTIMED_FCNTL_CMD)`
/// (the plugin does, once it has mapped the ring's producer page): the
/// programs stop timing its syscalls from that call on, in the kernel, in
/// step with the image.
#[test]
fn root_the_untimed_fcntl_ends_timing_from_within_the_process() {
    let Some(mut tracer) =
        tracer_or_skip("root_the_untimed_fcntl_ends_timing_from_within_the_process")
    else {
        return;
    };
    let script = format!(
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None)\nsys.stdin.readline()\nfor _ in range(5): os.getppid()\nlibc.fcntl(-1, {})\nfor _ in range(5): os.getppid()\n",
        guestview_bpf::UNTIMED_FCNTL_CMD
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    tracer.trace_pid(pid).expect("trace_pid");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release");
    drop(stdin);
    let events = collect_until(
        &mut tracer,
        |ev| matches!(ev, HostEvent::Exit { tgid, group_dead: true, .. } if *tgid == pid),
    );
    assert!(child.wait().expect("wait").success());
    const NR_GETPPID: i64 = 110;
    let calls: Vec<&HostSyscall> = syscalls(&events).filter(|s| s.tgid == pid).collect();
    let said = calls
        .iter()
        .position(|s| s.nr == 72 && s.args[1] == u64::from(guestview_bpf::UNTIMED_FCNTL_CMD))
        .expect("the fcntl");
    let before = calls[..said]
        .iter()
        .filter(|s| s.nr == NR_GETPPID)
        .collect::<Vec<_>>();
    let after = calls[said + 1..]
        .iter()
        .filter(|s| s.nr == NR_GETPPID)
        .collect::<Vec<_>>();
    assert!(
        before.len() >= 5 && after.len() >= 5,
        "{before:?} {after:?}"
    );
    assert!(
        before.iter().all(|s| s.t_exit_ns > 0),
        "timed before: {before:?}"
    );
    assert!(
        after.iter().all(|s| s.t_exit_ns == 0),
        "untimed after: {after:?}"
    );
}
