//! A host program the seccomp tests run under the filter: each command
//! makes one kind of call and prints what it got, one line.
//!
//! ```text
//! seccomp-probe open PATH [FLAGS]        ok <fd> <first bytes> | err <errno>
//! seccomp-probe openat-in DIR PATH       chdir DIR, then openat(AT_FDCWD, PATH)
//! seccomp-probe creat PATH               ok <mode> <uid> | err <errno>
//! seccomp-probe race GOOD BAD N          N opens of a buffer another thread
//!                                        flips between GOOD and BAD:
//!                                        good <n> bad <n> failed <n>
//! seccomp-probe connect IP:PORT          ok | err <errno>
//! seccomp-probe sendto IP:PORT TEXT      ok <n> | err <errno>
//! seccomp-probe sendmsg IP:PORT TEXT     ok <n> | err <errno>
//! seccomp-probe raw NR [ARG0]            ret <v> | err <errno>
//! seccomp-probe exec PATH                (execs PATH) | err <errno>
//! ```

mod sys {
    //! The probe's raw calls (all its `unsafe`).
    use std::ffi::CString;
    use std::sync::atomic::AtomicU8;

    fn ret(r: i64) -> Result<i64, i32> {
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r)
        }
    }

    /// openat(AT_FDCWD, path, flags, 0o644) on a buffer others may change.
    pub fn open_buf(buf: &[AtomicU8], flags: i32) -> Result<i32, i32> {
        // SAFETY: the buffer is NUL-terminated by construction (its last
        // byte is never written) and lives for the whole program; the
        // kernel reads it as bytes, atomics are bytes.
        let r = unsafe { libc::openat(libc::AT_FDCWD, buf.as_ptr().cast(), flags, 0o644) };
        ret(r.into()).map(|v| v as i32)
    }

    /// A raw syscall with one argument.
    pub fn raw(nr: i64, a0: i64) -> Result<i64, i32> {
        // SAFETY: the tests pass numbers whose argument is an integer.
        ret(unsafe { libc::syscall(nr, a0, 0, 0, 0, 0, 0) })
    }

    /// execv(path, [path]).
    pub fn exec(path: &str) -> i32 {
        let Ok(p) = CString::new(path) else {
            return libc::EINVAL;
        };
        let argv = [p.as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated path and a NULL-terminated argv.
        unsafe { libc::execv(p.as_ptr(), argv.as_ptr()) };
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// A UDP socket, then sendmsg of `data` to `to` (a name in the header).
    pub fn sendmsg_v4(to: &std::net::SocketAddrV4, data: &[u8]) -> Result<i64, i32> {
        // SAFETY: integer arguments only.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        ret(s.into())?;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*to.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: a zeroed msghdr is valid; the pointers set below live for the call.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_name = std::ptr::addr_of!(sa) as *mut libc::c_void;
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        // SAFETY: m and what it points at live for the call.
        let r = ret(unsafe { libc::sendmsg(s, &m, 0) } as i64);
        close(s);
        r
    }

    /// A File owning `fd`.
    pub fn file(fd: i32) -> std::fs::File {
        use std::os::fd::FromRawFd;
        // SAFETY: fd is a fresh descriptor returned by openat, owned here only.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }

    /// Close a descriptor by number.
    pub fn close(fd: i32) {
        // SAFETY: fd was returned by an open of ours.
        unsafe { libc::close(fd) };
    }
}

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

fn err_line(e: i32) -> String {
    format!("err {e}")
}

fn load(buf: &[AtomicU8], s: &str) {
    for (i, b) in s.bytes().chain(std::iter::once(0)).enumerate() {
        buf[i].store(b, Ordering::Relaxed);
    }
}

fn open_path(path: &str, flags: i32) -> String {
    let buf: Vec<AtomicU8> = (0..path.len() + 2).map(|_| AtomicU8::new(0)).collect();
    load(&buf, path);
    match sys::open_buf(&buf, flags) {
        Ok(fd) => {
            let mut f = file_from(fd);
            let mut s = String::new();
            let _ = (&mut f).take(64).read_to_string(&mut s);
            format!("ok {fd} {}", s.lines().next().unwrap_or(""))
        }
        Err(e) => err_line(e),
    }
}

fn file_from(fd: i32) -> std::fs::File {
    sys::file(fd)
}

fn race(good: &str, bad: &str, n: u64) -> String {
    let len = good.len().max(bad.len()) + 2;
    let buf: Arc<Vec<AtomicU8>> = Arc::new((0..len).map(|_| AtomicU8::new(0)).collect());
    load(&buf, good);
    let stop = Arc::new(AtomicBool::new(false));
    let (b2, s2, g2, x2) = (buf.clone(), stop.clone(), good.to_owned(), bad.to_owned());
    let flipper = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            load(&b2, &x2);
            std::hint::spin_loop();
            load(&b2, &g2);
        }
    });
    let (mut g, mut b, mut f) = (0u64, 0u64, 0u64);
    for _ in 0..n {
        match sys::open_buf(&buf, libc::O_RDONLY) {
            Ok(fd) => {
                let mut s = String::new();
                let _ = file_from(fd).read_to_string(&mut s);
                if s.starts_with("FORBIDDEN") {
                    b += 1;
                } else {
                    g += 1;
                }
            }
            Err(_) => f += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    format!("good {g} bad {b} failed {f}")
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
    let out = match arg(1).as_str() {
        "open" => open_path(&arg(2), arg(3).parse().unwrap_or(libc::O_RDONLY)),
        "openat-in" => match std::env::set_current_dir(arg(2)) {
            Ok(()) => open_path(&arg(3), libc::O_RDONLY),
            Err(e) => err_line(e.raw_os_error().unwrap_or(0)),
        },
        "creat" => {
            let p = arg(2);
            let buf: Vec<AtomicU8> = (0..p.len() + 2).map(|_| AtomicU8::new(0)).collect();
            load(&buf, &p);
            match sys::open_buf(&buf, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) {
                Ok(fd) => {
                    sys::close(fd);
                    match std::fs::metadata(&p) {
                        Ok(m) => format!("ok {:o} {}", m.mode() & 0o7777, m.uid()),
                        Err(e) => err_line(e.raw_os_error().unwrap_or(0)),
                    }
                }
                Err(e) => err_line(e),
            }
        }
        "race" => race(&arg(2), &arg(3), arg(4).parse().unwrap_or(1000)),
        "connect" => match arg(2).parse::<SocketAddr>() {
            Ok(sa) => match TcpStream::connect(sa) {
                Ok(_) => "ok".into(),
                Err(e) => err_line(e.raw_os_error().unwrap_or(0)),
            },
            Err(_) => "err bad-address".into(),
        },
        "sendto" => match (UdpSocket::bind("127.0.0.1:0"), arg(2).parse::<SocketAddr>()) {
            (Ok(s), Ok(sa)) => match s.send_to(arg(3).as_bytes(), sa) {
                Ok(n) => format!("ok {n}"),
                Err(e) => err_line(e.raw_os_error().unwrap_or(0)),
            },
            _ => "err setup".into(),
        },
        "sendmsg" => match arg(2).parse::<SocketAddr>() {
            Ok(SocketAddr::V4(a)) => match sys::sendmsg_v4(&a, arg(3).as_bytes()) {
                Ok(n) => format!("ok {n}"),
                Err(e) => err_line(e),
            },
            _ => "err bad-address".into(),
        },
        "raw" => match sys::raw(arg(2).parse().unwrap_or(-1), arg(3).parse().unwrap_or(0)) {
            Ok(v) => format!("ret {v}"),
            Err(e) => err_line(e),
        },
        "exec" => err_line(sys::exec(&arg(2))),
        other => format!("unknown command {other}"),
    };
    println!("{out}");
}
