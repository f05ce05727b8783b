//! Golden argument vectors recorded from a stock rsync 3.2.7 client
//! (`tests/fixtures/args/*.txt`, produced by `capture.py` there): each is
//! re-framed as the client sent it, decoded with `decode_arg_list`, and
//! parsed with `parse_server_args`.

use std::collections::BTreeMap;
use std::path::Path;

use protocol::args::{decode_arg_list, parse_server_args, ArgError, ParsedArgs};
use protocol::limits::Limits;

struct Fixture {
    nul: bool,
    first: Vec<Vec<u8>>,
    second: Option<Vec<Vec<u8>>>,
}

fn unescape(line: &str) -> Vec<u8> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
                other => panic!("bad escape {other:?} in {line:?}"),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn load() -> BTreeMap<String, Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/args");
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut fx = Fixture {
            nul: true,
            first: Vec::new(),
            second: None,
        };
        for line in text.lines() {
            if line == "## second list" {
                fx.second = Some(Vec::new());
            } else if let Some(sep) = line.strip_prefix("# separator: ") {
                fx.nul = sep == "nul";
            } else if line.starts_with('#') {
                continue;
            } else if let Some(s) = fx.second.as_mut() {
                s.push(unescape(line));
            } else {
                fx.first.push(unescape(line));
            }
        }
        map.insert(path.file_stem().unwrap().to_string_lossy().into_owned(), fx);
    }
    map
}

/// Frame the lists the way the client sent them, decode them back, and parse.
fn decode_and_parse(name: &str, fx: &Fixture) -> Result<ParsedArgs, ArgError> {
    let mut wire = Vec::new();
    let sep = if fx.nul { 0 } else { b'\n' };
    for a in &fx.first {
        wire.extend_from_slice(a);
        wire.push(sep);
    }
    wire.push(sep);
    if let Some(second) = &fx.second {
        for a in second {
            wire.extend_from_slice(a);
            wire.push(0);
        }
        wire.push(0);
    }
    let limits = Limits::default();
    let (first, used) = decode_arg_list(&wire, fx.nul, &limits).unwrap();
    assert_eq!(first, fx.first, "{name}: first list");
    let second = match &fx.second {
        Some(expect) => {
            assert!(decode_arg_list(&wire[used..wire.len() - 1], true, &limits)
                .unwrap_err()
                .is_incomplete());
            let (second, used2) = decode_arg_list(&wire[used..], true, &limits).unwrap();
            assert_eq!(&second, expect, "{name}: second list");
            assert_eq!(used + used2, wire.len());
            Some(second)
        }
        None => {
            assert_eq!(used, wire.len());
            None
        }
    };
    parse_server_args(&first, second.as_deref())
}

fn refused(r: Result<ParsedArgs, ArgError>) -> String {
    match r {
        Err(ArgError::Unsupported { message, .. }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn golden_vectors_from_stock_client() {
    let fixtures = load();
    assert!(fixtures.len() >= 40, "fixtures missing: {}", fixtures.len());
    let mut checked = 0;
    for (name, fx) in &fixtures {
        let res = decode_and_parse(name, fx);
        checked += 1;
        // Refusals first.
        let refusal = match name.as_str() {
            "acls" => Some("The server is configured to refuse --acls (-A)"),
            "xattrs" => Some("The server is configured to refuse --xattrs (-X)"),
            "atimes" => Some("The server is configured to refuse --atimes (-U)"),
            "iconv" => Some("The server is configured to refuse --iconv"),
            "append" | "append-verify" => Some("The server is configured to refuse --append"),
            "remove-source-files" => {
                Some("The server is configured to refuse --remove-source-files")
            }
            "copy-devices" => Some("The server is configured to refuse --copy-devices"),
            _ => None,
        };
        if let Some(msg) = refusal {
            assert_eq!(refused(res), msg, "{name}");
            continue;
        }
        if name == "remote-option" {
            // -M--frobnicate reaches the server as a bare unknown option.
            match res {
                Err(ArgError::Unknown { message }) => {
                    assert_eq!(message, "--frobnicate: unknown option")
                }
                other => panic!("{name}: {other:?}"),
            }
            continue;
        }
        let p = res.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let o = &p.options;
        assert!(o.server && o.sender, "{name}");
        let archive = o.recursive
            && o.links
            && o.perms
            && o.times
            && o.group
            && o.owner
            && o.devices
            && o.specials;
        match name.as_str() {
            "a" | "proto30" => {
                assert!(
                    archive && !o.checksum && !o.wants_compression() && o.verbose == 0,
                    "{name}"
                );
                assert_eq!(o.capabilities.as_deref(), Some(&b".iLsfxCIvu"[..]));
                assert_eq!(p.paths, vec![b"mod/".to_vec()]);
                let req = o.requested_options();
                assert_eq!(
                    req,
                    vec![
                        ("server", None),
                        ("sender", None),
                        ("links", Some('l')),
                        ("owner", Some('o')),
                        ("group", Some('g')),
                        ("", Some('D')),
                        ("times", Some('t')),
                        ("perms", Some('p')),
                        ("recursive", Some('r')),
                        ("rsh", Some('e')),
                    ]
                );
            }
            "proto29" | "proto27" => {
                assert!(archive && o.capabilities.is_none() && !fx.nul, "{name}");
            }
            "avz" => assert!(archive && o.verbose == 1 && o.compress && !o.new_compress),
            "aH-numeric-ids" => assert!(archive && o.hard_links && o.numeric_ids),
            "c" => {
                assert!(o.checksum && !o.recursive);
                assert_eq!(o.capabilities.as_deref(), Some(&b".LsfxCIvu"[..]));
            }
            "ac" => assert!(archive && o.checksum),
            "n-r" => assert!(o.dry_run && o.recursive && !o.links),
            "list-only" => assert!(o.dirs && !o.recursive && !o.list_only),
            "list-only-r" => assert!(o.recursive && !o.dirs),
            "list-only-explicit" => assert!(archive && o.list_only),
            "R" => assert!(archive && o.relative && o.implied_dirs),
            "R-no-implied-dirs" => assert!(o.relative && !o.implied_dirs),
            "files-from-stdin" | "files-from-from0" => {
                assert_eq!(o.files_from.as_deref(), Some(&b"-"[..]));
                assert!(
                    o.from0 && o.relative,
                    "{name}: the client sends --from0 and -R"
                );
            }
            "s" | "s-proto29" => {
                assert!(o.secluded_args && archive, "{name}");
                assert_eq!(p.paths, vec![b"mod/".to_vec()], "{name}");
            }
            "s-long" => {
                assert!(o.secluded_args && archive);
                assert_eq!(o.timeout, Some(5));
                assert_eq!(o.bwlimit.as_deref(), Some("1000"));
            }
            "zc-zstd" => {
                // -z is only sent for zlib; other choices travel alone.
                assert!(!o.compress && o.compress_choice.as_deref() == Some(&b"zstd"[..]));
                assert!(o.wants_compression());
            }
            "zc-zlib" | "old-compress" => assert!(o.compress && o.old_compress, "{name}"),
            "zc-zlibx" => assert!(!o.compress && o.new_compress, "zlibx is not sent as -z"),
            "cc-xxh3" => assert_eq!(o.checksum_choice.as_deref(), Some(&b"xxh3"[..])),
            "checksum-choice-pair" => {
                assert_eq!(o.checksum_choice.as_deref(), Some(&b"md5,md4"[..]))
            }
            "exclude" => {
                // Client filter rules travel in the filter list, not here.
                assert!(archive && o.filter_options.is_empty());
            }
            "timeout" => assert_eq!(o.timeout, Some(5)),
            "block-size" => assert_eq!(o.block_size, Some(4096)),
            "delete" => {
                // Receiver-only options: nothing reaches the server, and
                // --delete turns incremental recursion off ('i' missing).
                assert!(archive);
                assert_eq!(o.capabilities.as_deref(), Some(&b".LsfxCIvu"[..]));
                assert_eq!(p.raw_options.len(), 3);
            }
            "compress-level" => assert_eq!(o.compress_level, Some(3)),
            "info-progress2" | "debug-vv" => assert!(o.info.is_empty() && o.debug.is_empty()),
            "bwlimit" => assert_eq!(o.bwlimit.as_deref(), Some("1536")),
            "inplace" => assert!(o.inplace),
            "delete-missing-args" => assert!(o.delete_missing_args),
            "dirs" => assert!(o.dirs && !o.recursive),
            "one-file-system" => assert_eq!(o.one_file_system, 1),
            "space-path" => assert_eq!(p.paths, vec![b"mod/a dir/[x]*".to_vec()]),
            "multi-path" => assert_eq!(p.paths, vec![b"mod/a".to_vec(), b"mod/b/c".to_vec()]),
            "max-alloc-escape" => {
                // safe_arg() escaped it; io.c unbackslash_arg() undoes that.
                assert_eq!(o.suffix.as_deref(), Some(&b"a b\\c*"[..]));
                assert_eq!(o.max_alloc, None, "1G is the default and is not sent");
            }
            "everything" => {
                assert_eq!(o.verbose, 2);
                assert!(o.quiet && o.backup && o.update && o.dry_run && o.links && o.copy_links);
                assert!(o.copy_dirlinks && o.whole_file && o.hard_links && o.owner && o.group);
                assert!(o.devices && !o.specials, "--no-specials after -D");
                assert!(
                    o.times
                        && o.perms
                        && o.recursive
                        && o.checksum
                        && o.cvs_exclude
                        && o.ignore_times
                );
                assert!(o.relative && o.sparse && o.compress);
                assert_eq!(o.one_file_system, 2);
                assert_eq!(o.capabilities.as_deref(), Some(&b".LsfxCIvu"[..]));
                assert_eq!(o.msgs2stderr, Some(true));
                assert_eq!(o.backup_dir.as_deref(), Some(&b"b k"[..]));
                assert_eq!(o.suffix.as_deref(), Some(&b"~x"[..]));
                assert_eq!(o.skip_compress.as_deref(), Some(&b"gz/zip"[..]));
                assert!(o.ignore_missing_args && o.ignore_errors && o.copy_unsafe_links);
                assert!(o.safe_links && o.numeric_ids && o.open_noatime);
                assert_eq!(o.checksum_seed, Some(7));
                let req = o.requested_options();
                assert!(req.contains(&("checksum", Some('c'))));
                assert!(req.contains(&("cvs-exclude", Some('C'))));
                assert!(req.contains(&("checksum-seed", None)));
                assert!(!req.contains(&("rsh", Some('e'))) || o.capabilities.is_some());
            }
            other => panic!("fixture {other} has no expectations; add them"),
        }
    }
    assert_eq!(checked, fixtures.len());
}
