//! The PROXY protocol header (HAProxy's V1 text line and V2 binary block)
//! that a front-end proxy sends before the rsync greeting when
//! `proxy protocol = yes`.
//!
//! Pure code: [`parse`] looks at the bytes read so far and either returns
//! the header and how many bytes it took, says how many more bytes it needs
//! at least, or rejects the input.  It mirrors clientname.c
//! `read_proxy_protocol_header()` (RsyncProject/rsync 3.5.0):
//!
//! * V2 starts with the 12-byte signature; its version nibble must be 2 and
//!   its payload length at most [`V2_MAX_PAYLOAD`] (stock's buffer).  `LOCAL`
//!   and `PROXY` over a family other than TCP over IPv4/IPv6 are accepted
//!   but carry no address: the socket's peer stays the client.  Any other
//!   command is rejected.
//! * V1 is one line starting `PROXY`, at most [`V1_MAX_LEN`] bytes with its
//!   CR LF: `PROXY UNKNOWN...` (accepted, no address) or
//!   `PROXY TCP4|TCP6 SRC DST SPORT DPORT`.
//! * Anything else (no header at all, e.g. a client's `@RSYNCD:` greeting)
//!   is invalid: stock then closes the connection without a word.
//!
//! Where we differ from stock (all stricter or harmless):
//! * A V2 `PROXY` block for TCP may carry TLVs after the addresses (within
//!   [`V2_MAX_PAYLOAD`]); they are ignored.  Stock rejects any TLV.
//! * V1 ports must be decimal numbers 1-65535 (stock's `strtol` also takes
//!   a sign, leading blanks and values past 65535), and addresses are parsed
//!   by the standard library's strict parsers (stock's `valid_ipaddr` lets
//!   `+1.2.3.4` through).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use protocol::error::{DecodeError, DecodeResult};

/// The V2 signature (`\r\n\r\n\0\r\nQUIT\n`).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Bytes of the fixed V2 part: signature, version/command, family, length.
pub const V2_FIXED_LEN: usize = 16;

/// Longest V2 payload accepted (stock's header buffer holds 216 bytes after
/// the fixed part: two Unix-socket paths).
pub const V2_MAX_PAYLOAD: usize = 216;

/// Longest V1 line, CR LF included (the protocol's limit, and stock's).
pub const V1_MAX_LEN: usize = 107;

/// The V1 keyword.
const V1_PREFIX: &[u8; 5] = b"PROXY";

/// V2 commands (low nibble of byte 12).
const CMD_LOCAL: u8 = 0;
const CMD_PROXY: u8 = 1;

/// V2 address families with transport (byte 13).
const FAM_TCP4: u8 = 0x11;
const FAM_TCP6: u8 = 0x21;

/// Which form of the header arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary block.
    V2,
}

/// A decoded PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// V1 or V2.
    pub version: Version,
    /// The original client's address and port, or `None` when the header
    /// carries none (V1 `UNKNOWN`, V2 `LOCAL`, V2 over UDP or Unix sockets):
    /// then the socket's peer is the client, as with stock.
    pub source: Option<SocketAddr>,
}

/// A header decoded from the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// The header.
    pub header: ProxyHeader,
    /// How many bytes of the input it took; what follows is the client's.
    pub consumed: usize,
}

fn invalid(detail: impl Into<String>) -> DecodeError {
    DecodeError::invalid("PROXY header", detail)
}

/// Decode the PROXY header at the start of `buf` (everything read from the
/// connection so far).
///
/// Returns [`DecodeError::Incomplete`] with the least number of bytes still
/// needed: reading at most that many more never reads past the end of a
/// valid header, so a caller may read exactly that much and call again.
/// Returns [`DecodeError::Invalid`] as soon as the bytes cannot start a
/// valid header, even before the whole header arrived.
pub fn parse(buf: &[u8]) -> DecodeResult<Complete> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if n < V2_SIGNATURE.len() {
            // Could still be either (neither V1 nor V2 is shorter than 12 bytes).
            return Err(DecodeError::Incomplete { needed: V2_SIGNATURE.len() - n });
        }
        return parse_v2(buf);
    }
    let k = buf.len().min(V1_PREFIX.len());
    if buf[..k] == V1_PREFIX[..k] {
        return parse_v1(buf);
    }
    Err(invalid("no PROXY protocol header"))
}

/// The V2 block (mirrors the `proxyv2sig` branch).
fn parse_v2(buf: &[u8]) -> DecodeResult<Complete> {
    if buf.len() < V2_FIXED_LEN {
        return Err(DecodeError::Incomplete { needed: V2_FIXED_LEN - buf.len() });
    }
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(invalid(format!("version {} (want 2)", ver_cmd >> 4)));
    }
    if len > V2_MAX_PAYLOAD {
        return Err(invalid(format!("payload of {len} bytes (at most {V2_MAX_PAYLOAD})")));
    }
    let total = V2_FIXED_LEN + len;
    if buf.len() < total {
        return Err(DecodeError::Incomplete { needed: total - buf.len() });
    }
    let payload = &buf[V2_FIXED_LEN..total];
    let done = |source| Ok(Complete { header: ProxyHeader { version: Version::V2, source }, consumed: total });
    match ver_cmd & 0x0f {
        CMD_LOCAL => done(None),
        CMD_PROXY => match fam {
            FAM_TCP4 => {
                let Some(a) = payload.get(..12) else {
                    return Err(invalid(format!("TCP over IPv4 with a {len}-byte address block (want 12)")));
                };
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                let port = u16::from_be_bytes([a[8], a[9]]);
                done(Some(SocketAddr::new(IpAddr::V4(ip), port)))
            }
            FAM_TCP6 => {
                let Some(a) = payload.get(..36) else {
                    return Err(invalid(format!("TCP over IPv6 with a {len}-byte address block (want 36)")));
                };
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[..16]);
                let port = u16::from_be_bytes([a[32], a[33]]);
                done(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)))
            }
            // UNSPEC, UDP, Unix sockets: stock keeps the socket's address.
            _ => done(None),
        },
        cmd => Err(invalid(format!("command {cmd}"))),
    }
}

/// C `isspace()` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The V1 line (mirrors the `"PROXY"` branch).
fn parse_v1(buf: &[u8]) -> DecodeResult<Complete> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(invalid(format!("V1 line longer than {V1_MAX_LEN} bytes")));
        }
        // The line ends with CR LF: two more bytes unless the CR is here;
        // and no valid line is shorter than stock's first 12-byte read.
        let needed = if buf.last() == Some(&b'\r') { 1 } else { 2 };
        let needed = needed.max(V2_SIGNATURE.len().saturating_sub(buf.len()));
        return Err(DecodeError::Incomplete { needed: needed.min(V1_MAX_LEN - buf.len()) });
    };
    let consumed = nl + 1;
    let line = &buf[..consumed];
    // Stock works on a C string: a NUL ends it early, and the first CR must
    // be the one right before the LF.
    if line.contains(&0) {
        return Err(invalid("NUL in V1 line"));
    }
    let cr = line.iter().position(|&b| b == b'\r');
    if cr != Some(nl.wrapping_sub(1)) || nl == 0 {
        return Err(invalid("V1 line does not end with CR LF"));
    }
    let text = &line[..nl - 1];
    let done = |source| Ok(Complete { header: ProxyHeader { version: Version::V1, source }, consumed });
    let rest = text.get(V1_PREFIX.len()..).unwrap_or_default();
    let Some((&sep, rest)) = rest.split_first() else {
        return Err(invalid("V1 line has no protocol"));
    };
    if !is_c_space(sep) {
        return Err(invalid("no blank after PROXY"));
    }
    let rest = if let Some(r) = rest.strip_prefix(b"TCP4").or_else(|| rest.strip_prefix(b"TCP6")) {
        r
    } else if rest.starts_with(b"UNKNOWN") {
        // Whatever follows UNKNOWN is ignored, as the protocol says.
        return done(None);
    } else {
        return Err(invalid("V1 protocol is not TCP4, TCP6 or UNKNOWN"));
    };
    let Some((&sep, rest)) = rest.split_first() else {
        return Err(invalid("V1 line has no addresses"));
    };
    if !is_c_space(sep) {
        return Err(invalid("no blank after the V1 protocol"));
    }
    // Four fields separated by single spaces (stock's strchr(p, ' ')).
    let mut fields = rest.splitn(4, |&b| b == b' ');
    let (Some(src), Some(dst), Some(sport), Some(dport)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(invalid("V1 line has fewer than four fields"));
    };
    let src = parse_ip(src).ok_or_else(|| invalid("bad V1 source address"))?;
    parse_ip(dst).ok_or_else(|| invalid("bad V1 destination address"))?;
    let sport = parse_port(sport).ok_or_else(|| invalid("bad V1 source port"))?;
    parse_port(dport).ok_or_else(|| invalid("bad V1 destination port"))?;
    done(Some(SocketAddr::new(src, sport)))
}

/// A numeric IPv4 or IPv6 address without scope (stock's
/// `valid_ipaddr(s, False)`).
fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A decimal port 1-65535 (stock rejects 0).
fn parse_port(b: &[u8]) -> Option<u16> {
    if b.is_empty() || b.len() > 5 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u32 = b.iter().fold(0, |v, &d| v * 10 + u32::from(d - b'0'));
    u16::try_from(v).ok().filter(|&p| p != 0)
}

/// Encode a V1 line for `source` -> `dest` (for tests and tools; a proxy
/// would send this).
pub fn encode_v1(source: SocketAddr, dest: SocketAddr, out: &mut Vec<u8>) {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    out.extend_from_slice(format!("PROXY {proto} {} {} {} {}\r\n", source.ip(), dest.ip(), source.port(), dest.port()).as_bytes());
}

/// Encode a V2 `PROXY` block for TCP `source` -> `dest` (both of one family).
pub fn encode_v2(source: SocketAddr, dest: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x20 | CMD_PROXY);
    match (source.ip(), dest.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(FAM_TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(FAM_TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&dest.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> Complete {
        match parse(buf) {
            Ok(c) => c,
            Err(e) => panic!("{:?} -> {e}", String::from_utf8_lossy(buf)),
        }
    }

    fn is_invalid(buf: &[u8]) -> bool {
        matches!(parse(buf), Err(DecodeError::Invalid { .. }))
    }

    /// Feed `buf` the way the server does: read exactly what `parse` asks
    /// for, never more.  Returns the result and the bytes handed over.
    fn drip(buf: &[u8]) -> (DecodeResult<Complete>, usize) {
        let mut have = 0;
        loop {
            match parse(&buf[..have]) {
                Err(DecodeError::Incomplete { needed }) => {
                    assert!(needed > 0);
                    if have == buf.len() {
                        return (Err(DecodeError::Incomplete { needed }), have);
                    }
                    have = (have + needed).min(buf.len());
                }
                r => return (r, have),
            }
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 873\r\n";
        let c = complete(&[&line[..], b"@RSYNCD: 32.0\n"].concat());
        assert_eq!(c.consumed, line.len());
        assert_eq!(c.header, ProxyHeader { version: Version::V1, source: Some(sa("192.0.2.7:51234")) });
        let c = complete(b"PROXY TCP6 2001:db8::5 2001:db8::1 4000 873\r\n");
        assert_eq!(c.header.source, Some(sa("[2001:db8::5]:4000")));
        assert_eq!(c.consumed, b"PROXY TCP6 2001:db8::5 2001:db8::1 4000 873\r\n".len());
        // Like stock, the protocol word does not have to match the family.
        assert_eq!(complete(b"PROXY TCP4 2001:db8::5 1.2.3.4 1 2\r\n").header.source, Some(sa("[2001:db8::5]:1")));
    }

    #[test]
    fn v1_unknown_carries_no_address() {
        for l in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", b"PROXY UNKNOWNjunk\r\n"] {
            let c = complete(l);
            assert_eq!(c.header, ProxyHeader { version: Version::V1, source: None });
            assert_eq!(c.consumed, l.len());
        }
        // A tab is a blank to C isspace().
        assert!(complete(b"PROXY\tUNKNOWN\r\n").header.source.is_none());
    }

    #[test]
    fn v1_needs_the_whole_line_and_never_over_reads() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 873\r\n";
        for cut in 0..line.len() {
            assert!(parse(&line[..cut]).unwrap_err().is_incomplete(), "cut at {cut}");
        }
        let mut with_tail = line.to_vec();
        with_tail.extend_from_slice(b"@RSYNCD: 32.0\n");
        let (r, fed) = drip(&with_tail);
        assert_eq!(r.unwrap().consumed, line.len());
        assert_eq!(fed, line.len(), "read past the header");
    }

    #[test]
    fn v1_line_length_is_bounded() {
        // 107 bytes with CR LF is the longest allowed line.
        let mut ok = b"PROXY UNKNOWN ".to_vec();
        ok.resize(V1_MAX_LEN - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(ok.len(), V1_MAX_LEN);
        assert_eq!(complete(&ok).consumed, V1_MAX_LEN);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN - 1, b'x');
        long.extend_from_slice(b"\r\n");
        assert!(is_invalid(&long));
        // Rejected once 107 bytes have come without a LF, whatever follows.
        let mut endless = [&b"PROXY "[..], &[b'9'; 10_000]].concat();
        assert!(is_invalid(&endless));
        let (r, fed) = drip(&endless);
        assert!(matches!(r, Err(DecodeError::Invalid { .. })));
        assert_eq!(fed, V1_MAX_LEN);
        endless.truncate(V1_MAX_LEN - 1);
        assert!(parse(&endless).unwrap_err().is_incomplete());
    }

    #[test]
    fn v1_malformed_lines() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",     // no CR
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", // CR before the end
            b"PROXY TCP4 1.2.\r3.4 5.6.7.8 1 2\r\n", // bare CR inside
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", // NUL
            b"PROXY\0TCP4 1.2.3.4 5.6.7.8 1 2\r\n",  // NUL
            b"PROXY\r\n",
            b"PROXY \r\n",
            b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4\r\n",
            b"PROXY TCP41.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",     // three fields
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", // five fields
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",  // empty source
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n",
            b"PROXY TCP4 example.org 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", // no scope ids
            b"PROXY TCP4 1.2.3.4 5.6.7.8 0 2\r\n",  // port 0
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
            b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n",
        ];
        for l in bad {
            assert!(is_invalid(l), "accepted {:?}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn no_header_is_rejected_at_the_first_wrong_byte() {
        assert!(is_invalid(b"@"));
        assert!(is_invalid(b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n"));
        assert!(is_invalid(b"PROXX"));
        assert!(is_invalid(b"proxy TCP4"));
        assert!(is_invalid(b"\r\n\r\n\0\r\nQUIT\r"));
        assert!(is_invalid(b"\r\nX"));
        // Still undecided: a prefix of either form.
        assert_eq!(parse(b""), Err(DecodeError::Incomplete { needed: 12 }));
        assert_eq!(parse(b"PRO"), Err(DecodeError::Incomplete { needed: 9 }));
        assert_eq!(parse(b"\r\n\r\n\0"), Err(DecodeError::Incomplete { needed: 7 }));
    }

    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(ver_cmd);
        v.push(fam);
        v.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn v2_tcp4_and_tcp6() {
        let mut b = Vec::new();
        encode_v2(sa("198.51.100.9:40000"), sa("10.0.0.1:873"), &mut b);
        assert_eq!(b.len(), 28);
        b.extend_from_slice(b"@RSYNCD: 32.0\n");
        let c = complete(&b);
        assert_eq!(c, Complete { header: ProxyHeader { version: Version::V2, source: Some(sa("198.51.100.9:40000")) }, consumed: 28 });
        let mut b = Vec::new();
        encode_v2(sa("[2001:db8::42]:5"), sa("[2001:db8::1]:873"), &mut b);
        assert_eq!(b.len(), 52);
        let c = complete(&b);
        assert_eq!(c.header.source, Some(sa("[2001:db8::42]:5")));
        assert_eq!(c.consumed, 52);
    }

    #[test]
    fn v2_byte_by_byte_and_exact_reads() {
        let mut b = Vec::new();
        encode_v2(sa("198.51.100.9:40000"), sa("10.0.0.1:873"), &mut b);
        for cut in 0..b.len() {
            assert!(parse(&b[..cut]).unwrap_err().is_incomplete(), "cut at {cut}");
        }
        let hdr_len = b.len();
        b.extend_from_slice(b"@RSYNCD: 32.0\n");
        let (r, fed) = drip(&b);
        assert_eq!(r.unwrap().consumed, hdr_len);
        assert_eq!(fed, hdr_len);
    }

    #[test]
    fn v2_local_and_other_families_keep_the_socket_address() {
        // LOCAL (health checks), with or without a payload.
        let c = complete(&v2(0x20, 0x00, &[]));
        assert_eq!(c, Complete { header: ProxyHeader { version: Version::V2, source: None }, consumed: 16 });
        assert_eq!(complete(&v2(0x20, 0x11, &[1; 12])).header.source, None);
        // UDP over IPv4, Unix stream, UNSPEC.
        for fam in [0x12, 0x31, 0x00, 0x22, 0x32] {
            assert_eq!(complete(&v2(0x21, fam, &[9; 12])).header.source, None, "family {fam:#x}");
        }
    }

    #[test]
    fn v2_tlvs_after_the_addresses_are_ignored() {
        let mut p = vec![192, 0, 2, 1, 10, 0, 0, 1, 0x12, 0x34, 0x03, 0x69];
        p.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]); // PP2_TYPE_NOOP
        let b = v2(0x21, 0x11, &p);
        let c = complete(&b);
        assert_eq!(c.header.source, Some(sa("192.0.2.1:4660")));
        assert_eq!(c.consumed, b.len());
    }

    #[test]
    fn v2_hostile_blocks() {
        // Wrong version nibble, unknown command.
        assert!(is_invalid(&v2(0x11, 0x11, &[0; 12])));
        assert!(is_invalid(&v2(0x31, 0x11, &[0; 12])));
        assert!(is_invalid(&v2(0x22, 0x11, &[0; 12])));
        assert!(is_invalid(&v2(0x2f, 0x11, &[0; 12])));
        // Address block too short for its family.
        assert!(is_invalid(&v2(0x21, 0x11, &[0; 11])));
        assert!(is_invalid(&v2(0x21, 0x21, &[0; 35])));
        assert!(is_invalid(&v2(0x21, 0x21, &[0; 12])));
        // Length past the limit is refused from the fixed part alone,
        // before waiting for the payload.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(is_invalid(&big));
        let mut edge = V2_SIGNATURE.to_vec();
        edge.extend_from_slice(&[0x21, 0x11]);
        edge.extend_from_slice(&u16::try_from(V2_MAX_PAYLOAD + 1).unwrap().to_be_bytes());
        assert!(is_invalid(&edge));
        // The largest allowed payload is waited for, then accepted.
        let max = v2(0x21, 0x11, &[7; V2_MAX_PAYLOAD]);
        assert_eq!(parse(&max[..20]), Err(DecodeError::Incomplete { needed: max.len() - 20 }));
        assert_eq!(complete(&max).consumed, V2_FIXED_LEN + V2_MAX_PAYLOAD);
    }

    #[test]
    fn v1_encoder_round_trips() {
        let mut b = Vec::new();
        encode_v1(sa("[2001:db8::9]:999"), sa("[::1]:873"), &mut b);
        assert_eq!(b, b"PROXY TCP6 2001:db8::9 ::1 999 873\r\n");
        assert_eq!(complete(&b).header.source, Some(sa("[2001:db8::9]:999")));
    }

    /// Every input up to 3 bytes, and random-ish longer ones, decode
    /// without panicking and never claim more bytes than they were given.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet = [b'P', b'R', b'O', b'X', b'Y', b' ', b'\r', b'\n', 0, b'1', b'.', b':', b'T', b'C', b'4'];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let _ = parse(&[a, b, c]);
                }
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prefixes: [&[u8]; 3] = [b"PROXY TCP4 ", &V2_SIGNATURE, b"PROXY "];
        for i in 0..20_000 {
            let mut v = prefixes[i % 3].to_vec();
            let len = (next() % 300) as usize;
            for _ in 0..len {
                v.push(if next() % 4 == 0 { alphabet[(next() % 15) as usize] } else { next() as u8 });
            }
            if let Ok(c) = parse(&v) {
                assert!(c.consumed <= v.len());
            }
        }
    }
}
