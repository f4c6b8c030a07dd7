//! The policy's `addr` matcher: `CIDR[:port]`, `!` in front negates.
//!
//! ```text
//! 127.0.0.0/8          any port in 127/8
//! 10.1.2.3:53          one address, one port (a bare address is a /32 or /128)
//! 0.0.0.0/0:25         port 25 anywhere (IPv4)
//! ::1                  IPv6 loopback, any port
//! [fd00::]/8:443       IPv6 with a port: brackets around the address
//! !127.0.0.0/8         any IPv4 or IPv6 address outside 127/8
//! ```
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are matched as the IPv4
//! address they carry, so an IPv6 socket cannot step around an IPv4 rule.
//! A negated matcher matches every inet address (of either family) that
//! the positive one does not; it never matches a call without an inet
//! address (AF_UNIX, AF_NETLINK, a `sendto` on a connected socket).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A compiled `addr` matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrMatch {
    text: String,
    negate: bool,
    net: IpAddr,
    prefix: u8,
    port: Option<u16>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl AddrMatch {
    /// Parse `text`; the error says what is wrong.
    pub fn new(text: &str) -> Result<AddrMatch, String> {
        let (negate, rest) = match text.strip_prefix('!') {
            Some(r) => (true, r.trim_start()),
            None => (false, text),
        };
        let bad = |why: &str| {
            format!("addr \"{text}\": {why} (expected CIDR[:port], e.g. \"10.0.0.0/8\", \"127.0.0.1:53\", \"[::1]/128:443\", \"!127.0.0.0/8\")")
        };
        // Split the port off: "[v6]..." or "v4...:port"; a bare IPv6
        // (several ':') has no port.
        let (cidr, port) = if let Some(r) = rest.strip_prefix('[') {
            let Some((inside, after)) = r.split_once(']') else {
                return Err(bad("'[' without ']'"));
            };
            // "[addr/prefix]:port" or "[addr]/prefix:port"
            let (pfx, port) = match after.split_once(':') {
                Some((p, port)) => (p, Some(port)),
                None => (after, None),
            };
            (format!("{inside}{pfx}"), port)
        } else if rest.matches(':').count() == 1 {
            let (c, p) = rest.split_once(':').unwrap_or((rest, ""));
            (c.to_owned(), Some(p))
        } else {
            (rest.to_owned(), None)
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("bad port '{p}'")))?,
            ),
        };
        let (ip, prefix) = match cidr.split_once('/') {
            Some((ip, pfx)) => (ip, Some(pfx)),
            None => (cidr.as_str(), None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| bad(&format!("'{ip}' is not an IPv4 or IPv6 address")))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(bad(&format!("bad prefix length '/{p}' (0–{max})"))),
            },
        };
        // A mapped IPv6 network is the IPv4 network it carries.
        let (net, prefix) = match ip {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical(ip), prefix - 96)
            }
            _ => (ip, prefix),
        };
        Ok(AddrMatch {
            text: text.to_owned(),
            negate,
            net: masked(net, prefix),
            prefix,
            port,
        })
    }

    /// The matcher as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the socket address match?
    pub fn matches(&self, addr: &SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        let inside = ip.is_ipv4() == self.net.is_ipv4()
            && masked(ip, self.prefix) == self.net
            && self.port.is_none_or(|p| p == addr.port());
        inside != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, a: &str) -> bool {
        AddrMatch::new(pat).unwrap().matches(&a.parse().unwrap())
    }

    #[test]
    fn cidrs_ports_and_negation() {
        assert!(m("127.0.0.0/8", "127.1.2.3:80"));
        assert!(!m("127.0.0.0/8", "128.0.0.1:80"));
        assert!(m("!127.0.0.0/8", "8.8.8.8:53"));
        assert!(!m("!127.0.0.0/8", "127.0.0.1:53"));
        assert!(m("!127.0.0.0/8", "[2001:db8::1]:53"));
        assert!(m("10.1.2.3:53", "10.1.2.3:53"));
        assert!(!m("10.1.2.3:53", "10.1.2.3:54"));
        assert!(m("0.0.0.0/0:25", "1.2.3.4:25"));
        assert!(!m("0.0.0.0/0:25", "[::2]:25"));
        assert!(m("::1", "[::1]:9"));
        assert!(m("[fd00::]/8:443", "[fdab::1]:443"));
        assert!(!m("[fd00::]/8:443", "[fdab::1]:444"));
        assert!(m("[fd00::/8]:443", "[fdab::1]:443"));
        assert!(m("::/0", "[fe80::1]:1"));
    }

    #[test]
    fn mapped_ipv6_is_its_ipv4() {
        assert!(m("10.0.0.0/8", "[::ffff:10.0.0.1]:80"));
        assert!(!m("!127.0.0.0/8", "[::ffff:127.0.0.1]:80"));
        assert!(m("::ffff:10.0.0.0/104", "10.9.9.9:1"));
    }

    #[test]
    fn bad_matchers_are_refused() {
        for bad in [
            "",
            "!",
            "10.0.0.0/33",
            "1.2.3.4:99999",
            "1.2.3:80",
            "[::1",
            "::1/129",
            "x",
            "10.0.0.0/8:",
        ] {
            assert!(AddrMatch::new(bad).is_err(), "{bad}");
        }
    }
}
