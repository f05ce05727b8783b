//! Tests for the rsyncd.conf reader.  Expected values marked "stock:" were
//! observed from a stock rsync 3.2.7 daemon listing the same text.

use super::params::{self, TABLE};
use super::*;
use std::fs;

const ENV: &[(&str, &str)] = &[
    ("FOO", "bar"),
    ("SRV", "/srv/mirror"),
    ("HIDE", "no"),
    ("RSYNC_HOST_NAME", "from-daemon-env"),
];

fn fixed_env(name: &[u8]) -> Option<Vec<u8>> {
    ENV.iter()
        .find(|(k, _)| k.as_bytes() == name)
        .map(|(_, v)| v.as_bytes().to_vec())
}

fn opts() -> LoadOptions<'static> {
    LoadOptions {
        env: &fixed_env,
        dparams: &[],
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_bytes_with(text.as_bytes(), Path::new("rsyncd.conf"), &opts())
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected problems: {e}\nin:\n{text}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected problems, got {c:#?}\nin:\n{text}"),
        Err(e) => e,
    }
}

fn messages(e: &ConfigError) -> Vec<(usize, String)> {
    e.problems
        .iter()
        .map(|p| (p.line, p.message.clone()))
        .collect()
}

fn warning_texts(c: &Config) -> Vec<String> {
    c.warnings.iter().map(ToString::to_string).collect()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(name)
}

fn rules(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

// ---------------------------------------------------------------------------
// Parameter table
// ---------------------------------------------------------------------------

#[test]
fn table_is_in_enum_order_and_labels_are_unique() {
    for (i, d) in TABLE.iter().enumerate() {
        assert_eq!(d.id as usize, i, "{} out of order", d.label);
        assert_eq!(params::lookup(d.label.as_bytes()), Some(d.id));
    }
    assert_eq!(TABLE.len(), P::ChecksumCacheRate as usize + 1);
}

#[test]
fn names_compare_ignoring_case_and_whitespace_but_not_underscores() {
    // Mirrors strwiEQ.
    let cases: &[(&str, Option<P>)] = &[
        ("read only", Some(P::ReadOnly)),
        ("Read Only", Some(P::ReadOnly)),
        ("readonly", Some(P::ReadOnly)),
        ("READ   ONLY", Some(P::ReadOnly)),
        ("re ad only", Some(P::ReadOnly)),
        ("read_only", None),
        ("read-only", None),
        ("pre-xfer exec", Some(P::PreXferExec)),
        ("prexferexec", None),
        ("port", Some(P::Port)),
        ("rsync port", None),
        ("address", Some(P::Address)),
        ("bind address", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(params::lookup(name.as_bytes()), *want, "{name:?}");
    }
}

// ---------------------------------------------------------------------------
// Lexer (params.c)
// ---------------------------------------------------------------------------

fn lex(text: &str) -> Vec<(usize, Item)> {
    let mut lx = Lexer::new(text.as_bytes());
    std::iter::from_fn(|| lx.next_item()).collect()
}

fn param(name: &str, value: &str) -> Item {
    Item::Param {
        name: name.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

fn section(name: &str) -> Item {
    Item::Section(name.as_bytes().to_vec())
}

#[test]
fn lexer_table() {
    let d = |name: &str, value: &str| Item::Directive {
        name: name.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    let cases: Vec<(&str, Vec<(usize, Item)>)> = vec![
        ("", vec![]),
        ("\n\n   \n\t\n", vec![]),
        ("# comment\n; also\n   # indented\n", vec![]),
        ("a = b", vec![(1, param("a", "b"))]),
        ("  a=b  \n", vec![(1, param("a", "b"))]),
        // Only the first '=' counts; '#', ';', '[' are data inside a value.
        (
            "a = b = c # not a comment ; [x]\n",
            vec![(1, param("a", "b = c # not a comment ; [x]"))],
        ),
        // Internal whitespace of a value is kept; names are compressed.
        (
            "  Read \t  Only  =  x   y  \n",
            vec![(1, param("Read Only", "x   y"))],
        ),
        // Carriage returns are dropped from values and compress in names.
        ("a\r = b\r\n", vec![(1, param("a", "b"))]),
        ("a = b\rc\r\n", vec![(1, param("a", "bc"))]),
        ("a =\n", vec![(1, param("a", ""))]),
        // Continuation: the next line is appended verbatim (stock: "merged    continued").
        (
            "comment = merged \\\n   continued   \nx=y\n",
            vec![
                (1, param("comment", "merged    continued")),
                (3, param("x", "y")),
            ],
        ),
        ("a = b\\   \nc\n", vec![(1, param("a", "bc"))]),
        (
            "a = b \\\n\nc = d\n",
            vec![(1, param("a", "b ")), (3, param("c", "d"))],
        ),
        ("com\\\nment = x\n", vec![(1, param("comment", "x"))]),
        // Comments do not continue.
        ("# x \\\na = b\n", vec![(2, param("a", "b"))]),
        // A stray backslash at the start of a line is skipped.
        ("\\ [dd]\n", vec![(1, section("dd"))]),
        ("[ mod ]\n", vec![(1, section("mod"))]),
        ("[  a   b\t c ] junk after\n", vec![(1, section("a b c"))]),
        ("[bb\\\n  cc]\n", vec![(1, section("bb cc"))]),
        ("[a]b = c\n", vec![(1, section("a"))]),
        ("[a]\nb = c", vec![(1, section("a")), (2, param("b", "c"))]),
        ("&include /x/y\n", vec![(1, d("&include", "/x/y"))]),
        ("&include = /x/y\n", vec![(1, d("&include", "/x/y"))]),
        ("&merge\t=\t/x y \n", vec![(1, d("&merge", "/x y"))]),
        ("&include=/x\n", vec![(1, d("&include", "/x"))]),
        // Errors.
        (
            "[]\na=b\n",
            vec![(1, Item::EmptySection), (2, param("a", "b"))],
        ),
        ("[  ]\n", vec![(1, Item::EmptySection)]),
        (
            "[abc\nx=y\n",
            vec![
                (1, Item::BadSectionLine(b"abc".to_vec())),
                (2, param("x", "y")),
            ],
        ),
        ("[abc", vec![(1, Item::SectionEof(b"abc".to_vec()))]),
        (
            "read only no\nx=y\n",
            vec![
                (1, Item::BadLine(b"read only no".to_vec())),
                (2, param("x", "y")),
            ],
        ),
        ("dangling", vec![(1, Item::EofInName(b"dangling".to_vec()))]),
        (
            "= v\nx=y\n",
            vec![(1, Item::InvalidName), (2, param("x", "y"))],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(lex(text), want, "lexing {text:?}");
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

#[test]
fn boolean_spellings() {
    // Mirrors set_boolean: yes/true/1 and no/false/0, any case, whitespace ignored.
    for (v, want) in [
        ("yes", true),
        ("YES", true),
        ("True", true),
        ("1", true),
        ("y e s", true),
        ("no", false),
        ("FALSE", false),
        ("0", false),
        ("N o", false),
    ] {
        let c = ok(&format!("[m]\npath = /x\nlist = {v}\n"));
        assert_eq!(c.modules[0].list, want, "list = {v}");
    }
    for bad in ["on", "off", "y", "n", "unset", "-1", "yes # comment", ""] {
        let e = err(&format!("[m]\npath = /x\nlist = {bad}\n"));
        assert_eq!(e.problems.len(), 1, "{bad:?}");
        assert_eq!(e.problems[0].line, 3);
        assert_eq!(e.problems[0].key.as_deref(), Some("list"));
        assert!(
            e.problems[0].message.starts_with(&format!(
                "Badly formed boolean in configuration file: \"{bad}\"."
            )),
            "{}",
            e.problems[0].message
        );
    }
}

#[test]
fn three_state_booleans() {
    for (v, want) in [
        ("yes", Some(true)),
        ("0", Some(false)),
        ("unset", None),
        ("-1", None),
    ] {
        let c = ok(&format!(
            "[m]\npath = /x\nuse chroot = {v}\nnumeric ids = {v}\n"
        ));
        assert_eq!(c.modules[0].use_chroot, want, "{v}");
        assert_eq!(c.modules[0].numeric_ids, want, "{v}");
    }
    let c = ok("[m]\npath = /x\n");
    assert_eq!(c.modules[0].use_chroot, None);
    assert_eq!(c.modules[0].munge_symlinks, None);
}

#[test]
fn integers_are_read_like_atoi() {
    let c = ok("[m]\npath = /x\ntimeout = 600\nmax connections = -1\nmax verbosity = +3\n");
    let m = &c.modules[0];
    assert_eq!(
        (m.timeout, m.max_connections, m.max_verbosity),
        (600, -1, 3)
    );
    // Trailing junk is ignored with a warning; no digits reads as 0.
    let c = ok("[m]\npath = /x\ntimeout = 600 ; ten minutes\nmax connections = lots\n");
    assert_eq!(
        (c.modules[0].timeout, c.modules[0].max_connections),
        (600, 0)
    );
    let w = warning_texts(&c);
    assert!(w.iter().any(|w| w.contains(
        "value \"600 ; ten minutes\" of parameter \"timeout\" is not a plain integer; it is read as 600"
    )));
    assert!(w
        .iter()
        .any(|w| w.contains("\"lots\" of parameter \"max connections\"")));
    // Values our types cannot hold are problems.
    let e = err("port = 70000\n[m]\npath = /x\ntimeout = -5\n");
    assert_eq!(
        messages(&e),
        vec![
            (1, "port 70000 is out of range".to_owned()),
            (4, "timeout -5 is negative".to_owned())
        ]
    );
    let e = err("[m]\npath = /x\ntimeout = 99999999999\n");
    assert_eq!(e.problems[0].line, 3);
}

#[test]
fn defaults_match_stock() {
    let c = ok("[m]\npath = /srv/m\n");
    let m = &c.modules[0];
    assert_eq!(m.name, "m");
    assert_eq!(m.path, PathBuf::from("/srv/m"));
    assert_eq!(m.comment, "");
    assert!(m.read_only && m.list && m.strict_modes && m.reverse_lookup && m.forward_lookup);
    assert!(!m.write_only && !m.ignore_errors && !m.ignore_nonreadable && !m.transfer_logging);
    assert!(!m.fake_super && !m.insecure_links);
    assert_eq!(m.max_connections, 0);
    assert_eq!(m.max_verbosity, 1);
    assert_eq!(m.timeout, 0);
    assert_eq!(m.lock_file, PathBuf::from("/var/run/rsyncd.lock"));
    assert_eq!(m.log_format, "%o %h [%a] %m (%u) %f %l");
    assert_eq!(m.syslog_tag, "rsyncd");
    assert_eq!(m.syslog_facility, "daemon");
    assert_eq!(m.dont_compress.len(), 96);
    assert_eq!(m.dont_compress[0], "*.3g2");
    assert!(m.uid.is_none() && m.gid.is_empty() && m.refuse_options.is_empty());
    assert!(m.filter.is_empty() && m.include.is_empty() && m.exclude.is_empty());
    assert_eq!(m.raw, vec![("path".to_owned(), "/srv/m".to_owned(), 2)]);
    let g = &c.global;
    assert_eq!(g.port, None);
    assert_eq!(g.listen_backlog, None);
    assert!(!g.proxy_protocol && g.proxy_protocol_hosts.is_empty() && g.socket_options.is_empty());
    assert!(g.raw.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn paths_lose_trailing_slashes() {
    let c = ok("[a]\npath = /srv/a///\n[b]\npath = /\n[c]\npath = /srv/with space /\n");
    assert_eq!(c.modules[0].path, PathBuf::from("/srv/a"));
    assert_eq!(c.modules[1].path, PathBuf::from("/"));
    assert_eq!(c.modules[2].path, PathBuf::from("/srv/with space "));
}

#[test]
fn lists_split_like_stock() {
    let c = ok(concat!(
        "[m]\npath = /x\n",
        "gid = wheel, staff  users\n",
        "refuse options = c delete\tx  !delete-during\n",
        "dont compress = *.gz\t*.iso\n",
    ));
    let m = &c.modules[0];
    assert_eq!(m.gid, ["wheel", "staff", "users"]);
    // set_refuse_options splits on spaces only.
    assert_eq!(m.refuse_options, ["c", "delete\tx", "!delete-during"]);
    assert_eq!(m.dont_compress, ["*.gz", "*.iso"]);
    // conf_strtok: a leading comma means "split on commas only".
    assert_eq!(
        conf_strtok(", @Some Group:deny, admin:rw ,,"),
        ["@Some Group:deny", "admin:rw"]
    );
    assert_eq!(
        conf_strtok("joe:deny @guest:deny,admin:rw"),
        ["joe:deny", "@guest:deny", "admin:rw"]
    );
}

// ---------------------------------------------------------------------------
// Sections, defaults and merging (loadparm.c)
// ---------------------------------------------------------------------------

#[test]
fn global_module_parameters_are_positional_defaults() {
    // stock (p1): A "merged    continued", B x "later-default"; hidden not listed.
    let c = ok(concat!(
        "use chroot = no\n",
        "comment = default-c\n",
        "[A]\n",
        "path = /tmp\n",
        "Read  Only = yes\n",
        "readonly = no\n",
        "[a ]\n",
        "comment = merged \\\n",
        "   continued   \n",
        "[global]\n",
        "comment = later-default\n",
        "list = no\n",
        "[ B  x ]\n",
        "path = /tmp\n",
    ));
    let names: Vec<_> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["A", "B x"]);
    let (a, b) = (&c.modules[0], &c.modules[1]);
    assert_eq!(a.comment, "merged    continued");
    assert!(!a.read_only, "the later 'readonly = no' wins");
    assert!(a.list, "bools are copied when the module starts");
    assert_eq!(a.use_chroot, Some(false));
    assert_eq!(b.comment, "later-default");
    assert!(!b.list);
    assert!(c.module("A").is_some() && c.module("a").is_none() && c.module("B x").is_some());
    // The repeated [a ] is reported.
    assert!(warning_texts(&c)
        .iter()
        .any(|w| w.starts_with("rsyncd.conf line 7: module [a] is defined again")));
}

#[test]
fn unset_strings_fall_back_to_the_final_defaults() {
    // stock (p3): A "late", B "" (set empty), C not listed.
    let c = ok(concat!(
        "[A]\npath = /tmp\n",
        "[B]\npath = /tmp\ncomment =\n",
        "[global]\ncomment = late\nlist = no\n",
        "[C]\npath = /tmp\n",
    ));
    let m: Vec<_> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.comment.as_str(), m.list))
        .collect();
    assert_eq!(
        m,
        [("A", "late", true), ("B", "", true), ("C", "late", false)]
    );
    // Even the path can come from a later [global].
    let c = ok("[A]\ncomment = x\n[global]\npath = /srv/late\n");
    assert_eq!(c.modules[0].path, PathBuf::from("/srv/late"));
}

#[test]
fn name_parameter_renames_a_module() {
    // stock (p4): [ff] renamed to "renamed"; a second [ff] is a new module;
    // [renamed] continues the first.
    let c = ok(concat!(
        "[ff]\npath = /tmp\nname = renamed\ncomment = was ff\n",
        "[ff]\npath = /tmp\ncomment = second ff\n",
        "[renamed]\ncomment = merged into renamed?\n",
    ));
    let m: Vec<_> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.comment.as_str()))
        .collect();
    assert_eq!(
        m,
        [("renamed", "merged into renamed?"), ("ff", "second ff")]
    );
}

#[test]
fn global_parameter_in_module_is_ignored_with_stock_warning() {
    let c = ok("[m]\npath = /x\nport = 99\n");
    assert_eq!(c.global.port, None);
    assert_eq!(
        warning_texts(&c),
        ["rsyncd.conf line 3: Global parameter port found in module section!"]
    );
    let c = ok("port = 8730\naddress = 127.0.0.1\nmotd file = /etc/motd\n[m]\npath = /x\n[global]\nport = 8731\n");
    assert_eq!(c.global.port, Some(8731));
    assert_eq!(c.global.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.global.motd_file, Some(PathBuf::from("/etc/motd")));
    assert_eq!(c.global.raw.len(), 3);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn unsupported_parameters_warn_with_the_agreed_text() {
    let c = ok(
        "uid = nobody\n[m]\npath = /x\nfake super = yes\ntimeout = 5\nrefuse options = checksum\n",
    );
    assert_eq!(
        warning_texts(&c),
        ["rsyncd.conf line 4: parameter \"fake super\" is not yet supported; it is ignored"]
    );
    // ... and still parsed into the typed struct.
    let m = &c.modules[0];
    assert_eq!(
        (m.uid.as_deref(), m.fake_super, m.timeout),
        (Some("nobody"), true, 5)
    );
    assert_eq!(m.refuse_options, ["checksum"]);
    // The canonical name is reported, not the spelling used.
    let c = ok("[m]\npath = /x\nFakeSuper = no\n");
    assert_eq!(
        c.warnings[0].message,
        "parameter \"fake super\" is not yet supported; it is ignored"
    );
}
#[test]
fn every_stock_parameter_is_accepted_without_crashing() {
    let mut text = String::from("[m]\npath = /x\n");
    let mut locals = 0;
    for d in TABLE {
        let v = match d.kind {
            _ if d.id == P::Filter => "- v",
            _ if d.id == P::AuthDigest => "md5",
            params::Kind::Bool | params::Kind::Bool3 => "no",
            params::Kind::Int => "7",
            params::Kind::Enum => "local3",
            _ => "v",
        };
        if !matches!(d.id, P::Path | P::Name) {
            text.push_str(&format!("{} = {v}\n", d.label));
            if d.class == params::Class::Local {
                locals += 1;
            }
        }
    }
    let c = ok(&text);
    let m = &c.modules[0];
    assert_eq!(m.syslog_facility, "local3");
    assert_eq!(m.charset.as_deref(), Some("v"));
    assert_eq!(m.temp_dir, Some(PathBuf::from("v")));
    assert_eq!(m.daemon_port, Some(7));
    assert_eq!(m.rescan_interval, Some(7));
    // Globals in a module section are reported, the rest "not yet supported",
    // and the hostname tokens that can never match (both lookups are off).
    let globals = TABLE
        .iter()
        .filter(|d| d.class == params::Class::Global)
        .count();
    let notyet_locals = TABLE
        .iter()
        .filter(|d| d.class == params::Class::Local && d.support == params::Support::NotYet)
        .count();
    assert_eq!(
        c.warnings.len(),
        globals + notyet_locals + 2,
        "{:#?}",
        c.warnings
    );
    // path + every local written.
    assert_eq!(m.raw.len(), 1 + locals);
}

#[test]
fn unknown_parameters_warn_in_stock_words() {
    let c = ok("[m]\npath = /x\nfrobnicate = 1\nread_only = no\n-foo = 1\n");
    assert!(c.modules[0].read_only, "stock ignores read_only");
    assert_eq!(
        warning_texts(&c),
        [
            "rsyncd.conf line 3: Unknown Parameter encountered: \"frobnicate\"; IGNORING unknown parameter \"frobnicate\"",
            "rsyncd.conf line 4: Unknown Parameter encountered: \"read_only\"; IGNORING unknown parameter \"read_only\" (did you mean \"read only\"?)",
            "rsyncd.conf line 5: IGNORING unknown parameter \"-foo\"",
        ]
    );
}

#[test]
fn module_names_follow_stock_rules() {
    let e = err("[a/b]\npath = /x\n[ok]\npath = /y\n[]\n[  ]\n");
    assert_eq!(
        messages(&e),
        [
            (1, "invalid section name in configuration file: a/b (a module name cannot contain '/')".to_owned()),
            (5, "Empty section name in config file.".to_owned()),
            (6, "Empty section name in config file.".to_owned()),
        ]
    );
    // The global section name is matched like parameter names.
    let c = ok("[m]\npath = /x\n[ G lo BAL ]\ncomment = c\n");
    assert_eq!(c.modules.len(), 1);
    assert_eq!(c.modules[0].comment, "c");
    // Names are case-sensitive for clients but merge case-insensitively.
    let c = ok("[Fedora]\npath = /x\n[FEDORA]\ncomment = y\n");
    assert_eq!(c.modules.len(), 1);
    assert_eq!(c.module("Fedora").map(|m| m.comment.as_str()), Some("y"));
}

#[test]
fn missing_path_uses_stock_wording() {
    let e = err("[a]\ncomment = x\n[b]\npath =\n");
    assert_eq!(
        messages(&e),
        [
            (1, "No path specified for module a".to_owned()),
            (3, "No path specified for module b".to_owned())
        ]
    );
    assert!(e.problems.iter().all(|p| p.key.as_deref() == Some("path")));
}

#[test]
fn no_modules_is_only_a_warning() {
    let c = ok("port = 873\n");
    assert!(c.modules.is_empty());
    assert_eq!(
        warning_texts(&c),
        ["rsyncd.conf line 0: no modules are defined"]
    );
}

// ---------------------------------------------------------------------------
// Access control must fail closed
// ---------------------------------------------------------------------------

#[test]
fn access_parameters_are_checked_at_load() {
    let c = ok(concat!(
        "[auth]\npath = /a\nauth users = tridge, susan\nsecrets file = /etc/s\nauth digest = sha256\n",
        "[allow]\npath = /b\nhosts allow = 10.0.0.0/8 ::ffff:192.0.2.0/120, 127.0.0.1\n",
        "[deny]\npath = /c\nhosts deny = *.example.com\n",
        "[emptyallow]\npath = /d\nhosts allow =\n",
    ));
    assert_eq!(c.modules[0].auth_users, ["tridge", "susan"]);
    assert_eq!(c.modules[0].auth_digest.as_deref(), Some("sha256"));
    assert_eq!(
        c.modules[1].hosts_allow,
        ["10.0.0.0/8", "::ffff:192.0.2.0/120", "127.0.0.1"]
    );
    assert!(c.modules[3].hosts_allow.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Tokens stock would quietly fail to match are errors here.
    let e = err(concat!(
        "[a]\npath = /a\nhosts allow = 10.1\n",
        "[b]\npath = /b\nhosts deny = 10.0.0.0/33 @netgroup\n",
        "[c]\npath = /c\nauth users = x\nsecrets file = /s\nauth digest = sha3\n",
    ));
    let got: Vec<_> = e
        .problems
        .iter()
        .map(|p| (p.line, p.key.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "hosts allow".to_owned()),
            (6, "hosts deny".to_owned()),
            (6, "hosts deny".to_owned()),
            (11, "auth digest".to_owned()),
        ]
    );
    assert!(
        e.problems[0].message.contains("\"10.1\""),
        "{}",
        e.problems[0].message
    );
    // Auth users without a secrets file, hostname tokens that cannot match,
    // and refuse tokens that match nothing are warnings.
    let c = ok("[a]\npath = /a\nauth users = x\nrefuse options = checksum frobnicate\nreverse lookup = no\nhosts allow = *.example.org\n");
    assert_eq!(
        warning_texts(&c),
        [
            "rsyncd.conf line 6: module a: hosts allow token \"*.example.org\" needs a host name but reverse lookup is off: it never matches",
            "rsyncd.conf line 3: module a has \"auth users\" but no \"secrets file\": every login will fail",
            "rsyncd.conf line 4: No match for refuse-options string \"frobnicate\"",
        ]
    );
}
#[test]
fn protections_are_inherited_and_misspellings_refused() {
    // A global default, and a later [global] that only reaches the earlier
    // module through the string fall-back: both protect every module.
    let c = ok("hosts allow = 10.0.0.0/8\n[a]\npath = /a\n[b]\npath = /b\n");
    assert_eq!(c.modules[1].hosts_allow, ["10.0.0.0/8"]);
    let c = ok("[a]\npath = /a\n[global]\nhosts deny = 1.2.3.4\n");
    assert_eq!(c.modules[0].hosts_deny, ["1.2.3.4"]);
    // Misspelt protections would be dropped silently by stock: refuse them.
    let e = err("[a]\npath = /a\nhosts_allow = 10.0.0.0/8\nAuth-Users = x\nrefuse_options = c\n");
    assert_eq!(e.problems.len(), 3);
    assert_eq!(e.problems[0].key.as_deref(), Some("hosts allow"));
    assert_eq!(e.problems[1].key.as_deref(), Some("auth users"));
    assert_eq!(e.problems[2].key.as_deref(), Some("refuse options"));
    // A protection set and then cleared is fine.
    let c = ok("hosts allow = 10.0.0.0/8\n[a]\npath = /a\nhosts allow =\n");
    assert!(c.modules[0].hosts_allow.is_empty());
}
#[test]
fn write_only_and_exclude_from_are_accepted() {
    let c = ok("[w]\npath = /w\nwrite only = yes\n[x]\npath = /x\nexclude from = /etc/x\ninclude from = /etc/i\n");
    assert!(c.modules[0].write_only);
    assert_eq!(c.modules[1].exclude_from, Some(PathBuf::from("/etc/x")));
    assert_eq!(c.modules[1].include_from, Some(PathBuf::from("/etc/i")));
}

#[test]
fn our_extensions() {
    let c = ok("max sessions = 10\nmax sessions per host = 2\n[pub]\npath = /p\n[priv]\npath = /q\ndaemon port = 874\n");
    assert_eq!(
        (c.global.max_sessions, c.global.max_sessions_per_host),
        (10, 2)
    );
    assert_eq!(
        (c.modules[0].daemon_port, c.modules[1].daemon_port),
        (None, Some(874))
    );
    // `rescan interval`: unset = automatic, 0 = off, a global default applies.
    let c = ok("[a]\npath = /p\n[b]\npath = /q\nrescan interval = 0\n[c]\npath = /r\nrescan interval = 60\n");
    let got: Vec<_> = c.modules.iter().map(|m| m.rescan_interval).collect();
    assert_eq!(got, [None, Some(0), Some(60)]);
    let c = ok("rescan interval = 30\n[a]\npath = /p\n");
    assert_eq!(c.modules[0].rescan_interval, Some(30));
    let c = ok("[m]\npath = /p\n");
    assert_eq!(
        (c.global.max_sessions, c.global.max_sessions_per_host),
        (1024, 64)
    );
    let e = err("max sessions = 0\n[m]\npath = /p\ndaemon port = 70000\n");
    let got: Vec<_> = e
        .problems
        .iter()
        .map(|p| (p.line, p.key.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "max sessions".to_owned()),
            (4, "daemon port".to_owned())
        ]
    );
}
#[test]
fn handshake_and_drain_limits() {
    let c = ok("handshake timeout = 3\nmax handshakes = 40\nmax handshakes per host = 4\ndrain timeout = 0\n[m]\npath = /p\n");
    let g = &c.global;
    assert_eq!(g.handshake_timeout, std::time::Duration::from_secs(3));
    assert_eq!((g.max_handshakes, g.max_handshakes_per_host), (40, 4));
    assert_eq!(g.drain_timeout, std::time::Duration::ZERO);
    let g = ok("[m]\npath = /p\n").global;
    assert_eq!(g.handshake_timeout, crate::access::limits::DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!((g.max_handshakes, g.max_handshakes_per_host), (256, 16));
    assert_eq!(g.drain_timeout, std::time::Duration::from_secs(30));
    let e = err("handshake timeout = 0\nmax handshakes = -1\ndrain timeout = -5\n[m]\npath = /p\n");
    let got: Vec<_> = e.problems.iter().map(|p| (p.line, p.key.clone().unwrap_or_default())).collect();
    assert_eq!(got, [(1, "handshake timeout".to_owned()), (2, "max handshakes".to_owned()), (3, "drain timeout".to_owned())]);
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

#[test]
fn stock_simple_example() {
    let c = load_with(&fixture("stock-example-simple.conf"), &opts()).expect("parses");
    assert_eq!(c.modules.len(), 1);
    let m = c.module("ftp").expect("ftp");
    assert_eq!(m.path, PathBuf::from("/home/ftp"));
    assert_eq!(m.comment, "ftp export area");
    assert!(m.read_only && m.list);
    assert!(c.warnings.is_empty());
}

#[test]
fn stock_sophisticated_example() {
    let path = fixture("stock-example.conf");
    let c = load_with(&path, &opts()).expect("parses, authentication included");
    let cvs = c.module("cvs").unwrap();
    assert_eq!(cvs.auth_users, ["tridge", "susan"]);
    assert_eq!(cvs.secrets_file, Some(PathBuf::from("/etc/rsyncd.secrets")));
    // Every parameter of stock's example is honoured: no warnings.
    let w: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.line, w.message.clone()))
        .collect();
    assert_eq!(w, []);
    // Without the cvs module the rest is served as stock would.
    let text = fs::read_to_string(&path).unwrap();
    let cut = text.find("[cvs]").unwrap();
    let c = parse(&text[..cut]).expect("parses without [cvs]");
    let names: Vec<_> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["ftp", "sambaftp", "rsyncftp", "sambawww"]);
    let ftp = &c.modules[0];
    assert_eq!(ftp.path, PathBuf::from("/var/ftp/./pub"));
    assert_eq!(ftp.comment, "whole ftp area (approx 6.1 GB)");
    assert_eq!(
        (ftp.uid.as_deref(), ftp.gid.clone()),
        (Some("nobody"), vec!["nobody".to_owned()])
    );
    assert_eq!((ftp.use_chroot, ftp.max_connections), (Some(true), 4));
    assert_eq!(ftp.syslog_facility, "local5");
    assert_eq!(
        c.global.pid_file,
        Some(PathBuf::from("/var/run/rsyncd.pid"))
    );
}

#[test]
fn fedora_style_mirror() {
    let c = load_with(&fixture("fedora-mirror.conf"), &opts()).expect("parses");
    let summary: Vec<_> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.list))
        .collect();
    assert_eq!(
        summary,
        [
            ("fedora", true),
            ("epel", true),
            ("fedora-enchilada", false),
            ("fedora-buffet0", false)
        ]
    );
    let f = c.module("fedora").unwrap();
    assert_eq!(f.path, PathBuf::from("/srv/pub/fedora/linux"));
    assert_eq!(f.exclude, rules(&[".~tmp~/", "/.private/"]));
    assert_eq!(f.refuse_options, ["checksum"]);
    assert_eq!(f.timeout, 600);
    assert_eq!(f.max_connections, 60);
    assert!(f.read_only && !f.transfer_logging);
    assert_eq!(f.dont_compress.len(), 10);
    assert_eq!(f.log_file, Some(PathBuf::from("/var/log/rsyncd.log")));
    let e = c.module("fedora-enchilada").unwrap();
    assert_eq!(e.path, PathBuf::from("/srv/pub/fedora"));
    assert_eq!(e.comment, "Fedora (full tree)");
    let b = c.module("fedora-buffet0").unwrap();
    assert_eq!(b.refuse_options, ["checksum", "delete"]);
    assert_eq!(c.global.motd_file, Some(PathBuf::from("/etc/rsyncd.motd")));
    assert_eq!(
        c.global.log_file,
        Some(PathBuf::from("/var/log/rsyncd.log"))
    );
    assert_eq!(c.global.pid_file, Some(PathBuf::from("/run/rsyncd.pid")));
    // Every parameter the Fedora-style config sets is honoured (`use
    // chroot`, `pid file`, `dont compress`, ...): no warnings.
    let lines: Vec<_> = c.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [0usize; 0]);
}

#[test]
fn broken_config_reports_every_problem_with_lines() {
    let path = fixture("broken.conf");
    let e = load_with(&path, &opts()).expect_err("broken");
    let got = messages(&e);
    assert_eq!(
        got,
        [
            (7, "Badly formed boolean in configuration file: \"nope\". (parameter \"list\"; use yes/no, true/false or 1/0)".to_owned()),
            (12, "invalid section name in configuration file: bad/name (a module name cannot contain '/')".to_owned()),
            (21, "badly formed line in config file (no \"=\"): read only no (stock rsync ignores it)".to_owned()),
            (22, "unknown parameter \"hosts_deny\" looks like \"hosts deny\", a protection that stock rsync would silently drop; spell it \"hosts deny\"".to_owned()),
            (24, "Empty section name in config file.".to_owned()),
            (25, "Invalid parameter name in config file.".to_owned()),
            (9, "No path specified for module no-path".to_owned()),
        ]
    );
    assert!(e.problems.iter().all(|p| p.file == path));
}

// ---------------------------------------------------------------------------
// &include and &merge
// ---------------------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn include_and_merge_follow_stock_scoping() {
    // stock (p2): A after-include, C from-inc-default, B after-include,
    // D a-default, E e-in-b, F merged-default, G after-include.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inc1 = write(
        dir,
        "inc1.conf",
        "comment = from-inc-default\n[C]\npath = /tmp\n",
    );
    fs::create_dir(dir.join("d")).unwrap();
    write(
        &dir.join("d"),
        "b.conf",
        "[E]\npath = /tmp\ncomment = e-in-b\n",
    );
    write(
        &dir.join("d"),
        "a.conf",
        "comment = a-default\n[D]\npath = /tmp\n",
    );
    write(&dir.join("d"), "x.inc", "comment = merged-default\n");
    write(&dir.join("d"), "ignored.txt", "[Z]\npath = /tmp\n");
    let main = format!(
        "[A]\npath = /tmp\n&include {}\ncomment = after-include\n[B]\npath = /tmp\n&include   =  {}\n[F]\npath = /tmp\n&merge {}\n[G]\npath = /tmp\n",
        inc1.display(),
        dir.join("d").display(),
        dir.join("d").display()
    );
    let c = ok(&main);
    let got: Vec<_> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.comment.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("A", "after-include"),
            ("C", "from-inc-default"),
            ("B", "after-include"),
            ("D", "a-default"),
            ("E", "e-in-b"),
            ("F", "merged-default"),
            ("G", "after-include"),
        ]
    );
}

#[test]
fn include_diagnostics_name_the_included_file() {
    let t = tempfile::tempdir().unwrap();
    let sub = write(
        t.path(),
        "sub.conf",
        "\n\nfrobnicate = 1\n[x]\npath = /x\nlist = maybe\n",
    );
    let c_err = err(&format!("[m]\npath = /m\n&include {}\n", sub.display()));
    assert_eq!(c_err.problems.len(), 1);
    assert_eq!(
        (c_err.problems[0].file.clone(), c_err.problems[0].line),
        (sub.clone(), 6)
    );
    assert_eq!(
        (c_err.warnings[0].file.clone(), c_err.warnings[0].line),
        (sub, 3)
    );
}

#[test]
fn include_problems() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing.conf");
    let e = err(&format!(
        "[m]\npath = /m\n&include {}\n&bogus /x\n&include\n",
        missing.display()
    ));
    let got = messages(&e);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, 3);
    assert!(got[0].1.starts_with(&format!(
        "unable to stat config file \"{}\": ",
        missing.display()
    )));
    assert_eq!(got[1], (4, "Unknown directive: &bogus.".to_owned()));
    assert_eq!(
        got[2],
        (
            5,
            "badly formed line in config file (no \"=\"): &include (stock rsync ignores it)"
                .to_owned()
        )
    );
    // An include loop stops at the depth limit with a problem, not a crash.
    let lp = t.path().join("loop.conf");
    fs::write(&lp, format!("&merge {}\n", lp.display())).unwrap();
    let e = load_with(&lp, &opts()).expect_err("loop");
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0].message.contains("nested more than 32 deep"));
    // An empty directory is fine; a directory with no matching files too.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let c = ok(&format!(
        "&include {}\n&merge {}\n[m]\npath = /m\n",
        empty.display(),
        empty.display()
    ));
    assert_eq!(c.modules.len(), 1);
}

#[test]
fn include_directory_files_are_read_in_byte_order() {
    let t = tempfile::tempdir().unwrap();
    for (n, c) in [
        ("b.conf", "B"),
        ("a.conf", "a"),
        ("C.conf", "C"),
        (".hidden.conf", "hidden"),
    ] {
        write(t.path(), n, &format!("[{c}]\npath = /{c}\n"));
    }
    let c = ok(&format!("&include {}/\n", t.path().display()));
    let names: Vec<_> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["hidden", "C", "a", "B"]);
}

#[test]
fn merge_can_set_defaults_and_continue_modules() {
    let t = tempfile::tempdir().unwrap();
    let g = write(t.path(), "globals.inc", "read only = no\n");
    let m = write(
        t.path(),
        "module.inc",
        "comment = from merge\n[shared]\nlist = no\n",
    );
    let c = ok(&format!(
        "&merge {}\n[shared]\npath = /s\n&merge {}\npath = /s2\n[global]\nread only = yes\n[after]\npath = /a\n",
        g.display(),
        m.display()
    ));
    let shared = c.module("shared").unwrap();
    // The merged text sets the defaults and then continues the module.
    assert!(!shared.read_only);
    assert_eq!(shared.comment, "from merge");
    assert!(!shared.list);
    assert_eq!(
        shared.path,
        PathBuf::from("/s2"),
        "the context stays where the merge left it"
    );
    let after = c.module("after").unwrap();
    assert!(after.read_only);
    assert!(after.list);
    assert_eq!(
        after.comment, "",
        "a merge inside a module does not touch the defaults"
    );
}

// ---------------------------------------------------------------------------
// %VAR% expansion
// ---------------------------------------------------------------------------

#[test]
fn expand_vars_table() {
    let cases: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("%FOO%", "bar"),
        (
            "x %FOO% %NOPE% %foo% 100% %%FOO% %F%OO%",
            "x bar %NOPE% %foo% 100% %bar %F%OO%",
        ),
        ("%FOO%%FOO%", "barbar"),
        ("%FOO", "%FOO"),
        ("%", "%"),
        ("%%", "%%"),
        ("%SRV%/pub/", "/srv/mirror/pub/"),
        ("%1FOO%", "%1FOO%"),
    ];
    for (input, want) in cases {
        let got = expand_vars(input.as_bytes(), &fixed_env).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), *want, "{input:?}");
    }
    let big = |_: &[u8]| Some(vec![b'x'; 3000]);
    assert!(expand_vars(b"%A%", &big).is_err());
    let fits = |_: &[u8]| Some(vec![b'x'; 2051]);
    assert_eq!(expand_vars(b"%A%", &fits).unwrap().len(), 2051);
}

#[test]
fn parameters_expand_environment_variables() {
    // stock (p4): comment "x bar %NOPE% %foo% 100% %bar %F%OO%".
    let c = ok(concat!(
        "path = %SRV%/default\n",
        "[m]\ncomment = x %FOO% %NOPE% %foo% 100% %%FOO% %F%OO%\n",
        "list = %HIDE%\n",
        "exclude = /%FOO%/ %RSYNC_MODULE_NAME%.tmp\n",
        "[%FOO%]\npath = %SRV%/%RSYNC_MODULE_NAME%/\n",
    ));
    let m = &c.modules[0];
    assert_eq!(m.comment, "x bar %NOPE% %foo% 100% %bar %F%OO%");
    assert!(!m.list, "non-string values are expanded while reading");
    assert_eq!(m.path, PathBuf::from("/srv/mirror/default"));
    assert_eq!(m.exclude, rules(&["/bar/", "m.tmp"]));
    assert_eq!(c.modules[1].name, "bar");
    assert_eq!(c.modules[1].path, PathBuf::from("/srv/mirror/bar"));
    assert!(m.raw.contains(&(
        "comment".to_owned(),
        "x %FOO% %NOPE% %foo% 100% %%FOO% %F%OO%".to_owned(),
        3
    )));
}

#[test]
fn per_connection_variables_are_not_expanded() {
    // The daemon's own environment has RSYNC_HOST_NAME, but stock overrides
    // it for every connection: never use it for module strings.
    let c = ok("[m]\npath = /m\ncomment = hello %RSYNC_HOST_NAME% / %RSYNC_USER_NAME%\n");
    assert_eq!(
        c.modules[0].comment,
        "hello %RSYNC_HOST_NAME% / %RSYNC_USER_NAME%"
    );
    assert_eq!(c.warnings.len(), 2);
    assert!(c.warnings[0]
        .message
        .contains("refers to %RSYNC_HOST_NAME%"));
    // Where a wrong value could expose files, it is a problem.
    let e =
        err("[m]\npath = /home/%RSYNC_USER_NAME%\n[n]\npath = /n\nexclude = /%RSYNC_HOST_ADDR%/\n");
    assert_eq!(
        e.problems.iter().map(|p| p.line).collect::<Vec<_>>(),
        [2, 5]
    );
}

#[test]
fn exec_hooks_are_kept_as_written_without_warnings() {
    // Stock expands a hook's %VAR% for each connection (shell-quoted), so
    // the loader leaves every reference alone and warns about none.
    let c = ok(
        "pre-xfer exec = /bin/check %RSYNC_USER_NAME%\n[m]\npath = /m\n\
                post-xfer exec = log %RSYNC_MODULE_NAME% %FOO% %RSYNC_EXIT_STATUS%\n\
                early exec = true\n[n]\npath = /n\n",
    );
    let (m, n) = (&c.modules[0], &c.modules[1]);
    assert_eq!(
        m.pre_xfer_exec.as_deref(),
        Some("/bin/check %RSYNC_USER_NAME%")
    );
    assert_eq!(
        m.post_xfer_exec.as_deref(),
        Some("log %RSYNC_MODULE_NAME% %FOO% %RSYNC_EXIT_STATUS%")
    );
    assert_eq!(m.early_exec.as_deref(), Some("true"));
    assert_eq!(
        n.pre_xfer_exec.as_deref(),
        Some("/bin/check %RSYNC_USER_NAME%")
    );
    assert_eq!(
        (n.post_xfer_exec.as_deref(), n.early_exec.as_deref()),
        (None, None)
    );
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

// ---------------------------------------------------------------------------
// Filter rules
// ---------------------------------------------------------------------------

#[test]
fn filter_rule_splitting() {
    let ok_cases: &[(RuleList, &str, &[&str])] = &[
        (RuleList::OldPrefixes, "", &[]),
        (
            RuleList::OldPrefixes,
            "  *.tmp  /private/  ",
            &["*.tmp", "/private/"],
        ),
        (
            RuleList::OldPrefixes,
            "- /foo + /bar baz",
            &["- /foo", "+ /bar", "baz"],
        ),
        (RuleList::OldPrefixes, "! -x +y", &["!", "-x", "+y"]),
        (RuleList::OldPrefixes, "!foo", &["!foo"]),
        (RuleList::Filter, "- /foo  - /bar", &["- /foo", "- /bar"]),
        (RuleList::Filter, "-_/foo +/ /bar", &["-_/foo", "+/ /bar"]),
        (
            RuleList::Filter,
            "exclude /a include, /b hide c",
            &["exclude /a", "include, /b", "hide c"],
        ),
        (RuleList::Filter, "+,/ /b", &["+,/ /b"]),
        (
            RuleList::Filter,
            "merge /etc/rules dir-merge .rsync-filter",
            &["merge /etc/rules", "dir-merge .rsync-filter"],
        ),
        (RuleList::Filter, ". /etc/r :n- .f", &[". /etc/r", ":n- .f"]),
        (RuleList::Filter, "! clear", &["!", "clear"]),
        (RuleList::Filter, "-C", &["-C"]),
        (
            RuleList::Filter,
            "P /keep R /risk S x H y",
            &["P /keep", "R /risk", "S x", "H y"],
        ),
        (RuleList::Filter, "- /secret/***", &["- /secret/***"]),
    ];
    for (list, input, want) in ok_cases {
        let got = split_filter_rules(input.as_bytes(), *list)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got, rules(want), "{input:?}");
    }
    let bad_cases: &[(RuleList, &str, &str)] = &[
        (
            RuleList::OldPrefixes,
            "-  foo",
            "unexpected end of filter rule",
        ),
        (RuleList::Filter, "/foo", "Unknown filter rule"),
        (RuleList::Filter, "x foo", "Unknown filter rule"),
        (RuleList::Filter, "excludes foo", "Unknown filter rule"),
        (RuleList::Filter, "-", "unexpected end of filter rule"),
        (RuleList::Filter, "-\t/foo", "unexpected end of filter rule"),
        (RuleList::Filter, "-q /foo", "invalid modifier 'q'"),
        (RuleList::Filter, "!x", "'!' rule has trailing characters"),
        // The comma form takes modifiers right after the comma (stock too).
        (RuleList::Filter, "include,/b", "invalid modifier 'b'"),
    ];
    for (list, input, want) in bad_cases {
        let e = split_filter_rules(input.as_bytes(), *list).expect_err(input);
        assert!(e.contains(want), "{input:?}: {e}");
    }
}

#[test]
fn filter_parameters_are_split_and_checked() {
    let c = ok("[m]\npath = /m\nfilter = - /a  + /b\ninclude = /keep/ - /x\nexclude = *.tmp\n");
    let m = &c.modules[0];
    assert_eq!(m.filter, rules(&["- /a", "+ /b"]));
    assert_eq!(m.include, rules(&["/keep/", "- /x"]));
    assert_eq!(m.exclude, rules(&["*.tmp"]));
    let e = err("[m]\npath = /m\nfilter = /oops\n");
    assert_eq!(e.problems[0].line, 3);
    assert_eq!(e.problems[0].key.as_deref(), Some("filter"));
    assert!(e.problems[0].message.contains("Unknown filter rule"));
}

// ---------------------------------------------------------------------------
// Odds and ends
// ---------------------------------------------------------------------------

#[test]
fn dparams_apply_at_the_end_of_the_global_section() {
    let dparams = [
        "motdfile=/etc/other".to_owned(),
        "comment = from dparam".to_owned(),
    ];
    let o = LoadOptions {
        env: &fixed_env,
        dparams: &dparams,
    };
    let text = "motd file = /etc/motd\ncomment = global\n[m]\npath = /m\n";
    let c = parse_bytes_with(text.as_bytes(), Path::new("x.conf"), &o).unwrap();
    assert_eq!(c.global.motd_file, Some(PathBuf::from("/etc/other")));
    assert_eq!(c.modules[0].comment, "from dparam");
    let bad = ["nosuch=1".to_owned(), "noequals".to_owned()];
    let o = LoadOptions {
        env: &fixed_env,
        dparams: &bad,
    };
    let e = parse_bytes_with(text.as_bytes(), Path::new("x.conf"), &o).unwrap_err();
    assert_eq!(e.problems.len(), 2);
}

#[test]
fn non_utf8_and_nul_bytes() {
    let text = b"[m]\npath = /srv/\xff\ncomment = caf\xe9\n";
    let c = parse_bytes_with(text, Path::new("x"), &opts()).unwrap();
    assert_eq!(c.modules[0].path.as_os_str().as_bytes(), b"/srv/\xff");
    assert_eq!(c.modules[0].comment, "caf\u{fffd}");
    assert_eq!(c.warnings.len(), 1);
    let e = parse_bytes_with(b"[m]\npath = /m\n\0[n]\n", Path::new("x"), &opts()).unwrap_err();
    assert_eq!(
        messages(&e),
        [(
            3,
            "config file contains a NUL byte (stock rsync stops reading there)".to_owned()
        )]
    );
    let e = parse_bytes_with(b"[\xff]\npath = /m\n", Path::new("x"), &opts()).unwrap_err();
    assert!(e.problems[0].message.contains("not valid UTF-8"));
}

#[test]
fn load_reports_unreadable_files() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("nope.conf");
    let e = load_with(&p, &opts()).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0]
        .message
        .starts_with(&format!("unable to open config file \"{}\"", p.display())));
}

#[test]
fn parse_str_uses_the_process_environment() {
    // PATH is set in any test environment.
    let c = parse_str("[m]\npath = /m\ncomment = %PATH%\n", Path::new("x")).unwrap();
    assert_eq!(c.modules[0].comment, std::env::var("PATH").unwrap());
}

#[test]
fn socket_options_parse_like_set_socket_options() {
    let c = ok("socket options = SO_KEEPALIVE, TCP_NODELAY SO_SNDBUF=65536\tIPTOS_LOWDELAY=3 \
                so_rcvbuf=1,SO_FROB SO_RCVTIMEO=5 SO_KEEPALIVE=0 SO_RCVLOWAT=x\n[m]\npath = /x\n");
    use SocketOptionName as N;
    let got: Vec<_> = c
        .global
        .socket_options
        .iter()
        .map(|o| (o.name, o.value))
        .collect();
    assert_eq!(
        got,
        [
            (N::KeepAlive, 1),
            (N::TcpNoDelay, 1),
            (N::SndBuf, 65536),
            (N::IpTosLowDelay, 3),
            (N::KeepAlive, 0),
            // atoi("x") is 0.
            (N::RcvLowat, 0),
        ]
    );
    // Stock's texts for its complaints (socket.c), all on the line.
    assert_eq!(
        warning_texts(&c),
        [
            "rsyncd.conf line 1: syntax error -- IPTOS_LOWDELAY does not take a value",
            "rsyncd.conf line 1: Unknown socket option so_rcvbuf",
            "rsyncd.conf line 1: Unknown socket option SO_FROB",
            "rsyncd.conf line 1: socket option SO_RCVTIMEO is ignored: the daemon's timeouts (\"timeout\") apply instead",
        ]
    );
    assert!(ok("socket options =\n[m]\npath = /x\n").global.socket_options.is_empty());
    for n in SocketOptionName::ALL {
        assert_eq!(SocketOptionName::from_name(n.name()), Some(n));
    }
}

#[test]
fn listen_backlog_values() {
    let g = |t: &str| ok(&format!("{t}[m]\npath = /x\n")).global.listen_backlog;
    assert_eq!(g(""), None);
    assert_eq!(g("listen backlog = 5\n"), Some(5));
    assert_eq!(g("listen backlog = 0\n"), Some(0));
    let e = err("listen backlog = -3\n[m]\npath = /x\n");
    assert_eq!(messages(&e), [(1, "listen backlog -3 is negative".to_owned())]);
}

#[test]
fn proxy_protocol_settings() {
    let c = ok("proxy protocol = yes\nproxy protocol hosts = 10.0.0.1, 192.168.0.0/16\tProxy.Example\n[m]\npath = /x\n");
    assert!(c.global.proxy_protocol);
    assert_eq!(
        c.global.proxy_protocol_hosts,
        ["10.0.0.1", "192.168.0.0/16", "proxy.example"]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Without a trusted list every connection is refused (stock 3.5.0): say so.
    let c = ok("proxy protocol = true\n[m]\npath = /x\n");
    assert_eq!(
        warning_texts(&c),
        ["rsyncd.conf line 1: \"proxy protocol = true\" but \"proxy protocol hosts\" is unset: all connections \
          will be rejected as untrusted proxy peers.  Set \"proxy protocol hosts\" to your trusted proxy's address."]
    );
    // A list without the switch does nothing and is no finding.
    let c = ok("proxy protocol hosts = 10.0.0.1\n[m]\npath = /x\n");
    assert!(!c.global.proxy_protocol && c.warnings.is_empty());
    // A malformed token stops the daemon, as for hosts allow.
    let e = err("proxy protocol = yes\nproxy protocol hosts = 10.0.0.1/99\n[m]\npath = /x\n");
    assert_eq!(messages(&e).len(), 1);
    assert_eq!(messages(&e)[0].0, 2);
    assert!(messages(&e)[0].1.contains("10.0.0.1/99"), "{:?}", messages(&e));
}

#[test]
fn fullfiletimelist_and_checksum_cache_parameters() {
    let c = ok("[a]\npath = /p\n[b]\npath = /q\nfullfiletimelist = yes\n\
                [c]\npath = /r\nfullfiletimelist name = FL\nfullfiletimelist checksums = repomd.xml, TIME\n\
                [d]\npath = /s\nfullfiletimelist = no\nfullfiletimelist name = X\n\
                [e]\npath = /t\nchecksum cache = yes\nchecksum cache rate = 0\n");
    let got: Vec<_> = c.modules.iter().map(|m| m.fullfiletimelist.clone()).collect();
    assert_eq!(
        got,
        [None, Some(b"fullfiletimelist-b".to_vec()), Some(b"FL".to_vec()), None, None]
    );
    assert_eq!(c.modules[0].fullfiletimelist_checksums, [b"repomd.xml".to_vec()]);
    assert_eq!(
        c.modules[2].fullfiletimelist_checksums,
        [b"repomd.xml".to_vec(), b"TIME".to_vec()]
    );
    let got: Vec<_> = c.modules.iter().map(|m| (m.checksum_cache, m.checksum_cache_rate)).collect();
    assert_eq!(got, [(false, 32), (false, 32), (false, 32), (false, 32), (true, 0)]);
    let e = err("[m]\npath = /p\nfullfiletimelist name = a/b\nchecksum cache rate = -1\n");
    let got: Vec<_> = e.problems.iter().map(|p| (p.line, p.key.clone().unwrap_or_default())).collect();
    assert_eq!(
        got,
        [(3, "fullfiletimelist name".to_owned()), (4, "checksum cache rate".to_owned())]
    );
}
