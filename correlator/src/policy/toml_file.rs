//! guestview's TOML policy format: deserialise with positions, then check
//! every value, so each error names its line and column.

use super::{
    line_col, names, Action, AddrMatch, FlagsMatch, Glob, Limits, Policy, PolicyError, RuleParts,
    Source, MAX_RULES,
};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    limits: Option<Spanned<RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    syscalls: Option<Spanned<Vec<Spanned<String>>>>,
    path: Option<Spanned<String>>,
    addr: Option<Spanned<String>>,
    uid: Option<Spanned<OneOrMany<i64>>>,
    flags: Option<Spanned<OneOrMany<String>>>,
    action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fork_per_second: Option<Spanned<i64>>,
    connect_per_second: Option<Spanned<i64>>,
}

/// Highest rate limit accepted.
const MAX_RATE: i64 = 1_000_000;

pub(super) fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
    let err = |span: Range<usize>, reason: String| {
        let (line, column) = line_col(text, span.start);
        PolicyError {
            file: file.to_owned(),
            line,
            column,
            reason,
        }
    };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        err(span, e.message().trim().replace('\n', " "))
    })?;

    let default = match &raw.default {
        None => Action::Allow,
        Some(d) => Action::from_name(d.get_ref()).ok_or_else(|| {
            err(
                d.span(),
                format!(
                    "default: unknown action \"{}\" (allow | alert | deny | kill)",
                    d.get_ref()
                ),
            )
        })?,
    };
    if raw.rule.len() > MAX_RULES {
        return Err(err(
            raw.rule[MAX_RULES].span(),
            format!("more than {MAX_RULES} rules"),
        ));
    }

    let mut rules = Vec::with_capacity(raw.rule.len());
    for (i, r) in raw.rule.into_iter().enumerate() {
        let rspan = r.span();
        let r = r.into_inner();
        let which = match &r.name {
            Some(n) => format!("rule \"{}\"", n.get_ref()),
            None => format!("rule {}", i + 1),
        };
        let name = r
            .name
            .ok_or_else(|| err(rspan.clone(), format!("{which}: missing `name`")))?;
        if name.get_ref().trim().is_empty() || name.get_ref().len() > 128 {
            return Err(err(
                name.span(),
                format!("{which}: a name is 1 to 128 characters"),
            ));
        }
        if rules
            .iter()
            .any(|x: &super::Rule| x.name == *name.get_ref())
        {
            return Err(err(
                name.span(),
                format!("{which}: a rule of that name comes earlier (names must be unique)"),
            ));
        }
        let syscalls = r.syscalls.ok_or_else(|| {
            err(
                rspan.clone(),
                format!("{which}: missing `syscalls` (a list of guest syscall names)"),
            )
        })?;
        if syscalls.get_ref().is_empty() {
            return Err(err(
                syscalls.span(),
                format!("{which}: `syscalls` is empty: the rule would match nothing"),
            ));
        }
        let mut names_v = Vec::new();
        for s in syscalls.get_ref() {
            if !names::is_known(s.get_ref()) {
                return Err(err(
                    s.span(),
                    format!(
                        "{which}: \"{}\" is not a syscall on any supported architecture",
                        s.get_ref()
                    ),
                ));
            }
            names_v.push(s.get_ref().clone());
        }
        // Every matcher must be able to apply to every call the rule names.
        let need = |what: &str, span: Range<usize>, ok: fn(&str) -> bool| {
            match names_v.iter().find(|n| !ok(n)) {
                Some(n) => Err(err(
                    span,
                    format!("{which}: `{what}` does not apply to {n} (it has no such argument); put {n} in a rule of its own"),
                )),
                None => Ok(()),
            }
        };
        let path = match r.path {
            None => None,
            Some(p) => {
                need("path", p.span(), names::has_path)?;
                Some(
                    Glob::new(p.get_ref())
                        .map_err(|e| err(p.span(), format!("{which}: path: {e}")))?,
                )
            }
        };
        let addr = match r.addr {
            None => None,
            Some(a) => {
                need("addr", a.span(), names::has_addr)?;
                Some(
                    AddrMatch::new(a.get_ref())
                        .map_err(|e| err(a.span(), format!("{which}: {e}")))?,
                )
            }
        };
        let uid = match r.uid {
            None => None,
            Some(u) => {
                need("uid", u.span(), names::has_ids)?;
                let span = u.span();
                let v = u.into_inner().into_vec();
                if v.is_empty() {
                    return Err(err(
                        span,
                        format!("{which}: uid: an empty list matches nothing"),
                    ));
                }
                let mut ids = Vec::new();
                for x in v {
                    let id = u32::try_from(x)
                        .ok()
                        .filter(|&x| x != u32::MAX)
                        .ok_or_else(|| {
                            err(
                                span.clone(),
                                format!(
                                    "{which}: uid {x} is not a user or group id (0 to 4294967294)"
                                ),
                            )
                        })?;
                    ids.push(id);
                }
                Some(ids)
            }
        };
        let flags = match r.flags {
            None => None,
            Some(f) => {
                need("flags", f.span(), names::has_flags)?;
                let span = f.span();
                Some(
                    FlagsMatch::new(&f.into_inner().into_vec())
                        .map_err(|e| err(span, format!("{which}: {e}")))?,
                )
            }
        };
        let action = r.action.ok_or_else(|| {
            err(
                rspan.clone(),
                format!("{which}: missing `action` (allow | alert | deny | kill)"),
            )
        })?;
        let action_v = Action::from_name(action.get_ref()).ok_or_else(|| {
            err(
                action.span(),
                format!(
                    "{which}: unknown action \"{}\" (allow | alert | deny | kill)",
                    action.get_ref()
                ),
            )
        })?;
        rules.push(
            RuleParts {
                name: name.into_inner(),
                syscalls: names_v,
                path,
                addr,
                uid,
                flags,
                args: Vec::new(),
                arches: None,
                action: action_v,
                errno: "EPERM".into(),
                line: line_col(text, rspan.start).0,
            }
            .build(),
        );
    }

    let mut limits = Limits::default();
    if let Some(l) = raw.limits {
        let l = l.into_inner();
        let rate = |v: Option<Spanned<i64>>, key: &str| -> Result<Option<u32>, PolicyError> {
            match v {
                None => Ok(None),
                Some(v) if (1..=MAX_RATE).contains(v.get_ref()) => {
                    Ok(u32::try_from(*v.get_ref()).ok())
                }
                Some(v) => Err(err(
                    v.span(),
                    format!("limits: {key} must be 1 to {MAX_RATE} (leave it out for no limit)"),
                )),
            }
        };
        limits.fork_per_second = rate(l.fork_per_second, "fork_per_second")?;
        limits.connect_per_second = rate(l.connect_per_second, "connect_per_second")?;
    }

    Ok(Policy {
        default,
        default_errno: "EPERM".into(),
        rules,
        limits,
        file: file.to_owned(),
        source: Source::Toml,
        notes: Vec::new(),
    })
}
