//! A TCP tee proxy for recording protocol fixtures.
//!
//! `record_fixture --listen 127.0.0.1:P --upstream 127.0.0.1:Q --out DIR`
//! accepts one connection on P, connects to Q, forwards bytes both ways, and
//! writes what the client sent to `DIR/c2s.bin` and what the server sent to
//! `DIR/s2c.bin`. It prints `record_fixture: listening on ADDR` to stderr when
//! ready (so `--listen 127.0.0.1:0` works), and exits when both directions
//! have closed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    out: PathBuf,
}

const USAGE: &str = "usage: record_fixture --listen HOST:PORT --upstream HOST:PORT --out DIR";

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--upstream" => {
                upstream = Some(value()?.parse().map_err(|e| format!("--upstream: {e}"))?)
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or(USAGE)?,
        upstream: upstream.ok_or(USAGE)?,
        out: out.ok_or(USAGE)?,
    })
}

/// Copies `from` to `to`, teeing into `log`, until `from` ends; then
/// half-closes `to` so the peer sees the end too. Returns the byte count.
fn pump(mut from: TcpStream, to: TcpStream, log: File) -> std::io::Result<u64> {
    let mut log = BufWriter::new(log);
    let mut to_w = &to;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let result = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        // Record before forwarding, so the log holds everything the peer got.
        if let Err(e) = log.write_all(&buf[..n]) {
            break Err(e);
        }
        if let Err(e) = to_w.write_all(&buf[..n]) {
            break Err(e);
        }
        total += n as u64;
    };
    let _ = to.shutdown(Shutdown::Write);
    if result.is_err() {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
    log.flush()?;
    result
}

fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("mkdir {}: {e}", args.out.display()))?;
    let listener =
        TcpListener::bind(args.listen).map_err(|e| format!("bind {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("record_fixture: listening on {local}");
    let (client, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    drop(listener);
    let server =
        TcpStream::connect(args.upstream).map_err(|e| format!("connect {}: {e}", args.upstream))?;
    let create = |name: &str| {
        let p = args.out.join(name);
        File::create(&p).map_err(|e| format!("create {}: {e}", p.display()))
    };
    let (c2s_log, s2c_log) = (create("c2s.bin")?, create("s2c.bin")?);
    let clone = |s: &TcpStream| s.try_clone().map_err(|e| format!("clone socket: {e}"));
    let (client2, server2) = (clone(&client)?, clone(&server)?);
    let up = thread::spawn(move || pump(client, server2, c2s_log));
    let down = thread::spawn(move || pump(server, client2, s2c_log));
    let c2s = up.join().map_err(|_| "c2s thread panicked".to_string())?;
    let s2c = down.join().map_err(|_| "s2c thread panicked".to_string())?;
    eprintln!(
        "record_fixture: {peer} <-> {}: c2s {} bytes, s2c {} bytes",
        args.upstream,
        c2s.as_ref()
            .map_or_else(|e| format!("error ({e})"), u64::to_string),
        s2c.as_ref()
            .map_or_else(|e| format!("error ({e})"), u64::to_string),
    );
    c2s.map_err(|e| format!("c2s: {e}"))?;
    s2c.map_err(|e| format!("s2c: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record_fixture: {e}");
            ExitCode::FAILURE
        }
    }
}
