//! The text phase: `@RSYNCD:` greetings, module requests, listings and
//! `@ERROR` lines. Mirrors `clientserver.c: exchange_protocols()`,
//! `start_daemon()`, `send_listing()` and `compat.c: output_daemon_greeting()`.

use crate::error::{DecodeError, DecodeResult};

/// Highest protocol we announce. Protocol 32 is byte-identical to 31.
pub const OUR_PROTOCOL: u8 = 32;
/// Our subprotocol (0 for every released rsync).
pub const OUR_SUBPROTOCOL: u8 = 0;
/// Lowest protocol we serve.
pub const MIN_PROTOCOL: u8 = 27;
/// Highest protocol number a peer may announce (`compat.c: MAX_PROTOCOL_VERSION`).
pub const MAX_PEER_PROTOCOL: i32 = 40;
/// Digests we offer for daemon authentication, strongest first, as a
/// 3.2.7+ daemon built with OpenSSL lists them.
pub const AUTH_DIGESTS: &str = "sha512 sha256 sha1 md5 md4";

/// Our greeting line, including the trailing newline.
pub fn server_greeting() -> Vec<u8> {
    format!("@RSYNCD: {OUR_PROTOCOL}.{OUR_SUBPROTOCOL} {AUTH_DIGESTS}\n").into_bytes()
}

/// A parsed client greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGreeting {
    /// Announced protocol version.
    pub protocol: i32,
    /// Announced subprotocol, if the `.sub` part was present.
    pub subprotocol: Option<i32>,
    /// Auth digest names the client offers (3.2.7+), in its preference order.
    pub digests: Option<Vec<String>>,
}

/// Why a greeting was rejected: `message` is the exact `@ERROR: ...` text
/// (without the `@ERROR: ` prefix and newline) stock sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GreetingError {
    /// Text after `@ERROR: `.
    pub message: String,
}

fn parse_leading_int(s: &[u8]) -> Option<(i32, usize)> {
    let mut i = 0;
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v * 10 + i64::from(s[i] - b'0');
        if v > i64::from(i32::MAX) {
            return None;
        }
        i += 1;
    }
    if i == 0 {
        None
    } else {
        Some((v as i32, i))
    }
}

/// Parse the client's greeting line (without the newline; a trailing `\r`
/// is tolerated). Mirrors the checks in `exchange_protocols()`.
pub fn parse_client_greeting(line: &[u8]) -> Result<ClientGreeting, GreetingError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = String::from_utf8_lossy(line).into_owned();
    let startup = || GreetingError { message: "protocol startup error".into() };
    let rest = line.strip_prefix(b"@RSYNCD: ").ok_or_else(startup)?;
    let (protocol, n) = parse_leading_int(rest).ok_or_else(startup)?;
    let mut rest = &rest[n..];
    let mut subprotocol = None;
    if let Some(r) = rest.strip_prefix(b".") {
        if let Some((sub, n)) = parse_leading_int(r) {
            subprotocol = Some(sub);
            rest = &r[n..];
        }
    }
    let digests = match rest.strip_prefix(b" ") {
        Some(list) if !list.is_empty() => Some(
            list.split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect(),
        ),
        _ => None,
    };
    if protocol >= 30 && subprotocol.is_none() {
        return Err(GreetingError { message: format!("your client omitted the subprotocol value: {shown}") });
    }
    if protocol > 31 && digests.is_none() {
        return Err(GreetingError { message: format!("your client omitted the digest name list: {shown}") });
    }
    Ok(ClientGreeting { protocol, subprotocol, digests })
}

/// Negotiate the protocol version (`exchange_protocols()`): with released
/// clients this is `min(ours, theirs)`. Returns an error text for versions
/// we do not serve.
pub fn negotiate_protocol(g: &ClientGreeting) -> Result<u8, GreetingError> {
    let ours = i32::from(OUR_PROTOCOL);
    let their_sub = g.subprotocol.unwrap_or(0);
    let mut chosen = ours;
    if ours > g.protocol {
        chosen = g.protocol;
        if their_sub != 0 {
            chosen -= 1;
        }
    } else if ours == g.protocol && their_sub != i32::from(OUR_SUBPROTOCOL) {
        chosen = ours - 1;
    }
    if g.protocol > MAX_PEER_PROTOCOL || chosen < i32::from(MIN_PROTOCOL) {
        return Err(GreetingError {
            message: format!(
                "protocol version mismatch -- client speaks {}, this server speaks {}-{}",
                g.protocol, MIN_PROTOCOL, OUR_PROTOCOL
            ),
        });
    }
    Ok(chosen as u8)
}

/// What the client asked for with its module line (`start_daemon()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRequest {
    /// Empty line or `#list`: list the modules.
    List,
    /// A module name.
    Module(Vec<u8>),
    /// `#early_input=N`: N raw bytes follow before the real module line.
    EarlyInput(usize),
    /// Any other `#...` command: answered with `@ERROR: Unknown command '...'`.
    UnknownCommand(Vec<u8>),
}

/// Largest early-input block stock accepts (`BIGPATHBUFLEN`-ish, 5120).
pub const MAX_EARLY_INPUT: usize = 5120;

/// Classify a module line (newline already removed).
pub fn parse_module_line(line: &[u8]) -> Result<ModuleRequest, GreetingError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || line == b"#list" {
        return Ok(ModuleRequest::List);
    }
    if let Some(n) = line.strip_prefix(b"#early_input=") {
        return match parse_leading_int(n) {
            Some((v, used)) if used == n.len() && v > 0 && (v as usize) <= MAX_EARLY_INPUT => {
                Ok(ModuleRequest::EarlyInput(v as usize))
            }
            _ => Err(GreetingError { message: "invalid early_input length".into() }),
        };
    }
    if line.starts_with(b"#") {
        return Ok(ModuleRequest::UnknownCommand(line.to_vec()));
    }
    Ok(ModuleRequest::Module(line.to_vec()))
}

/// One module line of a listing (`send_listing()`: `%-15s\t%s\n`).
pub fn listing_line(name: &str, comment: &str) -> Vec<u8> {
    format!("{name:<15}\t{comment}\n").into_bytes()
}

/// `@RSYNCD: OK\n`.
pub const OK_LINE: &[u8] = b"@RSYNCD: OK\n";
/// `@RSYNCD: EXIT\n`.
pub const EXIT_LINE: &[u8] = b"@RSYNCD: EXIT\n";

/// An `@ERROR: <text>\n` line.
pub fn error_line(text: &str) -> Vec<u8> {
    format!("@ERROR: {text}\n").into_bytes()
}

/// `@RSYNCD: AUTHREQD <challenge>\n`.
pub fn authreqd_line(challenge: &str) -> Vec<u8> {
    format!("@RSYNCD: AUTHREQD {challenge}\n").into_bytes()
}

/// Find one complete line (terminated by `\n`) at the start of `buf`.
/// Returns the line without its newline and the bytes consumed. A NUL
/// byte or a line longer than `max_len` is invalid (`read_line_old()`).
pub fn take_line(buf: &[u8], max_len: usize) -> DecodeResult<(&[u8], usize)> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i > max_len {
                return Err(DecodeError::invalid("line", format!("line too long ({i} > {max_len})")));
            }
            let line = &buf[..i];
            if line.contains(&0) {
                return Err(DecodeError::invalid("line", "NUL byte in line"));
            }
            Ok((line, i + 1))
        }
        None if buf.len() > max_len => Err(DecodeError::invalid("line", format!("line too long (> {max_len})"))),
        None if buf.contains(&0) => Err(DecodeError::invalid("line", "NUL byte in line")),
        None => Err(DecodeError::Incomplete { needed: 1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_bytes() {
        assert_eq!(server_greeting(), b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n");
    }

    #[test]
    fn parses_modern_and_old_greetings() {
        let g = parse_client_greeting(b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4").unwrap();
        assert_eq!(g.protocol, 32);
        assert_eq!(g.digests.as_ref().unwrap()[0], "sha512");
        assert_eq!(negotiate_protocol(&g).unwrap(), 32);
        let g = parse_client_greeting(b"@RSYNCD: 29").unwrap();
        assert_eq!((g.protocol, g.subprotocol, g.digests.clone()), (29, None, None));
        assert_eq!(negotiate_protocol(&g).unwrap(), 29);
        let g = parse_client_greeting(b"@RSYNCD: 31.0\r").unwrap();
        assert_eq!(negotiate_protocol(&g).unwrap(), 31);
    }

    #[test]
    fn stock_error_texts() {
        assert_eq!(parse_client_greeting(b"GET / HTTP/1.1").unwrap_err().message, "protocol startup error");
        assert_eq!(
            parse_client_greeting(b"@RSYNCD: 30").unwrap_err().message,
            "your client omitted the subprotocol value: @RSYNCD: 30"
        );
        assert_eq!(
            parse_client_greeting(b"@RSYNCD: 32.0").unwrap_err().message,
            "your client omitted the digest name list: @RSYNCD: 32.0"
        );
        let g = parse_client_greeting(b"@RSYNCD: 26").unwrap();
        assert!(negotiate_protocol(&g).is_err());
        assert!(parse_client_greeting(b"@RSYNCD: 99999999999999").is_err());
    }

    #[test]
    fn module_lines() {
        assert_eq!(parse_module_line(b"").unwrap(), ModuleRequest::List);
        assert_eq!(parse_module_line(b"#list").unwrap(), ModuleRequest::List);
        assert_eq!(parse_module_line(b"mod").unwrap(), ModuleRequest::Module(b"mod".to_vec()));
        assert_eq!(parse_module_line(b"#early_input=10").unwrap(), ModuleRequest::EarlyInput(10));
        assert!(parse_module_line(b"#early_input=99999").is_err());
        assert_eq!(parse_module_line(b"#foo").unwrap(), ModuleRequest::UnknownCommand(b"#foo".to_vec()));
    }

    #[test]
    fn listing_format() {
        assert_eq!(listing_line("mod", "test module"), b"mod            \ttest module\n");
    }

    #[test]
    fn line_taking() {
        assert_eq!(take_line(b"abc\nrest", 10).unwrap(), (&b"abc"[..], 4));
        assert!(take_line(b"abc", 10).unwrap_err().is_incomplete());
        assert!(take_line(b"abcdefghijklmnop", 10).is_err());
        assert!(take_line(b"a\0b\n", 10).is_err());
    }
}
