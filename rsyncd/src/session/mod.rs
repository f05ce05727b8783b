//! One client connection, from greeting to goodbye.
//!
//! The flow mirrors stock `clientserver.c: start_daemon()` /
//! `rsync_module()` and `main.c: start_server()` / `do_server_sender()`:
//! text phase, arguments, binary setup, filter list, file list, transfer
//! loop, statistics and goodbye. Errors caused by the client end only this
//! session, with rsync's own error form where the stream still allows one.

pub mod files;
pub mod flist;
pub mod io;
pub mod liststream;
pub mod modopts;
pub mod transfer;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::args::{ArgError, ParsedArgs};
use protocol::checksum::AuthDigest;
use protocol::compat;
use protocol::exit::Rerr;
use protocol::greeting::{self, ModuleRequest};
use protocol::mux::MsgCode;
use protocol::wire::{put_i32, put_varint, Reader};

use crate::access::auth::{self, Grant};
use crate::access::hosts::{Peer, PeerInfo, SystemResolver, DNS_TIMEOUT};
use crate::access::limits::{claim_connection, Slot};
use crate::module::{ModuleRuntime, ServerState};
use io::{Conn, Input, InputError, Output, RawInput, ReadLimits};

/// How a session ended, for logging.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Input failed (EOF, timeout, socket error, protocol violation).
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing to the client failed.
    #[error("write error: {0}")]
    Output(#[from] std::io::Error),
    /// The session ended with an rsync error exit after telling the client.
    #[error("{message} (code {})", code.code())]
    Exit {
        /// Exit class.
        code: Rerr,
        /// What happened.
        message: String,
    },
}

/// Per-session context after the module is chosen.
pub struct Session {
    pub(crate) input: Input,
    pub(crate) out: Output,
    pub(crate) protocol: u8,
    /// The client's address; `None` when unknown (rsh daemon mode without
    /// `SSH_CONNECTION`, a Unix socket on fd 0): host ACLs then deny.
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) state: Arc<ServerState>,
    /// Index of the listener the client connected to.
    pub(crate) listener: usize,
    /// The absolute handshake deadline (greeting to the end of the args).
    pub(crate) deadline: Instant,
    /// Idle timeout for the transfer phase: the module's `timeout`, the
    /// client's `--timeout` (the smaller one that is set), else the default.
    pub(crate) idle_timeout: Option<Duration>,
    /// Auth digest names from the client's greeting (3.2.7+ clients).
    client_digests: Option<Vec<String>>,
    /// The authenticated user, if the module asked for one.
    pub(crate) user: Option<Vec<u8>>,
    /// The `max connections` slot, held for the whole session.
    _slot: Option<Slot>,
    /// End without the graceful shutdown-and-drain (see `refuse`).
    pub(crate) abortive_close: bool,
    /// The binary setup (flags and negotiation) already ran; only the seed is left.
    setup_done: bool,
    /// The module's hooks, once admitted (`post-xfer exec` runs at the end).
    pub(crate) hooks: Option<crate::exec::SessionHooks>,
    /// The connection's place in its listener's handshake pool, given up
    /// when the handshake is over (see `server::serve`).
    handshake: Option<crate::access::limits::HandshakeTicket>,
}

/// Serve one connection arriving on listener `listener`. Never panics on
/// client input; returns how it ended.
pub fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    listener: usize,
) -> Result<(), SessionError> {
    let read_half = stream.try_clone()?;
    serve_connection_pooled(stream, read_half, peer, state, listener, None)
}

/// [`serve_connection`] for a connection that holds a place in its
/// listener's handshake pool: `ticket` is given up once the client's
/// arguments are read, so a running transfer no longer counts there.
/// `read_half` is a second handle to `stream` (made by the caller, so that
/// the accept loop allocates every descriptor a session starts with).
pub fn serve_connection_pooled(
    stream: TcpStream,
    read_half: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    listener: usize,
    ticket: Option<crate::access::limits::HandshakeTicket>,
) -> Result<(), SessionError> {
    let _ = stream.set_nodelay(true);
    serve_conns_pooled(Conn::Socket(read_half), Conn::Socket(stream), Some(peer), state, listener, ticket)
}

/// Serve one session over `input`/`output` (the same socket, or a pair of
/// descriptors as in inetd and rsh daemon mode, see [`io::take_stdio`]).
/// `peer` is the client's address when known.
pub fn serve_conns(
    input: Conn,
    output: Conn,
    peer: Option<SocketAddr>,
    state: Arc<ServerState>,
    listener: usize,
) -> Result<(), SessionError> {
    serve_conns_pooled(input, output, peer, state, listener, None)
}

fn serve_conns_pooled(
    input: Conn,
    output: Conn,
    peer: Option<SocketAddr>,
    state: Arc<ServerState>,
    listener: usize,
    handshake: Option<crate::access::limits::HandshakeTicket>,
) -> Result<(), SessionError> {
    if let Some(p) = &peer {
        crate::logging::log_connect(p);
    }
    let settings = state.settings.clone();
    let deadline = Instant::now() + settings.handshake_timeout;
    let raw = RawInput::new(input, ReadLimits { deadline: Some(deadline), idle: None });
    let input = Input::new(raw, settings.limits.max_msg_payload);
    let out = Output::new(output, Some(settings.handshake_timeout.max(Duration::from_secs(30))))?;
    let mut s = Session {
        input,
        out,
        protocol: 0,
        peer,
        state,
        listener,
        deadline,
        idle_timeout: settings.idle_timeout,
        client_digests: None,
        user: None,
        _slot: None,
        abortive_close: false,
        setup_done: false,
        hooks: None,
        handshake,
    };
    let r = s.run();
    if let Err(e) = &r {
        tracing::info!(peer = %shown_peer(peer), "session ended: {e}");
    }
    crate::metrics::session_bytes(listener, s.out.total_written() + s.out.pending_len() as u64);
    if s.abortive_close {
        // Like stock after refusing the arguments: just exit.  The client's
        // unread input makes the kernel reset the connection, and the
        // client reports "Connection reset by peer" (exit 10), as with stock.
        // Wait (bounded) until that input has arrived, so the close is a
        // reset rather than a clean end of file (which the client would
        // report as exit 12).
        s.input.peek_wait(Duration::from_millis(500));
        // Then linger as stock does before closing after an error (mirrors
        // cleanup.c _exit_cleanup: `if (am_server && exit_code) msleep(100)`),
        // so a client still sending its file list finishes writing and sees
        // the reset on its next read ("read error"), not mid-write.
        std::thread::sleep(Duration::from_millis(100));
        return end_session(s, r);
    }
    s.out.shutdown();
    // Drain briefly so the kernel does not reset the connection while the
    // client still reads our last messages.
    s.input.set_limits(ReadLimits { deadline: Some(Instant::now() + Duration::from_secs(2)), idle: None });
    let _ = s.drain();
    end_session(s, r)
}

/// Closes the connection, then runs the module's `post-xfer exec` (stock
/// runs it once the connection's process has exited), still holding the
/// `max connections` slot.
fn end_session(mut s: Session, r: Result<(), SessionError>) -> Result<(), SessionError> {
    let Some(hooks) = s.hooks.take() else { return r };
    let slot = s._slot.take();
    drop(s);
    crate::exec::after_session(&hooks, &r);
    drop(slot);
    r
}

impl Session {
    fn drain(&mut self) -> Result<(), InputError> {
        loop {
            match self.input.read_exact_vec(1) {
                Ok(_) => {}
                Err(InputError::ClientErrorExit(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn text_error(&mut self, text: &str) -> Result<(), SessionError> {
        self.out.raw(&greeting::error_line(text))?;
        Err(SessionError::Exit { code: Rerr::StartClient, message: text.to_string() })
    }

    fn run(&mut self) -> Result<(), SessionError> {
        let max_line = self.state.settings.limits.max_line;
        // exchange_protocols(): greeting first, without waiting.
        let mut hello = greeting::server_greeting();
        if let Some(motd) = &self.state.motd {
            hello.extend_from_slice(motd);
            if !motd.ends_with(b"\n") && !motd.is_empty() {
                hello.push(b'\n');
            }
            hello.push(b'\n');
        }
        self.out.raw(&hello)?;
        let line = match self.input.read_line(max_line) {
            Ok(l) => l,
            Err(InputError::Protocol(_)) => return self.text_error("protocol startup error"),
            Err(e) => return Err(e.into()),
        };
        let g = match greeting::parse_client_greeting(&line) {
            Ok(g) => g,
            Err(e) => return self.text_error(&e.message),
        };
        self.protocol = match greeting::negotiate_protocol(&g) {
            Ok(p) => p,
            Err(e) => return self.text_error(&e.message),
        };
        self.client_digests = g.digests;
        self.out.set_protocol(self.protocol);

        let mut early_input = Vec::new();
        let module_name = loop {
            let line = self.input.read_line(max_line)?;
            match greeting::parse_module_line(&line) {
                Ok(ModuleRequest::List) => {
                    crate::logging::log_list_request(self.peer);
                    crate::metrics::list_request(self.listener);
                    return self.send_listing();
                }
                Ok(ModuleRequest::EarlyInput(n)) => {
                    early_input = self.input.read_exact_vec(n)?;
                }
                Ok(ModuleRequest::UnknownCommand(c)) => {
                    let t = format!("Unknown command '{}'", files::safe_name(&c));
                    return self.text_error(&t);
                }
                Ok(ModuleRequest::Module(m)) => break m,
                Err(e) => return self.text_error(&e.message),
            }
        };
        let module = match self.state.module(&module_name, self.listener) {
            Some(m) => m.clone(),
            None => {
                crate::logging::log_unknown_module(self.peer, &module_name);
                let t = format!("Unknown module '{}'", files::safe_name(&module_name));
                return self.text_error(&t);
            }
        };
        self.admit(&module)?;
        if let Err(e) = crate::exec::before_ok(self, &module, &early_input) {
            if matches!(e, SessionError::Exit { .. }) {
                crate::metrics::refused(crate::metrics::Refusal::HookFailed, Some(&module.name));
            }
            return Err(e);
        }
        self.out.raw(greeting::OK_LINE)?;
        tracing::info!(peer = %shown_peer(self.peer), module = %module.name, protocol = self.protocol, "module requested");
        self.serve_module(module)
    }

    /// `rsync_module()` up to `@RSYNCD: OK`: host ACL, connection slot, the
    /// module's `timeout` on the handshake, then authentication.
    fn admit(&mut self, module: &Arc<ModuleRuntime>) -> Result<(), SessionError> {
        let rules = &module.rules;
        let Some(peer) = self.peer else {
            // An unknown client (rsh daemon mode without SSH_CONNECTION):
            // stock calls it UNKNOWN at 0.0.0.0, which `0.0.0.0/0` would
            // admit; we fail closed on any host rule instead.
            if !rules.hosts.is_open() {
                crate::logging::log_global(&format!("rsync denied on module {} from UNKNOWN (0.0.0.0)", module.name));
                crate::metrics::refused(crate::metrics::Refusal::HostDenied, Some(&module.name));
                if !module.list {
                    return self.text_error(&format!("Unknown module '{}'", module.name));
                }
                return self.text_error(&format!("access denied to {} from UNKNOWN (0.0.0.0)", module.name));
            }
            return self.admit_checked(module, "0.0.0.0");
        };
        let addr = Peer::from_socket(&peer);
        let shown_addr = addr.addr.to_string();
        if !rules.hosts.is_open() {
            let resolver = SystemResolver { timeout: DNS_TIMEOUT.min(self.deadline.saturating_duration_since(Instant::now())) };
            let mut who = PeerInfo::new(addr, &resolver);
            if !rules.hosts.allows(&mut who) {
                let host = who.host(rules.hosts.reverse_lookup).0;
                let host = files::safe_name(host.shown().as_bytes());
                crate::logging::log_global(&format!("rsync denied on module {} from {host} ({shown_addr})", module.name));
                crate::metrics::refused(crate::metrics::Refusal::HostDenied, Some(&module.name));
                if !module.list {
                    return self.text_error(&format!("Unknown module '{}'", module.name));
                }
                return self.text_error(&format!("access denied to {} from {host} ({shown_addr})", module.name));
            }
        }
        self.admit_checked(module, &shown_addr)
    }

    /// The rest of [`Self::admit`] once the host ACL passed.
    fn admit_checked(&mut self, module: &Arc<ModuleRuntime>, shown_addr: &str) -> Result<(), SessionError> {
        let rules = &module.rules;
        crate::logging::log_allowed(&self.state, module, &self.peer.unwrap_or_else(crate::logging::unknown_peer));
        match claim_connection(&rules.lock_file, rules.max_connections) {
            Ok(slot) => self._slot = slot,
            Err(e) => {
                match &e {
                    crate::access::limits::ClaimError::LockFile(io) => {
                        crate::metrics::refused(crate::metrics::Refusal::LockFile, Some(&module.name));
                        crate::logging::log_global(&format!("failed to open lock file {}: {io}", rules.lock_file.display()))
                    }
                    crate::access::limits::ClaimError::Full(n) => {
                        crate::metrics::refused(crate::metrics::Refusal::MaxConnections, Some(&module.name));
                        crate::logging::log_global(&format!("max connections ({n}) reached"))
                    }
                }
                return self.text_error(&e.client_text());
            }
        }
        // A module timeout shortens the handshake deadline (never extends it).
        if let Some(t) = rules.timeout {
            self.deadline = self.deadline.min(Instant::now() + t);
            self.input.set_limits(ReadLimits { deadline: Some(self.deadline), idle: None });
        }
        if rules.auth.required() {
            if let Err(e) = self.authenticate(module, shown_addr) {
                if matches!(e, SessionError::Exit { .. }) {
                    crate::metrics::refused(crate::metrics::Refusal::AuthFailed, Some(&module.name));
                }
                return Err(e);
            }
        }
        // One-connection mode opens the module's snapshot now (a listening
        // daemon opened every store at start-up). Like stock's failed
        // chdir into the module path: "@ERROR: chdir failed".
        if let Err(e) = module.store.get() {
            crate::logging::log_global(&format!("chdir {} failed: {e}", module.path.display()));
            crate::metrics::refused(crate::metrics::Refusal::ChdirFailed, Some(&module.name));
            return self.text_error("chdir failed");
        }
        crate::metrics::module_connection(&module.name, self.listener);
        Ok(())
    }

    /// `auth_server()`: negotiate the digest, send a challenge, check the
    /// answer.  Every failure gives the client the same text.
    fn authenticate(&mut self, module: &Arc<ModuleRuntime>, addr: &str) -> Result<(), SessionError> {
        let rules = &module.rules;
        let failed = format!("auth failed on module {}", module.name);
        // The log names the client as stock does: "HOST (ADDR)".
        let addr = format!("{} ({addr})", crate::logging::peer_names(self.peer, rules.hosts.reverse_lookup).1);
        let Some(digest) = auth::negotiate_digest(self.client_digests.as_deref(), self.protocol) else {
            let ours: Vec<&str> = auth::DIGEST_ORDER.iter().map(|d| d.name()).collect();
            self.out.raw(&greeting::error_line(&format!(
                "your client does not support one of our daemon-auth checksums: {}",
                ours.join(" ")
            )))?;
            return Err(SessionError::Exit { code: Rerr::Unsupported, message: "no common auth digest".into() });
        };
        if let Some(floor) = rules.auth.floor {
            if auth::below_floor(digest, floor) {
                crate::logging::log_global(&format!(
                    "auth failed on module {} from {addr}: negotiated auth digest {} is weaker than the required 'auth digest = {}'",
                    module.name,
                    digest.name(),
                    floor.name()
                ));
                return self.text_error(&failed);
            }
        }
        let challenge = match auth::new_challenge(digest) {
            Ok(c) => c,
            Err(e) => {
                crate::logging::log_global(&format!("auth failed on module {} from {addr}: no random challenge: {e}", module.name));
                return self.text_error(&failed);
            }
        };
        self.out.raw(&greeting::authreqd_line(&challenge))?;
        let line = match self.input.read_line(self.state.settings.limits.max_line) {
            Ok(l) => l,
            Err(InputError::Protocol(_)) => b"".to_vec(),
            Err(e) => return Err(e.into()),
        };
        let root = self.state.daemon_is_root;
        match rules.auth.verify(&line, &challenge, digest, root, &auth::system_groups_of) {
            Ok(login) => {
                tracing::info!(module = %module.name, user = %files::safe_name(&login.user), digest = digest_label(digest), "authenticated");
                if login.grant == Grant::ReadWrite {
                    tracing::info!(module = %module.name, "\"rw\" access granted, but this daemon only serves downloads");
                }
                self.user = Some(login.user);
                Ok(())
            }
            Err((user, why)) => {
                // auth_server(): a malformed response names no user.
                crate::logging::log_global(&match why {
                    auth::AuthFailure::InvalidResponse => format!("auth failed on module {} from {addr}: {why}", module.name),
                    _ => format!("auth failed on module {} from {addr} for {}: {why}", module.name, files::safe_name(&user)),
                });
                self.text_error(&failed)
            }
        }
    }

    fn send_listing(&mut self) -> Result<(), SessionError> {
        let mut b = Vec::new();
        for m in self.state.listed(self.listener) {
            b.extend_from_slice(&greeting::listing_line(&m.name, &m.comment));
        }
        if self.protocol >= 25 {
            b.extend_from_slice(greeting::EXIT_LINE);
        }
        self.out.raw(&b)?;
        Ok(())
    }

    fn read_args(&mut self, nul: bool) -> Result<Vec<Vec<u8>>, InputError> {
        let limits = self.state.settings.limits.clone();
        self.input.decode(|b| protocol::args::decode_arg_list(b, nul, &limits))
    }

    fn serve_module(&mut self, module: Arc<ModuleRuntime>) -> Result<(), SessionError> {
        let first = self.read_args(self.protocol >= 30)?;
        // `-s`: a second, always NUL-separated list follows (rsync.c: send_protected_args()).
        let secluded = first.iter().skip(2).take_while(|a| a.as_slice() != b".").any(|a| {
            a.len() > 1 && a[0] == b'-' && a[1] != b'-' && {
                let bundle = &a[1..];
                let end = bundle.iter().position(|&c| c == b'e').unwrap_or(bundle.len());
                bundle[..end].contains(&b's')
            }
        });
        let second = if secluded { Some(self.read_args(true)?) } else { None };
        let parsed = protocol::args::parse_server_args(&first, second.as_deref());
        // Stock runs the pre-xfer exec whether or not the arguments parsed.
        if let Some(msg) = crate::exec::pre_xfer(self, &module, &first, second.as_deref(), parsed.as_ref().ok()) {
            crate::metrics::refused(crate::metrics::Refusal::HookFailed, Some(&module.name));
            return crate::exec::refuse_pre_xfer(self, parsed.as_ref().ok(), &msg);
        }
        let parsed = match parsed.and_then(|p| check_supported(p, &module)) {
            Ok(p) => p,
            Err(e) => {
                let why = match &e {
                    ArgError::Push => crate::metrics::Refusal::ReadOnly,
                    ArgError::Unsupported { .. } => crate::metrics::Refusal::RefusedOption,
                    ArgError::Unknown { .. } | ArgError::Syntax { .. } => crate::metrics::Refusal::BadArguments,
                };
                crate::metrics::refused(why, Some(&module.name));
                if matches!(e, ArgError::Push) {
                    return self.refuse_push(&first, second.as_deref());
                }
                return self.refuse(e);
            }
        };
        crate::logging::log_request(&self.state, &module, &self.peer.unwrap_or_else(crate::logging::unknown_peer), self.user.as_deref(), second.as_deref().unwrap_or(&first));
        // The handshake deadline ends here; the idle timeout takes over:
        // the module's `timeout` if it is set and smaller than the client's
        // `--timeout` (or the client gave none), as stock's io_timeout.
        let client = parsed.options.timeout.filter(|&t| t > 0).map(|t| Duration::from_secs(u64::from(t)));
        self.idle_timeout = match (module.rules.timeout, client) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (Some(m), None) => Some(m),
            (None, Some(c)) => Some(c),
            (None, None) => self.state.settings.idle_timeout,
        };
        self.input.set_limits(ReadLimits { deadline: None, idle: self.idle_timeout });
        self.handshake = None;
        if module.rules.write_only {
            crate::metrics::refused(crate::metrics::Refusal::WriteOnly, Some(&module.name));
            // main.c: do_server_sender().
            return self.refuse_fatal("ERROR: module is write only".into(), Rerr::Syntax, "sender");
        }
        transfer::run_sender(self, module, parsed)
    }

    /// Stock behaviour for arguments it will not run (`rsync_module()`):
    /// finish the binary setup without the client's capabilities, start
    /// multiplexing, send the error, wait a moment and exit.  A push is
    /// refused later in stock (`do_server_recv()`), as a fatal error.
    fn refuse(&mut self, e: ArgError) -> Result<(), SessionError> {
        let (text, code) = match &e {
            ArgError::Push => return self.refuse_fatal("ERROR: module is read only".to_string(), Rerr::Syntax, "Receiver"),
            // Every module we serve is read-only; stock refuses the option
            // there in main.c: do_server_sender(), as a fatal syntax error.
            ArgError::Unsupported { option, .. } if option == "remove-source-files" || option == "remove-sent-files" => {
                return self.refuse_fatal(
                    "ERROR: --remove-source-files cannot be used with a read-only module".to_string(),
                    Rerr::Syntax,
                    "sender",
                );
            }
            ArgError::Unsupported { message, .. } => (format!("rsync: {message}"), Rerr::Unsupported),
            ArgError::Unknown { message } => (format!("rsync: {message}"), Rerr::Syntax),
            ArgError::Syntax { message } => (format!("rsync: {message}"), Rerr::Syntax),
        };
        self.refused_setup()?;
        let mut t = text.clone();
        t.push('\n');
        self.out.msg(MsgCode::Error, t.as_bytes())?;
        self.out.flush()?;
        std::thread::sleep(Duration::from_millis(400));
        self.abortive_close = true;
        Err(SessionError::Exit { code, message: text })
    }

    /// A push: stock parses the arguments, runs the normal binary setup
    /// (compat flags from the client's capabilities, negotiation strings,
    /// seed) and only then refuses in `do_server_recv()`.
    fn refuse_push(&mut self, first: &[Vec<u8>], second: Option<&[Vec<u8>]>) -> Result<(), SessionError> {
        let mut as_sender = first.to_vec();
        as_sender.insert(1.min(as_sender.len()), b"--sender".to_vec());
        let parsed = match protocol::args::parse_server_args(&as_sender, second) {
            Ok(p) => p,
            Err(_) => {
                return self.refuse_fatal("ERROR: module is read only".to_string(), Rerr::Syntax, "Receiver");
            }
        };
        let caps = parsed.options.capabilities.clone().unwrap_or_default();
        let mut b = Vec::new();
        let mut varint = false;
        if self.protocol >= 30 {
            // A receiver disallows inc-recursion for delete-before/after,
            // delay-updates and prune-empty-dirs; we only know -r here.
            let flags = compat::server_compat_flags(&caps, parsed.options.recursive);
            varint = flags & compat::CF_VARINT_FLIST_FLAGS != 0;
            put_varint(&mut b, flags as i32);
            self.out.raw(&b)?;
        }
        // The negotiation outcome does not matter: nothing is transferred.
        let _ = transfer::negotiate(self, &parsed, varint)?;
        self.setup_done = true;
        self.refuse_fatal("ERROR: module is read only".to_string(), Rerr::Syntax, "Receiver")
    }

    /// The binary setup of a session that will not transfer: compat flags
    /// (without the client's capabilities), seed, multiplexing.
    pub(crate) fn refused_setup(&mut self) -> Result<(), SessionError> {
        let mut b = Vec::new();
        if std::mem::take(&mut self.setup_done) {
            put_i32(&mut b, self.new_seed());
            self.out.raw(&b)?;
            self.out.start_mux()?;
            return Ok(());
        }
        if self.protocol >= 30 {
            put_varint(&mut b, compat::REFUSED_ARGS_COMPAT_FLAGS as i32);
        }
        put_i32(&mut b, self.new_seed());
        self.out.raw(&b)?;
        self.out.start_mux()?;
        Ok(())
    }

    /// A fatal error after the setup (`exit_cleanup()` in the server role):
    /// the text, then MSG_ERROR_EXIT with the code for protocol >= 31.
    fn refuse_fatal(&mut self, text: String, code: Rerr, role: &str) -> Result<(), SessionError> {
        self.refused_setup()?;
        let mut t = text.clone();
        t.push('\n');
        self.out.msg(MsgCode::Error, t.as_bytes())?;
        // cleanup.c: _exit_cleanup() reports the exit to the peer as well,
        // then the process exits without draining (the client sees a reset).
        let tail = format!(
            "rsync error: {} (code {}) at main.c(1159) [{role}={}]\n",
            code.text(),
            code.code(),
            env!("CARGO_PKG_VERSION")
        );
        self.out.msg(MsgCode::Error, tail.as_bytes())?;
        if self.protocol >= 31 {
            self.out.msg(MsgCode::ErrorExit, &code.code().to_le_bytes())?;
        }
        self.out.flush()?;
        self.abortive_close = true;
        Err(SessionError::Exit { code, message: text })
    }

    pub(crate) fn new_seed(&self) -> i32 {
        if let Some(s) = self.state.settings.fixed_seed {
            return s;
        }
        let mut b = [0u8; 4];
        if getrandom::fill(&mut b).is_err() {
            // Fall back to a time-derived value, as stock does always.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
            b = (t as u32).to_le_bytes();
        }
        let v = (u32::from_le_bytes(b) & 0x7FFF_FFFF) as i32;
        if v == 0 {
            1
        } else {
            v
        }
    }
}

/// A peer address for logs ("UNKNOWN" when not known).
fn shown_peer(p: Option<SocketAddr>) -> String {
    p.map_or_else(|| "UNKNOWN".to_string(), |a| a.to_string())
}

/// Options we parse but do not (yet) serve are refused by name, in
/// rsync's refusal form; never silently ignored.
fn check_supported(p: ParsedArgs, module: &ModuleRuntime) -> Result<ParsedArgs, ArgError> {
    let o = &p.options;
    if !o.sender {
        let _ = module.read_only;
        return Err(ArgError::Push);
    }
    let refuse = |long: &str, short: Option<char>| -> Result<(), ArgError> {
        let message = match short {
            Some(c) => format!("The server is configured to refuse --{long} (-{c})"),
            None => format!("The server is configured to refuse --{long}"),
        };
        Err(ArgError::Unsupported { option: long.to_string(), message })
    };
    if o.copy_links {
        refuse("copy-links", Some('L'))?;
    }
    if o.copy_dirlinks {
        refuse("copy-dirlinks", Some('k'))?;
    }
    if o.copy_unsafe_links {
        refuse("copy-unsafe-links", None)?;
    }
    if o.append > 0 {
        refuse("append", None)?;
    }
    if let Some(ff) = &o.files_from {
        if ff.as_slice() != b"-" {
            refuse("files-from", None)?;
        }
    }
    // The module's `refuse options` (and the options every daemon refuses).
    module.rules.refuse.check(o)?;
    Ok(p)
}

fn digest_label(d: AuthDigest) -> &'static str {
    match d {
        AuthDigest::Md4Legacy => "md4 (legacy)",
        other => other.name(),
    }
}

/// Read helper used by the transfer code: decode with a `Reader`.
pub(crate) fn with_reader<T>(
    b: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> protocol::DecodeResult<T>,
) -> protocol::DecodeResult<(T, usize)> {
    let mut r = Reader::new(b);
    let v = f(&mut r)?;
    Ok((v, r.consumed()))
}
