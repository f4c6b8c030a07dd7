//! The compact encoding of guest syscalls inside a trace frame.
//!
//! A run writes one [`SyscallEvent`] per guest call, millions of them, so
//! their encoding is the hot path of `--trace` and of `report`: generic
//! serde/bincode spent about 0.3 µs per call here, a third of the
//! correlator's time. This codec writes the same fields as LEB128 varints
//! with names (syscall, errno, verdict, architecture, symbol) as indices
//! into a per-frame name table, and times as differences from the call's
//! entry. It is lossless: every `SyscallEvent` decodes to itself.
//!
//! ```text
//! syscall : flags u8 | seq | pid | tid | vcpu | arch@ | [pc] | [pc_sym@] | nr~ | [name@]
//!           | args[8] | [path$] | [ret~] | [errno@] | t_enter | t_exit-t_enter~
//!           | host count | host* | verdict@ | policy_action@ | [policy_rule$]
//!           | [guest_path$]
//! host    : flags u8 | nr~ | name@ | args[6] | [ret~] | [path$] | tid-g.tid~
//!           | [t_enter-g.t_enter~] | t_exit-g.t_enter~
//! ```
//!
//! Plain numbers are unsigned LEB128, `~` marks zigzag-signed ones
//! (differences wrap), `@` a name-table index, `$` a length-prefixed UTF-8
//! string, `[...]` a field present only when its flag bit is set. Names are
//! defined in the frame, before their first use, by a name item (see
//! [`crate::trace`]).
//!
//! Input is untrusted: every read is bounds-checked, every index checked
//! against the table, every length against what is left, and nothing is
//! allocated from a count that the bytes cannot back.

use crate::trace::{HostCall, Name, SyscallEvent};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Longest string a frame may hold (paths are at most 255 bytes, symbols
/// and rules short; this only bounds hostile input).
pub(crate) const MAX_STR: usize = 1 << 16;

/// Names interned for the whole process at most (a hostile trace with more
/// distinct names gets owned copies beyond this).
const MAX_INTERNED: usize = 1 << 16;

const F_PC: u8 = 1 << 0;
const F_PC_SYM: u8 = 1 << 1;
const F_NAME: u8 = 1 << 2;
const F_PATH: u8 = 1 << 3;
const F_RET: u8 = 1 << 4;
const F_ERRNO: u8 = 1 << 5;
const F_RULE: u8 = 1 << 6;
const F_GUEST_PATH: u8 = 1 << 7;

/// Item tags of a frame payload: a bincode-encoded [`crate::trace::TraceEvent`].
pub(crate) const TAG_EVENT: u8 = 0;
/// A compact syscall record (this module).
pub(crate) const TAG_SYSCALL: u8 = 1;
/// The next name of the frame's table: a length-prefixed string.
pub(crate) const TAG_NAME: u8 = 2;

const H_RET: u8 = 1 << 0;
const H_PATH: u8 = 1 << 1;
const H_ENTER: u8 = 1 << 2;

/// Appends LEB128 `v` to `out`.
#[inline]
pub(crate) fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
fn put_sv(out: &mut Vec<u8>, v: i64) {
    put_uv(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uv(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The writer's side of a frame's name table.
pub(crate) struct NameTable {
    ids: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    /// Names that are `&'static str` (nearly all: syscall, errno and verdict
    /// names, interned symbols), by address and length: no hashing or
    /// comparing of the bytes on the hot path.
    statics: HashMap<(usize, usize), u32, rustc_hash::FxBuildHasher>,
    /// A direct-mapped cache in front of `statics`: a call's seven names
    /// are nearly always the previous call's.
    recent: [(usize, usize, u32); 64],
}

impl Default for NameTable {
    fn default() -> Self {
        NameTable {
            ids: HashMap::default(),
            statics: HashMap::default(),
            recent: [(0, 0, 0); 64],
        }
    }
}

impl NameTable {
    /// Forget every name (a new frame begins).
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.statics.clear();
        self.recent = [(0, 0, 0); 64];
    }

    /// The index of `name`; a new one is first defined in `out` by a name
    /// item.
    #[inline]
    fn id(&mut self, out: &mut Vec<u8>, name: &Name) -> u32 {
        let Cow::Borrowed(b) = name else {
            return self.id_of_str(out, name);
        };
        let key = (b.as_ptr() as usize, b.len());
        let slot = (key.0 >> 3 ^ key.1) & 63;
        let r = self.recent[slot];
        if (r.0, r.1) == key {
            return r.2;
        }
        let i = match self.statics.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.id_of_str(out, b);
                self.statics.insert(key, i);
                i
            }
        };
        self.recent[slot] = (key.0, key.1, i);
        i
    }

    fn id_of_str(&mut self, out: &mut Vec<u8>, name: &str) -> u32 {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.ids.len() as u32;
        out.push(TAG_NAME);
        put_str(out, name);
        self.ids.insert(name.into(), i);
        i
    }
}

/// Writes varints into a slice sized beforehand for the worst case: no
/// capacity check per byte (pushing byte by byte into the Vec cost a third
/// of the encoding).
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    #[inline]
    fn u8(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    #[inline]
    fn uv(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.u8(v as u8 | 0x80);
            v >>= 7;
        }
        self.u8(v as u8);
    }

    #[inline]
    fn sv(&mut self, v: i64) {
        self.uv(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uv(s.len() as u64);
        self.buf[self.pos..self.pos + s.len()].copy_from_slice(s.as_bytes());
        self.pos += s.len();
    }
}

/// Most bytes a syscall item can take, names aside: ten per varint.
fn max_len(s: &SyscallEvent) -> usize {
    let strs = |o: &Option<String>| o.as_ref().map_or(0, |p| 10 + p.len());
    1 + 1
        + 10 * 24
        + strs(&s.path)
        + strs(&s.policy_rule)
        + strs(&s.guest_path)
        + s.host
            .iter()
            .map(|h| 1 + 10 * 12 + strs(&h.path))
            .sum::<usize>()
}

/// Appends `s` to `out` as a syscall item, preceded by the name items it
/// needs.
pub(crate) fn encode_syscall(out: &mut Vec<u8>, names: &mut NameTable, s: &SyscallEvent) {
    // Names first: their definitions must precede the record.
    let arch = names.id(out, &s.arch);
    let pc_sym = s.pc_sym.as_ref().map(|n| names.id(out, n));
    let name = s.name.as_ref().map(|n| names.id(out, n));
    let errno = s.errno.as_ref().map(|n| names.id(out, n));
    let verdict = names.id(out, &s.verdict);
    let action = names.id(out, &s.policy_action);
    let mut few = [0u32; 8];
    let many: Vec<u32>;
    let host_names: &[u32] = if s.host.len() <= few.len() {
        for (slot, h) in few.iter_mut().zip(&s.host) {
            *slot = names.id(out, &h.name);
        }
        &few[..s.host.len()]
    } else {
        many = s.host.iter().map(|h| names.id(out, &h.name)).collect();
        &many
    };
    let start = out.len();
    out.resize(start + max_len(s), 0);
    let mut w = SliceWriter {
        buf: &mut out[start..],
        pos: 0,
    };
    w.u8(TAG_SYSCALL);
    let mut flags = 0;
    flags |= if s.pc.is_some() { F_PC } else { 0 };
    flags |= if pc_sym.is_some() { F_PC_SYM } else { 0 };
    flags |= if name.is_some() { F_NAME } else { 0 };
    flags |= if s.path.is_some() { F_PATH } else { 0 };
    flags |= if s.ret.is_some() { F_RET } else { 0 };
    flags |= if errno.is_some() { F_ERRNO } else { 0 };
    flags |= if s.policy_rule.is_some() { F_RULE } else { 0 };
    flags |= if s.guest_path.is_some() {
        F_GUEST_PATH
    } else {
        0
    };
    w.u8(flags);
    w.uv(s.seq);
    w.uv(u64::from(s.pid));
    w.uv(u64::from(s.tid));
    w.uv(u64::from(s.vcpu));
    w.uv(u64::from(arch));
    if let Some(pc) = s.pc {
        w.uv(pc);
    }
    if let Some(i) = pc_sym {
        w.uv(u64::from(i));
    }
    w.sv(s.nr);
    if let Some(i) = name {
        w.uv(u64::from(i));
    }
    for a in s.args {
        w.uv(a);
    }
    if let Some(p) = &s.path {
        w.str(p);
    }
    if let Some(r) = s.ret {
        w.sv(r);
    }
    if let Some(i) = errno {
        w.uv(u64::from(i));
    }
    w.uv(s.t_enter_ns);
    w.sv(s.t_exit_ns.wrapping_sub(s.t_enter_ns) as i64);
    w.uv(s.host.len() as u64);
    for (h, &hn) in s.host.iter().zip(host_names) {
        let mut hf = 0;
        hf |= if h.ret.is_some() { H_RET } else { 0 };
        hf |= if h.path.is_some() { H_PATH } else { 0 };
        hf |= if h.t_enter_ns != 0 { H_ENTER } else { 0 };
        w.u8(hf);
        w.sv(h.nr);
        w.uv(u64::from(hn));
        for a in h.args {
            w.uv(a);
        }
        if let Some(r) = h.ret {
            w.sv(r);
        }
        if let Some(p) = &h.path {
            w.str(p);
        }
        w.sv(i64::from(h.tid).wrapping_sub(i64::from(s.tid)));
        if h.t_enter_ns != 0 {
            w.sv(h.t_enter_ns.wrapping_sub(s.t_enter_ns) as i64);
        }
        w.sv(h.t_exit_ns.wrapping_sub(s.t_enter_ns) as i64);
    }
    w.uv(u64::from(verdict));
    w.uv(u64::from(action));
    if let Some(r) = &s.policy_rule {
        w.str(r);
    }
    if let Some(p) = &s.guest_path {
        w.str(p);
    }
    let used = w.pos;
    out.truncate(start + used);
}

/// A name as the reader keeps it: shared for the whole process when it can
/// be, so that millions of decoded calls do not each copy their names.
pub(crate) fn intern(s: &str) -> Name {
    static TABLE: OnceLock<Mutex<HashMap<Box<str>, &'static str>>> = OnceLock::new();
    if s.len() > 256 {
        return Cow::Owned(s.to_owned());
    }
    let mut t = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&n) = t.get(s) {
        return Cow::Borrowed(n);
    }
    if t.len() >= MAX_INTERNED {
        return Cow::Owned(s.to_owned());
    }
    // Leaked on purpose: bounded by MAX_INTERNED short strings per process.
    let n: &'static str = Box::leak(s.into());
    t.insert(s.into(), n);
    Cow::Borrowed(n)
}

#[cold]
fn varint_error(left: usize) -> String {
    if left < 10 {
        "record ends early".into()
    } else {
        "varint longer than 64 bits".into()
    }
}

/// Reads from a frame's bytes; every method fails rather than read past
/// the end.
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| "record ends early".to_string())?;
        self.buf = rest;
        Ok(b)
    }

    #[inline]
    pub(crate) fn uv(&mut self) -> Result<u64, String> {
        // Straight over the bytes (most fields take one or two), without a
        // Result per byte.
        let buf = self.buf;
        let mut v = 0u64;
        for (i, &b) in buf.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    break;
                }
                self.buf = &buf[i + 1..];
                return Ok(v);
            }
        }
        Err(varint_error(buf.len()))
    }

    #[inline]
    fn sv(&mut self) -> Result<i64, String> {
        let u = self.uv()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        u32::try_from(self.uv()?).map_err(|_| format!("{what} out of range"))
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, String> {
        let len = self.uv()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_STR && *l <= self.buf.len())
            .ok_or_else(|| format!("string length {len} exceeds the record"))?;
        let (s, rest) = self.buf.split_at(len);
        self.buf = rest;
        std::str::from_utf8(s).map_err(|_| "string is not UTF-8".to_string())
    }

    fn name(&mut self, names: &[Name]) -> Result<Name, String> {
        let i = self.uv()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| names.get(i))
            .cloned()
            .ok_or_else(|| format!("name index {i} not defined in this frame"))
    }
}

/// Decodes one syscall record (after its tag) with the frame's `names`.
/// One syscall item, built in its box (a `SyscallEvent` is some 300 bytes:
/// returned by value and boxed after, it was copied twice per call).
pub(crate) fn decode_syscall(
    c: &mut Cursor<'_>,
    names: &[Name],
) -> Result<Box<SyscallEvent>, String> {
    let flags = c.u8()?;
    let has = |f: u8| flags & f != 0;
    let seq = c.uv()?;
    let pid = c.u32("pid")?;
    let tid = c.u32("tid")?;
    let vcpu = c.u32("vcpu")?;
    let arch = c.name(names)?;
    let pc = if has(F_PC) { Some(c.uv()?) } else { None };
    let pc_sym = if has(F_PC_SYM) {
        Some(c.name(names)?)
    } else {
        None
    };
    let nr = c.sv()?;
    let name = if has(F_NAME) {
        Some(c.name(names)?)
    } else {
        None
    };
    let mut args = [0u64; 8];
    for a in &mut args {
        *a = c.uv()?;
    }
    let path = if has(F_PATH) {
        Some(c.str()?.to_owned())
    } else {
        None
    };
    let ret = if has(F_RET) { Some(c.sv()?) } else { None };
    let errno = if has(F_ERRNO) {
        Some(c.name(names)?)
    } else {
        None
    };
    let t_enter_ns = c.uv()?;
    let t_exit_ns = t_enter_ns.wrapping_add(c.sv()? as u64);
    let count = c.uv()?;
    // A host call takes at least 11 bytes: a count the rest of the frame
    // cannot hold is refused before anything is reserved for it.
    if count > (c.buf.len() / 11) as u64 {
        return Err(format!("host call count {count} exceeds the record"));
    }
    let mut host = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let hf = c.u8()?;
        if hf & !(H_RET | H_PATH | H_ENTER) != 0 {
            return Err(format!("unknown host call flags {hf:#x}"));
        }
        let nr = c.sv()?;
        let name = c.name(names)?;
        let mut args = [0u64; 6];
        for a in &mut args {
            *a = c.uv()?;
        }
        let ret = if hf & H_RET != 0 { Some(c.sv()?) } else { None };
        let path = if hf & H_PATH != 0 {
            Some(c.str()?.to_owned())
        } else {
            None
        };
        let htid = u32::try_from(i64::from(tid).wrapping_add(c.sv()?))
            .map_err(|_| "host tid out of range".to_string())?;
        let t_enter = if hf & H_ENTER != 0 {
            t_enter_ns.wrapping_add(c.sv()? as u64)
        } else {
            0
        };
        let t_exit = t_enter_ns.wrapping_add(c.sv()? as u64);
        host.push(HostCall {
            nr,
            name,
            args,
            ret,
            path,
            tid: htid,
            t_enter_ns: t_enter,
            t_exit_ns: t_exit,
        });
    }
    let verdict = c.name(names)?;
    let policy_action = c.name(names)?;
    let policy_rule = if has(F_RULE) {
        Some(c.str()?.to_owned())
    } else {
        None
    };
    let guest_path = if has(F_GUEST_PATH) {
        Some(c.str()?.to_owned())
    } else {
        None
    };
    Ok(Box::new(SyscallEvent {
        seq,
        pid,
        tid,
        vcpu,
        arch,
        pc,
        pc_sym,
        nr,
        name,
        args,
        path,
        ret,
        errno,
        t_enter_ns,
        t_exit_ns,
        host,
        verdict,
        policy_action,
        policy_rule,
        guest_path,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn varints_round_trip_and_bad_ones_are_refused() {
        for v in [
            0,
            1,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            super::put_uv(&mut b, v);
            b.push(0xaa);
            let mut c = super::Cursor { buf: &b };
            assert_eq!(c.uv(), Ok(v));
            assert_eq!(c.buf, &[0xaa]);
        }
        let cases: [(&[u8], &str); 4] = [
            (&[], "record ends early"),
            (&[0x80, 0x80], "record ends early"),
            (&[0xff; 10], "varint longer than 64 bits"),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                "varint longer than 64 bits",
            ),
        ];
        for (bytes, err) in cases {
            let mut c = super::Cursor { buf: bytes };
            assert_eq!(c.uv(), Err(err.to_string()), "{bytes:?}");
        }
    }

    use super::*;

    #[test]
    fn widest_values_fit_the_worst_case_size() {
        let host = HostCall {
            nr: i64::MIN,
            name: "x".into(),
            args: [u64::MAX; 6],
            ret: Some(i64::MIN),
            path: Some("p".repeat(300)),
            tid: u32::MAX,
            t_enter_ns: 1,
            t_exit_ns: u64::MAX,
        };
        let s = SyscallEvent {
            seq: u64::MAX,
            pid: u32::MAX,
            tid: 0,
            vcpu: u32::MAX,
            arch: "mips".into(),
            pc: Some(u64::MAX),
            pc_sym: Some("f".into()),
            nr: i64::MIN,
            name: Some("n".into()),
            args: [u64::MAX; 8],
            path: Some("q".repeat(4000)),
            ret: Some(i64::MIN),
            errno: Some("E".into()),
            t_enter_ns: u64::MAX,
            t_exit_ns: 0,
            host: vec![host; 20],
            verdict: "v".into(),
            policy_action: "a".into(),
            policy_rule: Some("r".repeat(100)),
            guest_path: Some("g".repeat(300)),
        };
        let mut names = NameTable::default();
        let mut out = Vec::new();
        encode_syscall(&mut out, &mut names, &s);
        let mut c = Cursor { buf: &out };
        let mut table = Vec::new();
        loop {
            match c.u8().unwrap() {
                TAG_NAME => table.push(intern(c.str().unwrap())),
                TAG_SYSCALL => break,
                t => panic!("tag {t}"),
            }
        }
        assert_eq!(*decode_syscall(&mut c, &table).unwrap(), s);
        assert!(c.buf.is_empty());
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut vals = vec![0u64, 1, 127, 128, 255, 16383, 16384, u64::MAX, u64::MAX - 1];
        vals.extend((0..64).map(|b| 1u64 << b));
        for v in vals {
            let mut out = Vec::new();
            put_uv(&mut out, v);
            put_sv(&mut out, v as i64);
            let mut c = Cursor { buf: &out };
            assert_eq!(c.uv().unwrap(), v);
            assert_eq!(c.sv().unwrap(), v as i64);
            assert!(c.buf.is_empty());
        }
        // Eleven continuation bytes, or a tenth byte above 1, is not a u64.
        let mut c = Cursor { buf: &[0xff; 11] };
        assert!(c.uv().is_err());
        let mut c = Cursor {
            buf: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        };
        assert!(c.uv().is_err());
    }
}
