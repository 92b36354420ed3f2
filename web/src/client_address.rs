//! Who the client is, when the gateway sits behind proxies: the TCP peer,
//! unless that peer is a proxy the operator trusts, in which case the
//! address the trusted proxies wrote into `X-Forwarded-For` (or RFC 7239
//! `Forwarded`) names the client.
//!
//! Only the entries the trusted proxies appended can be believed: a client
//! may send any header it likes, and a proxy appends to it rather than
//! replacing it. So the list is read from the right (the nearest hop) and
//! the first address that is not a trusted proxy is the client; anything
//! further left was written by that client and is ignored.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header the trusted proxies name the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, Traefik, HAProxy,
    /// Envoy, ingress-nginx, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!("`{other}`: x-forwarded-for or forwarded")),
        }
    }
}

/// A trusted-proxies entry that is neither an address nor a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or a CIDR (e.g. 10.0.0.0/8, fd00::/8, 127.0.0.1)")]
pub struct NotAnAddress(pub String);

/// The proxies whose forwarding headers are believed; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

impl FromStr for TrustedProxies {
    type Err = NotAnAddress;

    /// Comma-separated addresses and CIDRs; blank entries are skipped.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let networks = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(|ip| IpNet::from(ip.to_canonical())))
                    .map(|net| canonical_net(net).trunc())
                    .map_err(|_| NotAnAddress(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks, header: ForwardedHeader::default() })
    }
}

impl TrustedProxies {
    /// The same proxies, naming clients in `header`.
    pub fn reading(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// The networks, as an operator would write them (for the start log).
    pub fn describe(&self) -> String {
        self.networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; then
    /// the right-most untrusted address of the forwarding header (the
    /// left-most if every hop is trusted). A hop the header cannot name
    /// (`unknown`, an obfuscated node, garbage) stops the walk at `peer`:
    /// whoever is beyond it cannot be told apart.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let Some(hops) = hops(headers, self.header) else { return peer };
        let mut nearest_trusted = None;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => nearest_trusted = Some(*ip),
                Some(ip) => return *ip,
                None => return peer,
            }
        }
        nearest_trusted.unwrap_or(peer)
    }
}

/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) as the IPv4 ones they
/// are, since peers are compared in canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

/// Every hop the header lists, nearest last; `None` for a hop it cannot
/// name. `None` overall when the header is absent, empty or not text.
/// Several lines of the header are one list, in order (RFC 9110 5.3).
fn hops(headers: &HeaderMap, header: ForwardedHeader) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for line in headers.get_all(header.name()) {
        let line = line.to_str().ok()?;
        match header {
            ForwardedHeader::XForwardedFor => {
                hops.extend(line.split(',').map(str::trim).filter(|e| !e.is_empty()).map(node))
            }
            ForwardedHeader::Forwarded => hops.extend(forwarded_for(line)?),
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// A node as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`. `unknown` and obfuscated
/// identifiers (`_hidden`) name nobody.
fn node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok())?;
    Some(ip.to_canonical())
}

/// The `for=` of each element of a `Forwarded` line (elements split by
/// commas, pairs by semicolons, values tokens or quoted strings). An element
/// without `for=` is a hop that did not say. `None` when the line does not
/// parse (an unclosed quote).
fn forwarded_for(line: &str) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for element in split_outside_quotes(line, ',')? {
        if element.trim().is_empty() {
            continue;
        }
        let mut found = None;
        for pair in split_outside_quotes(&element, ';')? {
            let Some((name, value)) = pair.split_once('=') else { continue };
            if name.trim().eq_ignore_ascii_case("for") {
                found = node(&unquote(value.trim())?);
            }
        }
        hops.push(found);
    }
    Some(hops)
}

/// `text` split at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Option<Vec<String>> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    if quoted {
        return None;
    }
    parts.push(current);
    Some(parts)
}

/// A token as is, a quoted string without its quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else { return Some(value.to_owned()) };
    let inner = inner.strip_suffix('"')?;
    let mut text = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            text.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted(text: &str) -> TrustedProxies {
        text.parse().unwrap()
    }

    fn headers(name: &'static str, lines: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name, HeaderValue::from_static(line));
        }
        map
    }

    fn xff(lines: &[&'static str]) -> HeaderMap {
        headers("x-forwarded-for", lines)
    }

    fn forwarded(lines: &[&'static str]) -> HeaderMap {
        headers("forwarded", lines)
    }

    #[test]
    fn settings_are_addresses_and_networks() {
        let proxies = trusted(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,, ::1");
        assert_eq!(proxies.describe(), "10.0.0.0/8,192.168.1.7/32,fd00::/8,::1/128");
        assert!(proxies.trusts(ip("10.200.3.4")) && proxies.trusts(ip("192.168.1.7")));
        assert!(!proxies.trusts(ip("192.168.1.8")) && !proxies.trusts(ip("11.0.0.1")));
        assert!(proxies.trusts(ip("fd12::3")) && proxies.trusts(ip("::1")) && !proxies.trusts(ip("fe80::1")));
        assert!(proxies.trusts(ip("::ffff:10.1.2.3")), "an IPv4 peer on a dual-stack socket");
        assert!(trusted("::ffff:10.0.0.0/104").trusts(ip("10.9.9.9")), "an IPv4-mapped network");
        assert!(trusted("10.1.2.3/8").trusts(ip("10.9.9.9")), "host bits are ignored");
        assert!(trusted("").is_empty() && trusted(" , ").is_empty());
        assert_eq!("10.0.0.0/33".parse::<TrustedProxies>(), Err(NotAnAddress("10.0.0.0/33".into())));
        assert!("proxy.internal".parse::<TrustedProxies>().is_err());
        assert!("10.0.0.1:80".parse::<TrustedProxies>().is_err());
        assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        let spoofed = xff(&["203.0.113.9"]);
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &spoofed), ip("127.0.0.1"));
        assert_eq!(TrustedProxies::default().client(ip("::ffff:127.0.0.1"), &spoofed), ip("127.0.0.1"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let proxies = trusted("10.0.0.0/8");
        assert_eq!(proxies.client(ip("198.51.100.4"), &xff(&["203.0.113.9, 10.0.0.2"])), ip("198.51.100.4"));
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right() {
        let proxies = trusted("10.0.0.0/8, 2001:db8:ffff::/48");
        let peer = ip("10.0.0.1");
        assert_eq!(proxies.client(peer, &xff(&["203.0.113.9"])), ip("203.0.113.9"));
        assert_eq!(proxies.client(peer, &xff(&["203.0.113.9, 10.0.0.7"])), ip("203.0.113.9"), "two proxies");
        assert_eq!(
            proxies.client(peer, &xff(&["6.6.6.6, 203.0.113.9, 10.0.0.7"])),
            ip("203.0.113.9"),
            "what the client wrote itself is ignored"
        );
        assert_eq!(proxies.client(peer, &xff(&["6.6.6.6", "203.0.113.9, 10.0.0.7"])), ip("203.0.113.9"), "two lines");
        assert_eq!(proxies.client(peer, &xff(&["10.0.0.9, 10.0.0.7"])), ip("10.0.0.9"), "all trusted: left-most");
        assert_eq!(proxies.client(peer, &xff(&["2001:db8::5, 2001:db8:ffff::1"])), ip("2001:db8::5"));
        assert_eq!(proxies.client(peer, &xff(&["[2001:db8::5]:4711"])), ip("2001:db8::5"));
        assert_eq!(proxies.client(peer, &xff(&["203.0.113.9:51000"])), ip("203.0.113.9"), "with a port");
        assert_eq!(proxies.client(peer, &xff(&["::ffff:203.0.113.9"])), ip("203.0.113.9"));
        assert_eq!(proxies.client(peer, &HeaderMap::new()), peer, "no header: the peer");
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let proxies = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        for garbage in ["", " , ", "unknown", "not an address", "203.0.113.9, 999.1.1.1", "_hidden", "[::1"] {
            assert_eq!(proxies.client(peer, &xff(&[garbage])), peer, "{garbage:?}");
        }
        // Past the client, a malformed entry is never read.
        assert_eq!(proxies.client(peer, &xff(&["garbage, 203.0.113.9"])), ip("203.0.113.9"));
        let mut binary = HeaderMap::new();
        binary.insert("x-forwarded-for", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(proxies.client(peer, &binary), peer, "not text");
    }

    #[test]
    fn forwarded_is_read_when_chosen() {
        let proxies = trusted("10.0.0.0/8, 2001:db8:ffff::/48").reading(ForwardedHeader::Forwarded);
        let peer = ip("10.0.0.1");
        assert_eq!(proxies.client(peer, &forwarded(&["for=192.0.2.43"])), ip("192.0.2.43"));
        assert_eq!(proxies.client(peer, &forwarded(&["For=\"[2001:db8:cafe::17]:4711\""])), ip("2001:db8:cafe::17"));
        assert_eq!(
            proxies.client(peer, &forwarded(&["for=6.6.6.6, for=192.0.2.43;proto=https;by=10.0.0.1, for=10.0.0.7"])),
            ip("192.0.2.43"),
            "several elements, read from the right"
        );
        assert_eq!(
            proxies.client(peer, &forwarded(&["for=\"192.0.2.43:47011\";host=\"a;b,c\", for=10.0.0.7"])),
            ip("192.0.2.43"),
            "separators inside quotes"
        );
        assert_eq!(proxies.client(peer, &forwarded(&["for=6.6.6.6", "for=192.0.2.43"])), ip("192.0.2.43"));
        for unnamed in ["for=unknown", "for=_hidden, for=10.0.0.7", "proto=https", "for=\"unclosed", "for=\"[::1\""] {
            assert_eq!(proxies.client(peer, &forwarded(&[unnamed])), peer, "{unnamed:?}");
        }
        assert_eq!(
            proxies.client(peer, &forwarded(&["for=_hidden, for=192.0.2.43"])),
            ip("192.0.2.43"),
            "an obfuscated node beyond the client is never read"
        );
        // The header not chosen is a client's to write, so it is ignored.
        assert_eq!(proxies.client(peer, &xff(&["203.0.113.9"])), peer);
        let default = trusted("10.0.0.0/8");
        assert_eq!(default.client(peer, &forwarded(&["for=192.0.2.43"])), peer, "X-Forwarded-For by default");
    }
}
