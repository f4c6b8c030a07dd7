//! End to end: real host processes (`seccomp-probe`) under a real filter,
//! answered by a real supervisor. Needs root (the supervisor reads the
//! target's memory and borrows its credentials).

use guestview_seccomp::{prepare, Answer, Filter, Judge, Request, Ret, Supervisor};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const OPENAT: u32 = 257;
const OPEN: u32 = 2;
const OPENAT2: u32 = 437;
const CREAT: u32 = 85;
const CONNECT: u32 = 42;
const SENDTO: u32 = 44;
const EXECVE: u32 = 59;
const SENDMSG: u32 = 46;
const GETPRIORITY: u32 = 140;
const SETPRIORITY: u32 = 141;

fn require_root() {
    // SAFETY-free check through /proc: the tests run as root in CI.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(
        uid.split_whitespace().nth(2) == Some("0"),
        "these tests need root (the supervisor reads the target's memory): {uid}"
    );
}

/// Denies paths ending in `secret` (named or opened), kills on paths ending
/// in `kill-me`, denies connects/sends outside 127.0.0.0/8, kills setpriority.
struct TestJudge;

impl Judge for TestJudge {
    fn judge(&self, r: &Request<'_>) -> Answer {
        if let Some(p) = r.path {
            if p.ends_with("secret") {
                return Answer::Deny(libc::EPERM);
            }
            if p.ends_with("kill-me") {
                return Answer::Kill;
            }
        }
        if let Some(a) = r.addr {
            let lo = match a.ip() {
                std::net::IpAddr::V4(v) => v.is_loopback(),
                std::net::IpAddr::V6(v) => v.is_loopback(),
            };
            if !lo {
                return Answer::Deny(libc::EACCES);
            }
        }
        if r.nr == SETPRIORITY {
            return Answer::Kill;
        }
        Answer::Allow
    }
}

fn filter() -> Filter {
    let mut f = Filter::default();
    for nr in [
        OPEN,
        OPENAT,
        OPENAT2,
        CREAT,
        CONNECT,
        SENDTO,
        SENDMSG,
        EXECVE,
        SETPRIORITY,
    ] {
        f.by_nr.insert(nr, Ret::Notify);
    }
    f.by_nr.insert(GETPRIORITY, Ret::Kill);
    f
}

fn probe() -> &'static str {
    env!("CARGO_BIN_EXE_seccomp-probe")
}

/// What a probe run gave.
#[derive(Debug)]
struct Output {
    stdout: Vec<u8>,
    status: Result<i32, i32>,
}

/// Run the probe under `filter` with a supervisor; its output and stats.
fn run(filter: &Filter, args: &[&str], uid: Option<u32>) -> (Output, Supervisor) {
    let (child, parent) = prepare(filter).unwrap();
    let out = std::env::temp_dir().join(format!(
        "gv-seccomp-out-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&out).unwrap();
    let mut argv = vec![probe()];
    argv.extend_from_slice(args);
    let pid = guestview_seccomp::spawn(&child, &argv, uid, Some(&file.into())).unwrap();
    let sup = parent.start_supervisor(Arc::new(TestJudge), pid).unwrap();
    let status = guestview_seccomp::wait(pid);
    let stdout = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    (Output { stdout, status }, sup)
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gv-seccomp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("public"), "PUBLIC\n").unwrap();
    std::fs::write(d.join("secret"), "FORBIDDEN\n").unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn root_denied_open_is_eperm_and_allowed_open_is_an_injected_fd() {
    require_root();
    let d = scratch("open");
    let (o, sup) = run(&filter(), &["open", s(&d.join("secret"))], None);
    assert_eq!(line(&o), "err 1", "{o:?}");
    let (o, sup2) = run(&filter(), &["open", s(&d.join("public"))], None);
    let l = line(&o);
    assert!(l.starts_with("ok ") && l.ends_with(" PUBLIC"), "{l}");
    let st = sup2.stop().unwrap();
    assert!(st.injected.load(Ordering::Relaxed) >= 1);
    // Only the probe's own execve (always checked) continued after its
    // path was read.
    assert_eq!(st.continued_after_read.load(Ordering::Relaxed), 1);
    let st = sup.stop().unwrap();
    assert!(st.denied.load(Ordering::Relaxed) >= 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn root_relative_paths_and_symlinks_are_judged_where_they_lead() {
    require_root();
    let d = scratch("rel");
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(d.join("secret"), d.join("innocent")).unwrap();
    for (dir, path) in [
        (d.clone(), "secret"),
        (d.join("sub"), "../secret"),
        (d.join("sub"), "../sub/../secret"),
    ] {
        let (o, _s) = run(&filter(), &["openat-in", s(&dir), path], None);
        assert_eq!(line(&o), "err 1", "{dir:?} {path}");
    }
    // The name is innocent, the opened file is not: the second check denies.
    let (o, _s) = run(&filter(), &["open", s(&d.join("innocent"))], None);
    assert_eq!(line(&o), "err 1");
    let (o, _s) = run(
        &filter(),
        &["openat-in", s(&d.join("sub")), "../public"],
        None,
    );
    assert!(line(&o).ends_with(" PUBLIC"), "{}", line(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn root_the_supervisor_opens_with_the_targets_credentials() {
    require_root();
    let d = scratch("creds");
    std::fs::write(d.join("rootonly"), "ROOT\n").unwrap();
    std::fs::set_permissions(
        d.join("rootonly"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // As nobody: the root-owned 0600 file stays closed although the supervisor is root.
    let (o, _s) = run(&filter(), &["open", s(&d.join("rootonly"))], Some(65534));
    assert_eq!(line(&o), format!("err {}", libc::EACCES));
    // A file it creates is its own, with its umask applied (the default 022).
    let (o, _s) = run(&filter(), &["creat", s(&d.join("made"))], Some(65534));
    assert_eq!(line(&o), "ok 644 65534");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn root_a_thread_flipping_the_path_never_gets_the_forbidden_file() {
    require_root();
    let d = scratch("race");
    let n = 100_000;
    let (o, sup) = run(
        &filter(),
        &[
            "race",
            s(&d.join("public")),
            s(&d.join("secret")),
            &n.to_string(),
        ],
        None,
    );
    let l = line(&o);
    let w: Vec<&str> = l.split_whitespace().collect();
    assert_eq!(w.len(), 6, "{l}");
    let (good, bad, failed): (u64, u64, u64) = (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[5].parse().unwrap(),
    );
    assert_eq!(bad, 0, "the forbidden file was opened: {l}");
    assert_eq!(good + failed, n);
    // Both paths were really seen: some opens allowed, some denied.
    assert!(good > 0 && failed > 0, "{l}");
    let st = sup.stop().unwrap();
    assert!(st.injected.load(Ordering::Relaxed) >= good);
    eprintln!("race over {n} opens: {l}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn root_kill_kills() {
    require_root();
    // By number in the filter: SECCOMP_RET_KILL_PROCESS (SIGSYS).
    let (o, _s) = run(&filter(), &["raw", &GETPRIORITY.to_string(), "0"], None);
    assert_eq!(o.status, Err(libc::SIGSYS));
    assert_eq!(line(&o), "");
    // By the judge: SIGKILL from the supervisor.
    let (o, sup) = run(&filter(), &["raw", &SETPRIORITY.to_string(), "0"], None);
    assert_eq!(o.status, Err(libc::SIGKILL));
    assert_eq!(sup.stop().unwrap().killed.load(Ordering::Relaxed), 1);
    // A path rule on execve.
    let d = scratch("exec");
    std::fs::copy("/bin/true", d.join("kill-me")).unwrap();
    let (o, _s) = run(&filter(), &["exec", s(&d.join("kill-me"))], None);
    assert_eq!(o.status, Err(libc::SIGKILL));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn root_connect_and_sendto_are_made_on_the_targets_socket() {
    require_root();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (o, sup) = run(&filter(), &["connect", &format!("127.0.0.1:{port}")], None);
    assert_eq!(line(&o), "ok");
    // The listener really got the connection.
    l.set_nonblocking(true).unwrap();
    assert!(l.accept().is_ok(), "no connection arrived");
    assert_eq!(sup.stop().unwrap().on_behalf.load(Ordering::Relaxed), 1);
    // Outside loopback: refused before anything leaves the machine.
    let (o, _s) = run(&filter(), &["connect", "192.0.2.1:9"], None);
    assert_eq!(line(&o), format!("err {}", libc::EACCES));
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = u.local_addr().unwrap().port();
    let (o, _s) = run(
        &filter(),
        &["sendto", &format!("127.0.0.1:{port}"), "hello"],
        None,
    );
    assert_eq!(line(&o), "ok 5");
    let mut b = [0u8; 16];
    let (n, _) = u.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"hello");
    let (o, _s) = run(&filter(), &["sendto", "192.0.2.1:9", "x"], None);
    assert_eq!(line(&o), format!("err {}", libc::EACCES));
    // sendmsg: the destination in the header is judged too.
    let (o, _s) = run(&filter(), &["sendmsg", "192.0.2.1:9", "x"], None);
    assert_eq!(line(&o), format!("err {}", libc::EACCES));
    let (o, _s) = run(
        &filter(),
        &["sendmsg", &format!("127.0.0.1:{port}"), "hi"],
        None,
    );
    assert_eq!(line(&o), "ok 2");
    let (n, _) = u.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"hi");
}

#[test]
fn root_without_notifying_entries_no_supervisor_is_needed() {
    require_root();
    let mut f = Filter::default();
    f.by_nr.insert(GETPRIORITY, Ret::Errno(libc::EPERM as u16));
    let (o, sup) = run(&f, &["raw", &GETPRIORITY.to_string(), "0"], None);
    assert_eq!(line(&o), "err 1");
    assert!(sup.finished());
    assert_eq!(sup.stop().unwrap().notifications.load(Ordering::Relaxed), 0);
}
