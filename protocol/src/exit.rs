//! Exit codes from `errcode.h` (`RERR_*`).

/// rsync's exit codes, as the client reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Rerr {
    /// RERR_OK
    Ok = 0,
    /// RERR_SYNTAX: syntax or usage error
    Syntax = 1,
    /// RERR_PROTOCOL: protocol incompatibility
    Protocol = 2,
    /// RERR_FILESELECT: errors selecting input/output files, dirs
    FileSelect = 3,
    /// RERR_UNSUPPORTED: requested action not supported
    Unsupported = 4,
    /// RERR_STARTCLIENT: error starting client-server protocol
    StartClient = 5,
    /// RERR_SOCKETIO: error in socket IO
    SocketIo = 10,
    /// RERR_FILEIO: error in file IO
    FileIo = 11,
    /// RERR_STREAMIO: error in rsync protocol data stream
    StreamIo = 12,
    /// RERR_MESSAGEIO: errors with program diagnostics
    MessageIo = 13,
    /// RERR_IPC: error in IPC code
    Ipc = 14,
    /// RERR_CRASHED: sibling crashed
    Crashed = 15,
    /// RERR_TERMINATED: sibling terminated abnormally
    Terminated = 16,
    /// RERR_SIGNAL1: received SIGUSR1
    Signal1 = 19,
    /// RERR_SIGNAL: received SIGINT, SIGTERM, or SIGHUP
    Signal = 20,
    /// RERR_WAITCHILD: some error returned by waitpid()
    WaitChild = 21,
    /// RERR_MALLOC: error allocating core memory buffers
    Malloc = 22,
    /// RERR_PARTIAL: partial transfer
    Partial = 23,
    /// RERR_VANISHED: file(s) vanished on sender side
    Vanished = 24,
    /// RERR_DEL_LIMIT: skipped some deletes due to --max-delete
    DelLimit = 25,
    /// RERR_TIMEOUT: timeout in data send/receive
    Timeout = 30,
    /// RERR_CONTIMEOUT: timeout waiting for daemon connection
    ConTimeout = 35,
}

impl Rerr {
    /// The numeric exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// `log.c: rerr_names[]` wording, as in "rsync error: <text> (code N)".
    pub fn text(self) -> &'static str {
        match self {
            Rerr::Ok => "",
            Rerr::Syntax => "syntax or usage error",
            Rerr::Protocol => "protocol incompatibility",
            Rerr::FileSelect => "errors selecting input/output files, dirs",
            Rerr::Unsupported => "requested action not supported",
            Rerr::StartClient => "error starting client-server protocol",
            Rerr::SocketIo => "error in socket IO",
            Rerr::FileIo => "error in file IO",
            Rerr::StreamIo => "error in rsync protocol data stream",
            Rerr::MessageIo => "errors with program diagnostics",
            Rerr::Ipc => "error in IPC code",
            Rerr::Crashed => "sibling process crashed",
            Rerr::Terminated => "sibling process terminated abnormally",
            Rerr::Signal1 => "received SIGUSR1",
            Rerr::Signal => "received SIGINT, SIGTERM, or SIGHUP",
            Rerr::WaitChild => "waitpid() failed",
            Rerr::Malloc => "error allocating core memory buffers",
            Rerr::Partial => "some files/attrs were not transferred (see previous errors)",
            Rerr::Vanished => "some files vanished before they could be transferred",
            Rerr::DelLimit => "the --max-delete limit stopped deletions",
            Rerr::Timeout => "timeout in data send/receive",
            Rerr::ConTimeout => "timeout waiting for daemon connection",
        }
    }
}
