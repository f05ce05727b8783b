//! A small hand-driven rsync client for hostile-input tests: it speaks the
//! daemon protocol (31, no incremental recursion, no negotiation) up to the
//! file list with the protocol crate's own codecs, then lets a test send any
//! crafted bytes (requests, sum heads, frames) and collect what the daemon
//! answers until it closes the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use protocol::error::DecodeError;
use protocol::flist::decode::{FlistDecoder, OwnedEntry};
use protocol::flist::encode::FlistOptions;
use protocol::mux::{decode_header, put_frame, MsgCode, MAX_FRAME_PAYLOAD};
use protocol::ndx::NdxState;
use protocol::wire::{put_i32, put_u16, Reader};

/// The protocol version the client announces.
pub const CLIENT_PROTOCOL: u8 = 31;

/// `ITEM_TRANSFER`: the client wants the file's data.
pub const ITEM_TRANSFER: u16 = 0x8000;

/// Everything a session produced after the point a test took over.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// Text of every non-data message (MSG_ERROR, MSG_INFO, ...), concatenated.
    pub messages: String,
    /// The demultiplexed data stream.
    pub data: Vec<u8>,
    /// The MSG_ERROR_EXIT code, if one came (`Some(None)`: an empty one).
    pub error_exit: Option<Option<i32>>,
    /// The daemon closed the connection (EOF or reset) rather than the
    /// client giving up after its deadline.
    pub closed: bool,
}

/// A client session that has read the file list and waits for the test.
#[derive(Debug)]
pub struct HostileClient {
    stream: TcpStream,
    /// Our side's ndx encoder state.
    pub ndx: NdxState,
    /// The decoded file list, in index order (index = position).
    pub entries: Vec<OwnedEntry>,
    /// The compat flags the daemon sent.
    pub compat: i32,
    /// The checksum seed the daemon sent.
    pub seed: i32,
    /// Non-data message text received so far.
    pub messages: String,
    /// Data bytes read past the file list (not yet consumed).
    pub pending: Vec<u8>,
}

/// The text phase failed or the daemon said `@ERROR`.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b)? == 0 {
            break;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > 65536 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn decode_varint(s: &mut TcpStream) -> std::io::Result<i32> {
    // Read byte by byte until the Reader decodes a whole varint.
    let mut buf = Vec::new();
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        buf.push(b[0]);
        match Reader::new(&buf).varint() {
            Ok(v) => return Ok(v),
            Err(DecodeError::Incomplete { .. }) if buf.len() < 5 => continue,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// Opens a TCP connection to the daemon with a read deadline.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to daemon");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    s
}

/// Greeting and module line; returns the stream after `@RSYNCD: OK`.
pub fn open_module(port: u16, module: &str) -> Result<TcpStream, SetupError> {
    let mut s = connect(port);
    let hello = read_line(&mut s).map_err(|e| SetupError(e.to_string()))?;
    if !hello.starts_with("@RSYNCD: ") {
        return Err(SetupError(format!("bad greeting {hello:?}")));
    }
    s.write_all(format!("@RSYNCD: {CLIENT_PROTOCOL}.0\n{module}\n").as_bytes()).map_err(|e| SetupError(e.to_string()))?;
    loop {
        let l = read_line(&mut s).map_err(|e| SetupError(e.to_string()))?;
        if l == "@RSYNCD: OK" {
            return Ok(s);
        }
        if l.starts_with("@ERROR") || l.starts_with("@RSYNCD: EXIT") || l.is_empty() {
            return Err(SetupError(l));
        }
    }
}

/// The server argument vector in the protocol >= 30 form: each argument
/// NUL-terminated, an empty argument ends the list.
pub fn encode_args(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a);
        out.push(0);
    }
    out.push(0);
    out
}

/// A pull's default server arguments for `paths` (e.g. `mod/`): `-r`, no
/// incremental recursion, no checksum negotiation.
pub fn pull_args(paths: &[&str]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![b"--server".to_vec(), b"--sender".to_vec(), b"-re.fxC".to_vec(), b".".to_vec()];
    v.extend(paths.iter().map(|p| p.as_bytes().to_vec()));
    v
}

/// Reads whatever the daemon still sends until it closes the connection
/// (EOF or reset) or `limit` passes, demultiplexing frames.
pub fn drain(mut s: TcpStream, limit: Duration) -> Ending {
    use std::io::ErrorKind;
    let mut e = Ending::default();
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_secs(2))));
        match s.read(&mut chunk) {
            Ok(0) => {
                e.closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(er) if matches!(er.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => {
                e.closed = true;
                break;
            }
        }
        split_frames(&mut buf, &mut e);
    }
    split_frames(&mut buf, &mut e);
    e
}

fn split_frames(buf: &mut Vec<u8>, e: &mut Ending) {
    let mut pos = 0;
    while buf.len() - pos >= 4 {
        let Ok(h) = decode_header(&buf[pos..pos + 4], MAX_FRAME_PAYLOAD) else {
            // Not multiplexed (e.g. an @ERROR line): keep it as text.
            e.messages.push_str(&String::from_utf8_lossy(&buf[pos..]));
            pos = buf.len();
            break;
        };
        if buf.len() - pos - 4 < h.len {
            break;
        }
        let p = &buf[pos + 4..pos + 4 + h.len];
        match h.code {
            MsgCode::Data => e.data.extend_from_slice(p),
            MsgCode::ErrorExit => {
                e.error_exit = Some((p.len() >= 4).then(|| i32::from_le_bytes([p[0], p[1], p[2], p[3]])));
            }
            MsgCode::IoError | MsgCode::IoTimeout | MsgCode::NoSend | MsgCode::Success => {}
            _ => e.messages.push_str(&String::from_utf8_lossy(p)),
        }
        pos += 4 + h.len;
    }
    buf.drain(..pos);
}

impl HostileClient {
    /// Connects, selects `module`, sends `args` (see [`pull_args`]) and
    /// an empty filter list, then reads the whole file list.
    pub fn pull(port: u16, module: &str, args: &[Vec<u8>]) -> Result<HostileClient, SetupError> {
        let mut s = open_module(port, module)?;
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        s.write_all(&encode_args(&refs)).map_err(|e| SetupError(e.to_string()))?;
        let compat = decode_varint(&mut s).map_err(|e| SetupError(format!("compat flags: {e}")))?;
        let mut seed = [0u8; 4];
        s.read_exact(&mut seed).map_err(|e| SetupError(format!("seed: {e}")))?;
        let mut c = HostileClient {
            stream: s,
            ndx: NdxState::new(CLIENT_PROTOCOL),
            entries: Vec::new(),
            compat,
            seed: i32::from_le_bytes(seed),
            messages: String::new(),
            pending: Vec::new(),
        };
        let mut filters = Vec::new();
        put_i32(&mut filters, 0);
        c.send_data(&filters);
        c.read_file_list()?;
        Ok(c)
    }

    fn read_file_list(&mut self) -> Result<(), SetupError> {
        let opts = FlistOptions {
            protocol: CLIENT_PROTOCOL,
            varint_flags: false,
            preserve_uid: false,
            preserve_gid: false,
            preserve_links: false,
            preserve_devices: false,
            preserve_specials: false,
            preserve_hard_links: false,
            checksum_len: None,
            inc_recurse: false,
            id0_names: false,
            numeric_ids: false,
            safe_flist: true,
        };
        let mut dec = FlistDecoder::new(opts);
        let mut data = Vec::new();
        let mut pos = 0usize;
        let mut in_list = true;
        loop {
            let mut r = Reader::new(&data[pos..]);
            let was_trailer = !in_list;
            let step = if in_list {
                dec.decode_entry(&mut r).map(|e| {
                    if e.is_none() {
                        in_list = false;
                    }
                })
            } else {
                dec.decode_trailer(&mut r).map(|_| ())
            };
            match step {
                Ok(()) => {
                    pos += r.consumed();
                    if was_trailer {
                        break;
                    }
                }
                Err(DecodeError::Incomplete { .. }) => {
                    let more =
                        self.read_frame().map_err(|e| SetupError(format!("reading the file list: {e}; messages: {}", self.messages)))?;
                    data.extend_from_slice(&more);
                }
                Err(e) => return Err(SetupError(format!("bad file list: {e}"))),
            }
        }
        // The trailer was decoded: keep the rest for the test.
        self.pending = data[pos..].to_vec();
        let mut entries = dec.entries().to_vec();
        // The list is sorted by the sender already; indexes follow wire order.
        entries.shrink_to_fit();
        self.entries = entries;
        Ok(())
    }

    /// Reads one frame; returns its data payload (empty for messages).
    fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut h = [0u8; 4];
        self.stream.read_exact(&mut h)?;
        let hdr = decode_header(&h, MAX_FRAME_PAYLOAD).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut p = vec![0u8; hdr.len];
        self.stream.read_exact(&mut p)?;
        if hdr.code == MsgCode::Data {
            Ok(p)
        } else {
            if !matches!(hdr.code, MsgCode::IoError | MsgCode::IoTimeout) {
                self.messages.push_str(&String::from_utf8_lossy(&p));
            }
            Ok(Vec::new())
        }
    }

    /// The index of the entry named `name`.
    pub fn index_of(&self, name: &[u8]) -> i32 {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .unwrap_or_else(|| panic!("{:?} not in the list {:?}", String::from_utf8_lossy(name), self.names())) as i32
    }

    /// The names in the list, for messages.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| String::from_utf8_lossy(&e.name).into_owned()).collect()
    }

    /// Sends `payload` as MSG_DATA frames.
    pub fn send_data(&mut self, payload: &[u8]) {
        let mut out = Vec::new();
        put_frame(&mut out, MsgCode::Data, payload);
        self.send_raw(&out);
    }

    /// Sends bytes exactly as given (crafted frames). Write errors (the
    /// daemon already closed) are ignored.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Encodes `ndx` with this session's ndx state.
    pub fn ndx_bytes(&mut self, ndx: i32) -> Vec<u8> {
        let mut out = Vec::new();
        self.ndx.encode(&mut out, ndx);
        out
    }

    /// A request: ndx, iflags, then `head` (count, blength, s2length,
    /// remainder) when `Some`.
    pub fn request(&mut self, ndx: i32, iflags: u16, head: Option<[i32; 4]>) -> Vec<u8> {
        let mut out = self.ndx_bytes(ndx);
        put_u16(&mut out, iflags);
        if let Some(h) = head {
            for v in h {
                put_i32(&mut out, v);
            }
        }
        out
    }

    /// Reads until the daemon closes the connection or `limit` passes.
    pub fn finish(self, limit: Duration) -> Ending {
        let mut e = drain(self.stream, limit);
        let mut data = self.pending;
        data.extend_from_slice(&e.data);
        e.data = data;
        e.messages = format!("{}{}", self.messages, e.messages);
        e
    }

    /// Shuts down our sending side (the daemon sees EOF), keeping reads open.
    pub fn close_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Block sums for a sum list: `count` pairs of (sum1, strong) as bytes.
pub fn sum_blocks(sums: impl IntoIterator<Item = (u32, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (s1, s2) in sums {
        out.extend_from_slice(&s1.to_le_bytes());
        out.extend_from_slice(&s2);
    }
    out
}
