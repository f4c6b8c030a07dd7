// SPDX-License-Identifier: GPL-2.0-or-later
//! Plugin arguments: `-plugin libguestview.so,ring=PATH,out=FILE,wait=on,hold=on`.

use std::path::PathBuf;

/// Parsed plugin arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Ring to attach to (made by `guestview run`).
    pub ring: Option<PathBuf>,
    /// Guest-side trace file to write.
    pub out: Option<PathBuf>,
    /// Hold the guest until a consumer attaches; never drop records.
    pub wait: bool,
    /// Hold the guest until the ring's owner releases it (`guestview run`
    /// starts QEMU while its eBPF programs load and releases the guest once
    /// the host view follows QEMU). Needs `ring=`.
    pub hold: bool,
    /// Once QEMU and the plugin are loaded, detach the mounts at and under
    /// this directory (the sandbox's `/.guestview`), so the guest can
    /// neither run nor read QEMU's own files.
    pub hide: Option<PathBuf>,
    /// A unix socket (inherited descriptor number) on which guestview sends
    /// a descriptor of its host ring's position page before it releases the
    /// guest: the plugin maps it and marks each guest call
    /// with the ring's position, which places host calls exactly without
    /// timing each one. Needs `hold=on`.
    pub hostpos: Option<i32>,
    /// Follow guest execs: a guest program exec'd by the guest runs under
    /// QEMU with this plugin again; anything else is refused (see `exec.rs`).
    pub exec: bool,
    /// The guest layer of a policy (see `filter.rs`), as guestview encodes it.
    pub policy: Option<crate::filter::Rules>,
}

const USAGE: &str = "arguments are ring=PATH, out=FILE, wait=on|off, hold=on|off, hide=DIR, \
                     hostpos=FD, exec=on|off, policy=RULES";

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{key}={v}: expected on or off")),
    }
}

/// Parse `key=value` arguments; one clear message for anything else.
pub fn parse(argv: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    for a in argv {
        let Some((k, v)) = a.split_once('=') else {
            return Err(format!("bad argument '{a}': {USAGE}"));
        };
        match k {
            "ring" | "out" | "hide" if v.is_empty() => return Err(format!("{k}= needs a path")),
            "hide" if !v.starts_with('/') || v == "/" => {
                return Err(format!(
                    "hide={v}: needs an absolute directory other than /"
                ))
            }
            "hide" => o.hide = Some(PathBuf::from(v)),
            "ring" => o.ring = Some(PathBuf::from(v)),
            "out" => o.out = Some(PathBuf::from(v)),
            "wait" => o.wait = boolean(k, v)?,
            "hostpos" => {
                o.hostpos = Some(
                    v.parse::<i32>()
                        .ok()
                        .filter(|fd| *fd >= 0)
                        .ok_or_else(|| format!("hostpos={v}: expected a file descriptor number"))?,
                )
            }
            "hold" => o.hold = boolean(k, v)?,
            "exec" => o.exec = boolean(k, v)?,
            "policy" => o.policy = Some(crate::filter::Rules::parse(v)?),
            _ => return Err(format!("unknown argument '{k}': {USAGE}")),
        }
    }
    if o.hostpos.is_some() && !o.hold {
        return Err(
            "hostpos=FD needs hold=on (guestview sends the ring before it releases the guest)"
                .into(),
        );
    }
    if o.hold && o.ring.is_none() {
        return Err("hold=on needs ring=PATH (the ring's owner releases the guest)".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn good_arguments() {
        let o = parse(&v(&["ring=/dev/shm/x", "wait=on"])).unwrap();
        assert_eq!(o.ring, Some(PathBuf::from("/dev/shm/x")));
        assert!(o.wait);
        assert_eq!(parse(&[]).unwrap(), Options::default());
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert!(parse(&v(&["rung=/x"]))
            .unwrap_err()
            .contains("unknown argument 'rung'"));
        assert!(parse(&v(&["ring"])).unwrap_err().contains("bad argument"));
        assert!(parse(&v(&["wait=maybe"]))
            .unwrap_err()
            .contains("on or off"));
        assert!(parse(&v(&["out="])).unwrap_err().contains("needs a path"));
        assert!(parse(&v(&["hold=on"])).unwrap_err().contains("needs ring="));
        assert!(parse(&v(&["ring=/x", "hold=on"])).unwrap().hold);
        assert!(parse(&v(&["ring=/x", "hostpos=5"]))
            .unwrap_err()
            .contains("needs hold=on"));
        assert!(parse(&v(&["ring=/x", "hold=on", "hostpos=-1"]))
            .unwrap_err()
            .contains("descriptor number"));
        assert_eq!(
            parse(&v(&["ring=/x", "hold=on", "hostpos=5"]))
                .unwrap()
                .hostpos,
            Some(5)
        );
    }

    #[test]
    fn hide_takes_an_absolute_directory_but_not_the_root() {
        assert_eq!(
            parse(&v(&["hide=/.guestview"])).unwrap().hide,
            Some(PathBuf::from("/.guestview"))
        );
        assert!(parse(&v(&["hide=/"])).is_err());
        assert!(parse(&v(&["hide=rel"])).is_err());
        assert!(parse(&v(&["hide="])).is_err());
    }
}
