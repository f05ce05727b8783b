//! Connection IO for one session: buffered input with deadlines, the
//! client-to-server demultiplexer and the multiplexed output writer.
//!
//! Protocol decoding itself lives in the `protocol` crate; this module only
//! moves bytes and enforces time limits.
//!
//! A session runs over a [`Conn`]: an accepted TCP socket, the inetd socket
//! on fd 0, or a pair of plain descriptors (rsh daemon mode, as stock's
//! `rsync --server --daemon .` under ssh or `RSYNC_CONNECT_PROG`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use protocol::error::{DecodeError, DecodeResult};
use protocol::mux::{self, MsgCode};

/// Why input could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// A deadline or idle timeout expired.
    #[error("timeout")]
    Timeout,
    /// Socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent something the protocol forbids.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client sent MSG_ERROR_EXIT (with its exit code, if any).
    #[error("client aborted (MSG_ERROR_EXIT)")]
    ClientErrorExit(Option<i32>),
}

impl From<DecodeError> for InputError {
    fn from(e: DecodeError) -> Self {
        InputError::Protocol(e.to_string())
    }
}

/// Time limits applied to reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Absolute deadline (handshake phase), if any.
    pub deadline: Option<Instant>,
    /// Idle timeout for each read, if any.
    pub idle: Option<Duration>,
}

/// One direction (or both) of a session's transport.
#[derive(Debug)]
pub enum Conn {
    /// A stream socket; timeouts use `SO_RCVTIMEO`/`SO_SNDTIMEO`.
    Socket(TcpStream),
    /// Any other descriptor (pipe, socketpair end); timeouts use poll(2).
    Fd(File),
    /// Nothing behind it: reads see end of file, writes fail.
    Closed,
}

/// poll(2) one descriptor for `events`, up to `t` (forever when `None`).
/// Returns whether it became ready (errors and hang-ups count as ready, so
/// the following read or write reports them).
fn poll_fd(fd: i32, events: libc::c_short, t: Option<Duration>) -> io::Result<bool> {
    let deadline = t.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond rest does not spin.
                left.as_millis().saturating_add(u128::from(left.subsec_nanos() % 1_000_000 != 0)).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut p = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: `p` is one valid, initialised pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Conn {
    /// Another handle to the same transport (for the other direction).
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Socket(s) => Conn::Socket(s.try_clone()?),
            Conn::Fd(f) => Conn::Fd(f.try_clone()?),
            Conn::Closed => Conn::Closed,
        })
    }

    /// Read some bytes, waiting at most `t` (`TimedOut` when it expires).
    fn read_timeout(&mut self, buf: &mut [u8], t: Option<Duration>) -> io::Result<usize> {
        match self {
            Conn::Socket(s) => {
                s.set_read_timeout(t)?;
                s.read(buf)
            }
            Conn::Fd(f) => {
                let deadline = t.map(|t| Instant::now() + t);
                loop {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if !poll_fd(f.as_raw_fd(), libc::POLLIN, left)? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    match f.read(buf) {
                        // A descriptor someone else made non-blocking.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            }
            Conn::Closed => Ok(0),
        }
    }

    /// Wait up to `dur` for input without consuming it.
    fn wait_readable(&self, dur: Duration) {
        match self {
            Conn::Socket(s) => {
                let _ = s.set_read_timeout(Some(dur));
                let mut b = [0u8; 1];
                let _ = s.peek(&mut b);
            }
            Conn::Fd(f) => {
                let _ = poll_fd(f.as_raw_fd(), libc::POLLIN, Some(dur));
            }
            Conn::Closed => {}
        }
    }

    /// Write all of `b`; with a descriptor each chunk waits at most `t` for
    /// room (a blocking write of one chunk may still wait longer).
    fn write_all_timeout(&mut self, b: &[u8], t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Socket(s) => s.write_all(b),
            Conn::Fd(f) => {
                let mut off = 0;
                while off < b.len() {
                    if !poll_fd(f.as_raw_fd(), libc::POLLOUT, t)? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    let end = (off + 64 * 1024).min(b.len());
                    match f.write(&b[off..end]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => off += n,
                        Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Conn::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// End the write direction: shut a socket down for writing, close a
    /// descriptor (a pipe has no half-close).
    fn shutdown_write(&mut self) {
        match self {
            Conn::Socket(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Conn::Fd(_) => *self = Conn::Closed,
            Conn::Closed => {}
        }
    }
}

/// How the daemon was started on its standard descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
    /// inetd (or `RSYNC_CONNECT_PROG`): one socket on fd 0 carries both
    /// directions (mirrors `clientserver.c: daemon_main()` when
    /// `is_a_socket(STDIN_FILENO)`).
    Inetd,
    /// rsh daemon mode (`rsync --server --daemon .`): input on fd 0, output
    /// on fd 1, any kind of descriptor (mirrors `main.c: start_server()`
    /// calling `start_daemon(STDIN_FILENO, STDOUT_FILENO)`).
    Rsh,
}

/// Whether fd 0 is a socket (`util1.c: is_a_socket()`).
pub fn stdin_is_socket() -> bool {
    let mut v: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `l` are valid for writes of the sizes given; getsockopt
    // on a non-socket fails with ENOTSOCK and writes nothing.
    let r = unsafe { libc::getsockopt(0, libc::SOL_SOCKET, libc::SO_TYPE, (&mut v as *mut libc::c_int).cast(), &mut l) };
    r == 0
}

/// Take over the standard descriptors for one session: returns the input
/// and output halves and the peer's address when the socket has an IP one
/// (inetd). Fds 0 and 1 are then pointed at /dev/null, so nothing printed
/// by accident reaches the client and our close is the only one the peer
/// waits for.
pub fn take_stdio(mode: StdioMode) -> io::Result<(Conn, Conn, Option<SocketAddr>)> {
    let dup_fd = |fd: i32| -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor number has no memory
        // effects; a failure is reported as -1.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `n` is a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    // The client may have left its end non-blocking (stock's piped_child
    // only resets stdin); our reads and writes expect blocking descriptors.
    let blocking = |fd: &OwnedFd| {
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory effects.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if fl >= 0 && fl & libc::O_NONBLOCK != 0 {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
    };
    let dup = |fd: i32| -> io::Result<OwnedFd> {
        let d = dup_fd(fd)?;
        blocking(&d);
        Ok(d)
    };
    let (input, output, peer) = match mode {
        StdioMode::Inetd => {
            // Under inetd fd 0 and fd 1 are the same socket; we use fd 0 for both.
            let s = TcpStream::from(dup(0)?);
            let peer = s.peer_addr().ok();
            let _ = s.set_nodelay(true);
            (Conn::Socket(s.try_clone()?), Conn::Socket(s), peer)
        }
        StdioMode::Rsh => (Conn::Fd(File::from(dup(0)?)), Conn::Fd(File::from(dup(1)?)), None),
    };
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for fd in [0, 1] {
        // SAFETY: dup2 onto a standard descriptor number; the old
        // description stays open through the duplicates we returned.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((input, output, peer))
}

/// The raw socket input with a read buffer.
pub struct RawInput {
    stream: Conn,
    pub(crate) limits: ReadLimits,
    total_read: u64,
}

impl RawInput {
    /// Wrap the read side of a connection.
    pub fn new(stream: Conn, limits: ReadLimits) -> Self {
        RawInput { stream, limits, total_read: 0 }
    }

    /// Bytes read from the socket so far.
    pub fn total_read(&self) -> u64 {
        self.total_read
    }

    fn timeout(&self) -> Result<Option<Duration>, InputError> {
        let mut t = self.limits.idle;
        if let Some(d) = self.limits.deadline {
            let left = d.checked_duration_since(Instant::now()).ok_or(InputError::Timeout)?;
            if left.is_zero() {
                return Err(InputError::Timeout);
            }
            t = Some(t.map_or(left, |i| i.min(left)));
        }
        Ok(t)
    }

    /// Wait up to `dur` until the peer has sent something, without
    /// consuming it (so that closing the socket afterwards resets the
    /// connection, as stock's exit with unread input does).
    pub fn peek_wait(&self, dur: Duration) {
        self.stream.wait_readable(dur);
    }

    /// Read at least one byte into `dst`, appending. Returns bytes read.
    pub fn read_some(&mut self, dst: &mut Vec<u8>, want: usize) -> Result<usize, InputError> {
        let t = self.timeout()?;
        if matches!(self.stream, Conn::Closed) {
            return Err(InputError::Eof);
        }
        let start = dst.len();
        let want = want.clamp(1, 256 * 1024);
        dst.resize(start + want, 0);
        let r = loop {
            match self.stream.read_timeout(&mut dst[start..], t) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    break Err(InputError::Timeout)
                }
                Err(e) => break Err(InputError::Io(e)),
            }
        };
        match r {
            Ok(0) => {
                dst.truncate(start);
                Err(InputError::Eof)
            }
            Ok(n) => {
                dst.truncate(start + n);
                self.total_read += n as u64;
                Ok(n)
            }
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }
}

/// A stream of protocol bytes from the client: either raw (protocol < 30,
/// and everything before multiplexing starts) or demultiplexed.
pub struct Input {
    raw: RawInput,
    /// Raw bytes read but not yet consumed (frame headers or data).
    rbuf: Vec<u8>,
    rpos: usize,
    /// Demultiplexed data bytes not yet consumed.
    data: Vec<u8>,
    dpos: usize,
    mux: bool,
    /// Bytes of the current MSG_DATA frame still to come.
    frame_left: usize,
    max_msg: usize,
    /// Text messages the client sent (MSG_INFO etc.), for logging.
    pub client_messages: Vec<String>,
}

impl Input {
    /// Start in raw (non-multiplexed) mode.
    pub fn new(raw: RawInput, max_msg: usize) -> Self {
        Input { raw, rbuf: Vec::new(), rpos: 0, data: Vec::new(), dpos: 0, mux: false, frame_left: 0, max_msg, client_messages: Vec::new() }
    }

    /// An input with no connection behind it (always at end of file); used
    /// while the real one is lent to the reader thread.
    pub fn placeholder() -> Self {
        let raw = RawInput { stream: Conn::Closed, limits: ReadLimits { deadline: None, idle: None }, total_read: 0 };
        Input::new(raw, 0)
    }

    /// Switch client-to-server demultiplexing on (protocol >= 30, after the seed).
    pub fn start_mux(&mut self) {
        // Anything already buffered but unconsumed is raw data that arrived
        // before multiplexing started; it cannot exist in a correct stream.
        self.mux = true;
    }

    /// Temporarily read raw bytes inside a multiplexed stream (protocol 30
    /// `--files-from` quirk). Only valid at a frame boundary.
    pub fn set_raw_passthrough(&mut self, raw: bool) {
        self.mux = !raw;
    }

    /// See [`RawInput::peek_wait`]; returns at once if input is already buffered.
    pub fn peek_wait(&self, dur: Duration) {
        if self.rpos < self.rbuf.len() || self.dpos < self.data.len() {
            return;
        }
        self.raw.peek_wait(dur);
    }

    /// Change the time limits.
    pub fn set_limits(&mut self, limits: ReadLimits) {
        self.raw.limits = limits;
    }

    /// Bytes read from the socket so far.
    pub fn total_read(&self) -> u64 {
        self.raw.total_read()
    }

    fn compact(&mut self) {
        if self.dpos > 0 && self.dpos == self.data.len() {
            self.data.clear();
            self.dpos = 0;
        } else if self.dpos > 64 * 1024 {
            self.data.drain(..self.dpos);
            self.dpos = 0;
        }
        if self.rpos > 0 && self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        } else if self.rpos > 64 * 1024 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
    }

    fn raw_fill(&mut self, need: usize) -> Result<(), InputError> {
        while self.rbuf.len() - self.rpos < need {
            let want = need - (self.rbuf.len() - self.rpos);
            self.raw.read_some(&mut self.rbuf, want.max(16 * 1024))?;
        }
        Ok(())
    }

    /// Make at least `need` more data bytes available.
    fn fill(&mut self, need: usize) -> Result<(), InputError> {
        self.compact();
        let target = self.data.len() - self.dpos + need;
        while self.data.len() - self.dpos < target {
            if !self.mux {
                if self.rpos == self.rbuf.len() {
                    self.raw_fill(1)?;
                }
                let take = (self.rbuf.len() - self.rpos).min(target - (self.data.len() - self.dpos));
                self.data.extend_from_slice(&self.rbuf[self.rpos..self.rpos + take]);
                self.rpos += take;
                continue;
            }
            if self.frame_left > 0 {
                if self.rpos == self.rbuf.len() {
                    self.raw_fill(1)?;
                }
                let take = (self.rbuf.len() - self.rpos).min(self.frame_left);
                self.data.extend_from_slice(&self.rbuf[self.rpos..self.rpos + take]);
                self.rpos += take;
                self.frame_left -= take;
                continue;
            }
            self.raw_fill(4)?;
            let hdr = mux::decode_header(&self.rbuf[self.rpos..self.rpos + 4], self.max_msg)
                .map_err(|e| InputError::Protocol(e.to_string()))?;
            self.rpos += 4;
            match hdr.code {
                MsgCode::Data => self.frame_left = hdr.len,
                code => {
                    self.raw_fill(hdr.len)?;
                    let payload = self.rbuf[self.rpos..self.rpos + hdr.len].to_vec();
                    self.rpos += hdr.len;
                    self.handle_message(code, &payload)?;
                }
            }
        }
        Ok(())
    }

    /// Mirrors what a stock sender accepts from a client (`io.c: read_a_msg()`).
    fn handle_message(&mut self, code: MsgCode, payload: &[u8]) -> Result<(), InputError> {
        match code {
            MsgCode::Noop | MsgCode::Success | MsgCode::IoError | MsgCode::NoSend => Ok(()),
            MsgCode::ErrorExit => {
                let c = if payload.len() >= 4 {
                    Some(i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]))
                } else {
                    None
                };
                Err(InputError::ClientErrorExit(c))
            }
            MsgCode::Info | MsgCode::Error | MsgCode::ErrorXfer | MsgCode::Warning => {
                if self.client_messages.len() < 100 {
                    self.client_messages.push(String::from_utf8_lossy(payload).into_owned());
                }
                Ok(())
            }
            other => Err(InputError::Protocol(format!("unexpected tag {}", other.code()))),
        }
    }

    /// Decode one value with `f`, reading more input as it asks for it.
    pub fn decode<T>(&mut self, mut f: impl FnMut(&[u8]) -> DecodeResult<(T, usize)>) -> Result<T, InputError> {
        loop {
            match f(&self.data[self.dpos..]) {
                Ok((v, used)) => {
                    self.dpos += used;
                    return Ok(v);
                }
                Err(DecodeError::Incomplete { needed }) => self.fill(needed.max(1))?,
                Err(e) => return Err(InputError::Protocol(e.to_string())),
            }
        }
    }

    /// Read exactly `n` bytes.
    pub fn read_exact_vec(&mut self, n: usize) -> Result<Vec<u8>, InputError> {
        if self.data.len() - self.dpos < n {
            self.fill(n - (self.data.len() - self.dpos))?;
        }
        let v = self.data[self.dpos..self.dpos + n].to_vec();
        self.dpos += n;
        Ok(v)
    }

    /// Read one text line (text phase, never multiplexed).
    pub fn read_line(&mut self, max_len: usize) -> Result<Vec<u8>, InputError> {
        self.decode(|b| protocol::greeting::take_line(b, max_len).map(|(l, n)| (l.to_vec(), n)))
    }

    /// Wait until at least one data byte is available (or an error occurs).
    pub fn wait_data(&mut self) -> Result<(), InputError> {
        if self.data.len() > self.dpos {
            return Ok(());
        }
        self.fill(1)
    }
}

/// Server-to-client output. Before multiplexing starts everything goes out
/// raw; afterwards protocol data travels in MSG_DATA frames and messages in
/// their own frames.
pub struct Output {
    stream: Conn,
    write_timeout: Option<Duration>,
    pending: Vec<u8>,
    mux: bool,
    total_written: u64,
    frame_scratch: Vec<u8>,
    /// Protocol version, for message-code mapping below 30.
    protocol: u8,
}

/// Largest MSG_DATA frame we emit (stock's IO_BUFFER_SIZE).
pub const MAX_DATA_FRAME: usize = 32 * 1024;

impl Output {
    /// Wrap the write side of a connection; `write_timeout` bounds each write.
    pub fn new(stream: Conn, write_timeout: Option<Duration>) -> io::Result<Self> {
        if let Conn::Socket(s) = &stream {
            s.set_write_timeout(write_timeout)?;
        }
        Ok(Output {
            stream,
            write_timeout,
            pending: Vec::with_capacity(64 * 1024),
            mux: false,
            total_written: 0,
            frame_scratch: Vec::new(),
            protocol: 0,
        })
    }

    /// Set the negotiated protocol (affects message mapping).
    pub fn set_protocol(&mut self, p: u8) {
        self.protocol = p;
    }

    /// Start multiplexing server-to-client output.
    pub fn start_mux(&mut self) -> io::Result<()> {
        self.flush()?;
        self.mux = true;
        Ok(())
    }

    /// Whether output is multiplexed.
    pub fn is_mux(&self) -> bool {
        self.mux
    }

    /// Bytes written to the socket so far.
    pub fn total_written(&self) -> u64 {
        self.total_written
    }

    /// Queue protocol data.
    pub fn data(&mut self, b: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(b);
        if self.pending.len() >= 4 * MAX_DATA_FRAME {
            self.flush_data(false)?;
        }
        Ok(())
    }

    /// Pending data length (not yet on the socket).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all_timeout(b, self.write_timeout)?;
        self.total_written += b.len() as u64;
        Ok(())
    }

    fn flush_data(&mut self, all: bool) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.mux {
            let p = std::mem::take(&mut self.pending);
            self.write_all(&p)?;
            self.pending = p;
            self.pending.clear();
            return Ok(());
        }
        let mut frames = std::mem::take(&mut self.frame_scratch);
        frames.clear();
        let mut off = 0;
        while off < self.pending.len() {
            let n = (self.pending.len() - off).min(MAX_DATA_FRAME);
            if !all && n < MAX_DATA_FRAME {
                break;
            }
            mux::put_header(&mut frames, MsgCode::Data, n);
            frames.extend_from_slice(&self.pending[off..off + n]);
            off += n;
        }
        self.pending.drain(..off);
        let r = self.write_all(&frames);
        self.frame_scratch = frames;
        r
    }

    /// Send everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_data(true)
    }

    /// Send a message frame (flushing queued data first, to keep order).
    /// Below protocol 30, MSG_ERROR becomes MSG_ERROR_XFER and MSG_WARNING
    /// becomes MSG_INFO (`log.c: rwrite()`).
    pub fn msg(&mut self, code: MsgCode, payload: &[u8]) -> io::Result<()> {
        debug_assert!(self.mux, "messages need multiplexing");
        let code = match code {
            MsgCode::Error if self.protocol < 30 => MsgCode::ErrorXfer,
            MsgCode::Warning if self.protocol < 30 => MsgCode::Info,
            c => c,
        };
        self.flush_data(true)?;
        let mut f = Vec::with_capacity(payload.len() + 4);
        mux::put_frame(&mut f, code, payload);
        self.write_all(&f)
    }

    /// Send raw bytes (text phase).
    pub fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        debug_assert!(!self.mux);
        self.pending.extend_from_slice(b);
        self.flush()
    }

    /// Shut down the write side (after a final flush).
    pub fn shutdown(&mut self) {
        let _ = self.flush();
        self.stream.shutdown_write();
    }
}
