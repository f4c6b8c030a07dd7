//! Path globs of the policy's `path` matcher.
//!
//! `*` matches any run of characters except `/`, `**` any run including
//! `/`, `?` one character except `/`, `[abc]`, `[a-z]` and `[!a-z]` one
//! character of (or not of) a set, `{a,b}` either alternative (not
//! nested; at most 256 alternatives in all), `\x` the character `x`. Matching
//! simulates the pattern as an automaton over a set of states, so its
//! cost is bounded by pattern length × path length whatever the input
//! (no backtracking blow-up on hostile paths).

/// One element of a compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// One literal character.
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    DeepStar,
    /// `[...]`: ranges, negated or not.
    Class(bool, Vec<(char, char)>),
}

/// A compiled glob: one token list per brace alternative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    text: String,
    alts: Vec<Alt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Alt {
    toks: Vec<Tok>,
}

/// Most alternatives braces may expand to.
const MAX_ALTERNATIVES: usize = 256;

/// Expand `{a,b}` groups (outside `[...]`, not escaped) into plain globs.
fn expand(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut in_class) = (0, false);
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '}' if !in_class => {
                return Err(format!(
                    "'}}' without '{{' at character {} of the path glob",
                    i + 1
                ))
            }
            '{' if !in_class => {
                let close = (i + 1..chars.len())
                    .find(|&j| chars[j] == '}' && chars[j - 1] != '\\')
                    .ok_or_else(|| {
                        format!("unclosed '{{' at character {} of the path glob", i + 1)
                    })?;
                let inner: String = chars[i + 1..close].iter().collect();
                if inner.contains('{') {
                    return Err("nested '{' in the path glob".into());
                }
                let head: String = chars[..i].iter().collect();
                let tail: String = chars[close + 1..].iter().collect();
                let mut out = Vec::new();
                for alt in inner.split(',') {
                    for rest in expand(&tail)? {
                        out.push(format!("{head}{alt}{rest}"));
                        if out.len() > MAX_ALTERNATIVES {
                            return Err(format!(
                                "braces expand to more than {MAX_ALTERNATIVES} alternatives"
                            ));
                        }
                    }
                }
                return Ok(out);
            }
            _ => {}
        }
        i += 1;
    }
    Ok(vec![text.to_owned()])
}

impl Glob {
    /// Compile `text`; the error says what is wrong and where (character index).
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("empty path glob".into());
        }
        if text.len() > 4096 {
            return Err("path glob longer than 4096 bytes".into());
        }
        let alts = expand(text)?
            .iter()
            .map(|t| Alt::new(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Glob {
            text: text.to_owned(),
            alts,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `path` match the whole glob (any alternative)?
    pub fn matches(&self, path: &str) -> bool {
        self.alts.iter().any(|a| a.matches(path))
    }
}

impl Alt {
    fn new(text: &str) -> Result<Alt, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\\' => {
                    let Some(&n) = chars.get(i + 1) else {
                        return Err("path glob ends with a lone '\\'".into());
                    };
                    toks.push(Tok::Lit(n));
                    i += 2;
                }
                '?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                '*' => {
                    if chars.get(i + 1) == Some(&'*') {
                        toks.push(Tok::DeepStar);
                        i += 2;
                        while chars.get(i) == Some(&'*') {
                            i += 1;
                        }
                    } else {
                        toks.push(Tok::Star);
                        i += 1;
                    }
                }
                '[' => {
                    let start = i;
                    i += 1;
                    let neg = matches!(chars.get(i), Some('!') | Some('^'));
                    if neg {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err(format!(
                                "unclosed '[' at character {} of the path glob",
                                start + 1
                            ));
                        };
                        if c == ']' && !first {
                            i += 1;
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            i += 1;
                            *chars.get(i).ok_or("path glob ends with a lone '\\'")?
                        } else {
                            c
                        };
                        i += 1;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']')
                        {
                            let hi = chars[i + 1];
                            if hi < lo {
                                return Err(format!("reversed range {lo}-{hi} in the path glob"));
                            }
                            ranges.push((lo, hi));
                            i += 2;
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    toks.push(Tok::Class(neg, ranges));
                }
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        Ok(Alt { toks })
    }

    fn matches(&self, path: &str) -> bool {
        let n = self.toks.len();
        // states[i]: the pattern has consumed its first i tokens.
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        cur[0] = true;
        self.close(&mut cur);
        for c in path.chars() {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for i in 0..n {
                if !cur[i] {
                    continue;
                }
                match &self.toks[i] {
                    Tok::Lit(l) if *l == c => next[i + 1] = true,
                    Tok::One if c != '/' => next[i + 1] = true,
                    Tok::Class(neg, ranges) if c != '/' => {
                        let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                        if inside != *neg {
                            next[i + 1] = true;
                        }
                    }
                    Tok::Star if c != '/' => next[i] = true,
                    Tok::DeepStar => next[i] = true,
                    _ => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut cur, &mut next);
        }
        cur[n]
    }

    /// Stars may match nothing: a state before a star also stands after it.
    fn close(&self, states: &mut [bool]) {
        for i in 0..self.toks.len() {
            if states[i] && matches!(self.toks[i], Tok::Star | Tok::DeepStar) {
                states[i + 1] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(g: &str, p: &str) -> bool {
        Glob::new(g).unwrap().matches(p)
    }

    #[test]
    fn stars_and_classes() {
        assert!(m("/etc/shadow*", "/etc/shadow"));
        assert!(m("/etc/shadow*", "/etc/shadow-"));
        assert!(!m("/etc/shadow*", "/etc/shadow/x"));
        assert!(!m("/etc/shadow*", "/etc/passwd"));
        assert!(m("/bin/*sh", "/bin/sh"));
        assert!(m("/bin/*sh", "/bin/bash"));
        assert!(!m("/bin/*sh", "/bin/sub/sh"));
        assert!(m("/home/**", "/home/a/b/c"));
        assert!(m("/home/**/key", "/home/a/b/key"));
        assert!(m("/home/**/key", "/home//key"));
        assert!(m("/dev/tty[0-9]", "/dev/tty7"));
        assert!(!m("/dev/tty[!0-9]", "/dev/tty7"));
        assert!(m("/dev/tty[!0-9]", "/dev/ttyS"));
        assert!(m("/a?c", "/abc"));
        assert!(!m("/a?c", "/a/c"));
        assert!(m("/x\\*", "/x*"));
        assert!(!m("/x\\*", "/xy"));
        assert!(m("[]]", "]"));
    }

    #[test]
    fn braces_are_alternatives() {
        assert!(m("/**/{sh,bash}", "/bin/sh"));
        assert!(m("/**/{sh,bash}", "/usr/bin/bash"));
        assert!(!m("/**/{sh,bash}", "/usr/bin/ssh"));
        assert!(m("/{etc,usr}/x{1,2}", "/usr/x2"));
        assert!(m("/a\\{b", "/a{b"));
        assert!(m("/a[{]", "/a{"));
        assert!(Glob::new("/{a,b").is_err());
        assert!(Glob::new("/a}").is_err());
        assert!(Glob::new("/{a,{b}}").is_err());
        assert!(Glob::new(&"{a,b,c,d}".repeat(5)).is_err());
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("/a[bc").is_err());
        assert!(Glob::new("/a\\").is_err());
        assert!(Glob::new("[z-a]").is_err());
    }

    #[test]
    fn hostile_input_stays_linear() {
        let g = Glob::new(&"*a".repeat(200)).unwrap();
        let p = "a".repeat(10_000) + "b";
        assert!(!g.matches(&p));
        let g = Glob::new("**/**/**/**/**/x").unwrap();
        assert!(!g.matches(&"/a".repeat(5000)));
    }
}
