use super::*;

const EXAMPLE: &str = r#"
default = "allow"              # allow | alert | deny | kill

[[rule]]
name = "no-shadow"
syscalls = ["open", "openat", "openat2"]
path = "/etc/shadow*"
action = "deny"

[[rule]]
name = "no-shell"
syscalls = ["execve", "execveat"]
path = "/bin/*sh"
action = "kill"

[[rule]]
name = "privilege"
syscalls = ["setuid", "setreuid", "setresuid", "setgid", "setregid", "setresgid", "capset"]
action = "alert"

[[rule]]
name = "no-network"
syscalls = ["connect", "sendto", "sendmsg"]
addr = "!127.0.0.0/8"
action = "deny"

[limits]
fork_per_second = 20
connect_per_second = 5
"#;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("p.toml"))
}

fn call<'a>(name: &'a str) -> Call<'a> {
    Call {
        name,
        ..Default::default()
    }
}

#[test]
fn the_issue_example_parses_and_decides() {
    let p = parse(EXAMPLE).unwrap();
    assert_eq!(p.default, Action::Allow);
    assert_eq!(p.rules.len(), 4);
    assert_eq!(p.rules[0].line, 4);
    assert_eq!(p.limits.fork_per_second, Some(20));
    assert_eq!(p.limits.connect_per_second, Some(5));
    let m = Arch::Mips;
    let d = p.decide(
        m,
        &Call {
            path: Some("/etc/shadow"),
            ..call("open")
        },
    );
    assert_eq!(
        (d.action, d.rule, d.errno),
        (Action::Deny, Some("no-shadow"), "EPERM")
    );
    let d = p.decide(
        m,
        &Call {
            path: Some("/etc/passwd"),
            ..call("open")
        },
    );
    assert_eq!((d.action, d.rule), (Action::Allow, None));
    // Not named by the rule: falls through to the default.
    let d = p.decide(
        m,
        &Call {
            path: Some("/etc/shadow"),
            ..call("stat64")
        },
    );
    assert_eq!(d.action, Action::Allow);
    let d = p.decide(
        m,
        &Call {
            path: Some("/bin/bash"),
            ..call("execve")
        },
    );
    assert_eq!((d.action, d.rule), (Action::Kill, Some("no-shell")));
    // setuid32 (ARM's 32-bit id call) is setuid.
    let d = p.decide(Arch::Arm, &call("setuid32"));
    assert_eq!((d.action, d.rule), (Action::Alert, Some("privilege")));
    let out = "8.8.8.8:53".parse().ok();
    let d = p.decide(
        m,
        &Call {
            addr: out,
            ..call("connect")
        },
    );
    assert_eq!((d.action, d.rule), (Action::Deny, Some("no-network")));
    let lo = "127.0.0.1:80".parse().ok();
    assert_eq!(
        p.decide(
            m,
            &Call {
                addr: lo,
                ..call("connect")
            }
        )
        .action,
        Action::Allow
    );
    // No address (AF_UNIX, a connected socket): the addr matcher does not match.
    assert_eq!(p.decide(m, &call("sendto")).action, Action::Allow);
}

#[test]
fn paths_are_normalised_before_matching() {
    let p = parse(EXAMPLE).unwrap();
    for sneaky in [
        "/etc//shadow",
        "/etc/./shadow",
        "/tmp/../etc/shadow",
        "//etc/shadow-",
    ] {
        let d = p.decide(
            Arch::Mips,
            &Call {
                path: Some(sneaky),
                ..call("openat")
            },
        );
        assert_eq!(d.action, Action::Deny, "{sneaky}");
    }
    assert_eq!(resolve("/etc", "shadow"), "/etc/shadow");
    assert_eq!(resolve("/tmp/", "../etc/shadow"), "/etc/shadow");
    assert_eq!(resolve("/tmp", "/abs"), "/abs");
    assert_eq!(normalize("/"), "/");
    assert_eq!(normalize("/a/b/"), "/a/b");
    assert_eq!(normalize("/../.."), "/");
}

#[test]
fn first_matching_rule_decides() {
    let p = parse(
        r#"
default = "deny"
[[rule]]
name = "tmp-ok"
syscalls = ["openat"]
path = "/tmp/**"
action = "allow"
[[rule]]
name = "opens"
syscalls = ["openat"]
action = "alert"
"#,
    )
    .unwrap();
    let d = p.decide(
        Arch::Aarch64,
        &Call {
            path: Some("/tmp/a/b"),
            ..call("openat")
        },
    );
    assert_eq!(d.rule, Some("tmp-ok"));
    let d = p.decide(
        Arch::Aarch64,
        &Call {
            path: Some("/etc/x"),
            ..call("openat")
        },
    );
    assert_eq!(d.rule, Some("opens"));
    let d = p.decide(Arch::Aarch64, &call("read"));
    assert_eq!((d.action, d.rule), (Action::Deny, None));
}

#[test]
fn uid_and_flags_matchers() {
    let p = parse(
        r#"
[[rule]]
name = "become-root"
syscalls = ["setuid", "setresuid", "chown"]
uid = 0
action = "kill"
[[rule]]
name = "writes"
syscalls = ["open", "openat", "creat"]
flags = ["O_WRONLY", "O_RDWR"]
action = "alert"
"#,
    )
    .unwrap();
    let m = Arch::Mips;
    let set = |name, a: [u64; 6]| {
        p.decide(
            m,
            &Call {
                args: a,
                ..call(name)
            },
        )
        .action
    };
    assert_eq!(set("setuid", [0; 6]), Action::Kill);
    assert_eq!(set("setuid", [1000, 0, 0, 0, 0, 0]), Action::Allow);
    // -1 means "unchanged", not uid 4294967295 and never 0.
    assert_eq!(
        set("setresuid", [u64::MAX, u64::MAX, 0, 0, 0, 0]),
        Action::Kill
    );
    assert_eq!(
        set("setresuid", [u64::MAX, 5, u64::MAX, 0, 0, 0]),
        Action::Allow
    );
    assert_eq!(set("chown", [0x1000, 0, 5, 0, 0, 0]), Action::Kill);
    // MIPS O_WRONLY is 1 too; O_CREAT 0x100 alone is a read-only open.
    assert_eq!(set("open", [0, 0x101, 0, 0, 0, 0]), Action::Alert);
    assert_eq!(set("open", [0, 0x100, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(set("openat", [0, 0, 2, 0, 0, 0]), Action::Alert);
    assert_eq!(set("creat", [0; 6]), Action::Alert);
    let how = Call {
        flags: Some(1),
        ..call("openat")
    };
    assert_eq!(p.decide(m, &how).action, Action::Alert);
}

/// `(line, column, piece of the reason)` for malformed policies.
#[test]
fn malformed_policies_name_line_column_and_reason() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("default = \"block\"\n", 1, 11, "unknown action \"block\""),
        ("default = \"allow\"\n[[rule]]\nname = \"x\"\nsyscalls = [\"opne\"]\naction = \"deny\"\n", 4, 13, "\"opne\" is not a syscall"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\naction = \"stop\"\n", 4, 10, "unknown action \"stop\""),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"setuid\"]\npath = \"/x\"\naction = \"deny\"\n", 4, 8, "`path` does not apply to setuid"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"connect\"]\naddr = \"10.0.0.0/33\"\naction = \"deny\"\n", 4, 8, "bad prefix length"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\npath = \"/a[b\"\naction = \"deny\"\n", 4, 8, "unclosed '['"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\nflags = \"O_BOGUS\"\naction = \"deny\"\n", 4, 9, "unknown flag 'O_BOGUS'"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"setuid\"]\nuid = -3\naction = \"deny\"\n", 4, 7, "not a user or group id"),
        ("[[rule]]\nname = \"x\"\nsyscalls = []\naction = \"deny\"\n", 3, 12, "empty"),
        ("[[rule]]\nname = \"x\"\naction = \"deny\"\n", 1, 1, "missing `syscalls`"),
        ("[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\naction = \"deny\"\n[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\naction = \"deny\"\n", 6, 8, "comes earlier"),
        ("[[rule]]\nname = \"x\"\nsyscall = [\"open\"]\naction = \"deny\"\n", 3, 1, "unknown field `syscall`"),
        ("[limits]\nfork_per_second = 0\n", 2, 19, "fork_per_second must be 1"),
        ("default = \"allow\"\ndefault = \"deny\"\n", 2, 1, "duplicate key"),
        ("[[rule]\n", 1, 7, "invalid table header"),
    ];
    for &(text, line, col, why) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!((e.line, e.column), (line, col), "{text:?}: {e}");
        assert!(e.reason.contains(why), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("p.toml:{line}:{col}: ")),
            "{e}"
        );
    }
}

#[test]
fn names_unknown_everywhere_are_refused_but_any_arch_will_do() {
    // set_thread_area exists on mips and x86-64 only, cacheflush on mips/arm.
    let ok = "[[rule]]\nname = \"a\"\nsyscalls = [\"set_thread_area\", \"cacheflush\", \"socketcall\"]\naction = \"alert\"\n";
    assert!(parse(ok).is_ok());
}

/// A small deterministic generator: mutations of valid policies and
/// random bytes must give `Ok` or a positioned error, never a panic.
#[test]
fn mutated_and_random_input_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] =
        b"[]{}=\"'#,.:!*/\\\n \t0123456789abcdefghijklmnopqrstuvwxyzO_\x7f\xc3\xa9";
    let oci = include_str!("../../../docs/policies/docker-default-subset.json");
    let mut errors = 0;
    for base in [EXAMPLE, oci] {
        for _ in 0..3000 {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % b.len().max(1);
                match next() % 3 {
                    0 => b[i] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text = String::from_utf8_lossy(&b);
            if let Err(e) = parse(&text) {
                errors += 1;
                assert!(!e.reason.is_empty());
                if e.line > 0 {
                    assert!(e.line <= text.lines().count() + 1, "{e}");
                }
            }
        }
    }
    for _ in 0..2000 {
        let len = (next() % 200) as usize;
        let b: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() as usize) % alphabet.len()])
            .collect();
        let _ = parse(&String::from_utf8_lossy(&b));
    }
    assert!(errors > 1000, "mutations were too gentle: {errors} errors");
}

#[test]
fn oci_profiles_translate_with_notes() {
    let text = include_str!("../../../docs/policies/docker-default-subset.json");
    let p = Policy::parse(text, Path::new("d.json")).unwrap();
    assert_eq!(p.source, Source::Oci);
    assert_eq!(
        (p.default, p.default_errno.as_str()),
        (Action::Deny, "EPERM")
    );
    // Strictest first: kill, then deny, alert, allow.
    let acts: Vec<Action> = p.rules.iter().map(|r| r.action).collect();
    let mut sorted = acts.clone();
    sorted.sort_by_key(|a| std::cmp::Reverse(*a));
    assert_eq!(acts, sorted);
    let m = Arch::Mips;
    assert_eq!(p.decide(m, &call("read")).action, Action::Allow);
    assert_eq!(p.decide(m, &call("reboot")).action, Action::Kill);
    assert_eq!(p.decide(m, &call("setuid")).action, Action::Alert);
    let d = p.decide(m, &call("mount"));
    assert_eq!((d.action, d.rule, d.errno), (Action::Deny, None, "EPERM"));
    // personality(0) and (8) allowed, others fall to the default.
    assert_eq!(p.decide(m, &call("personality")).action, Action::Allow);
    let pers = |v| {
        p.decide(
            m,
            &Call {
                args: [v, 0, 0, 0, 0, 0],
                ..call("personality")
            },
        )
        .action
    };
    assert_eq!(pers(8), Action::Allow);
    assert_eq!(pers(9), Action::Deny);
    // clone with namespace flags: denied with ENOSYS (errnoRet 38 is x86's ENOSYS).
    let clone = |f| {
        p.decide(
            m,
            &Call {
                args: [f, 0, 0, 0, 0, 0],
                ..call("clone")
            },
        )
    };
    let d = clone(0x2000_0000);
    assert_eq!((d.action, d.errno), (Action::Deny, "ENOSYS"));
    assert_eq!(clone(0x11).action, Action::Allow);
    // arch_prctl only for x86-64 guests; capability entries dropped.
    assert_eq!(
        p.decide(Arch::X86_64, &call("arch_prctl")).action,
        Action::Allow
    );
    assert_eq!(
        p.decide(Arch::Aarch64, &call("arch_prctl")).action,
        Action::Deny
    );
    assert_eq!(p.decide(m, &call("ptrace")).action, Action::Deny);
    let notes = p.notes.join("\n");
    assert!(notes.contains("includes.caps"), "{notes}");
    assert!(notes.contains("s390_runtime_instr"), "{notes}");
    assert!(notes.contains("argument registers"), "{notes}");
}

#[test]
fn oci_errors_are_positioned() {
    let e = Policy::parse("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_NOPE\"}]}", Path::new("d.json")).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("unknown action \"SCMP_ACT_NOPE\""), "{e}");
    let e = Policy::parse("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_NOTIFY\"}]}", Path::new("d.json")).unwrap_err();
    assert!(e.reason.contains("TOML"), "{e}");
    let e = Policy::parse("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"read\"],\n \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 7, \"value\": 0, \"op\": \"SCMP_CMP_EQ\"}]}]}", Path::new("d.json")).unwrap_err();
    assert!(e.reason.contains("argument index 7"), "{e}");
    assert_eq!(e.line, 3);
    let e = Policy::parse("{\"defaultAction\": 3}", Path::new("d.json")).unwrap_err();
    assert_eq!((e.line, e.column > 0), (1, true), "{e}");
    let e = Policy::parse(
        "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 4000}",
        Path::new("d.json"),
    )
    .unwrap_err();
    assert!(e.reason.contains("errnoRet 4000"), "{e}");
}
