//! Client filter rules (sent to the daemon, which applies them as sender) and
//! daemon-side `exclude`/`filter` module parameters.

use interop_tests::{differential, Case, RunResult};

use crate::common::{cases, filter_tree};

/// Pulls the filter tree with `opts` (plus `-ai`); `gone` must be absent
/// from stock's itemized output, `kept` present.
fn filt(name: &str, opts: &[&str], gone: &[&str], kept: &[&str]) {
    let mut args = vec!["-ai"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let (a, _) = differential(
        &Case::new(name, vec![filter_tree()])
            .args(&args)
            .expect_code(0),
    );
    check(&a, gone, kept);
}

fn check(a: &RunResult, gone: &[&str], kept: &[&str]) {
    let names: Vec<&str> = a.stdout.lines().filter_map(|l| l.get(12..)).collect();
    for g in gone {
        assert!(!names.contains(g), "{g:?} transferred:\n{}", a.stdout);
    }
    for k in kept {
        assert!(names.contains(k), "{k:?} not transferred:\n{}", a.stdout);
    }
}

/// The filter tree served with daemon-side `key = value`, pulled with `args`.
fn daemon_side(
    name: &str,
    key: &str,
    value: &str,
    args: &[&str],
    code: i32,
) -> (RunResult, RunResult) {
    differential(
        &Case::new(name, vec![filter_tree().with(key, value)])
            .args(args)
            .expect_code(code),
    )
}

const EXCL: (&str, &str) = ("exclude", "secret/ *.tmp");

cases! {
    exclude_o => filt("exclude_o", &["--exclude=*.o"], &["a.o", "dir/y.o", "dir/sub/z.o"], &["a.c", "dir/sub/z.txt"]);
    include_txt_only => filt(
        "include_txt_only",
        &["--include=*/", "--include=*.txt", "--exclude=*"],
        &["a.o", "top", "src/main.c"],
        &["a.txt", "dir/sub/z.txt", "sub/deep/d.txt"],
    );
    filter_minus_anchored_top => filt("filter_minus_top", &["--filter=- /top"], &["top"], &["sub/top", "sub/deep/top"]);
    filter_dir_triple_star => filt(
        "filter_dir_triple_star",
        &["--filter=+ dir/***", "--filter=- *"],
        &["top", "a.txt", "sub/"],
        &["dir/", "dir/x.txt", "dir/sub/z.o"],
    );
    cvs_exclude => filt(
        "cvs_exclude",
        &["-C"],
        &["a.o", "core", "foo.bak", "x~", "notes.orig", "CVS/", ".git/", "src/main.o", "src/lib.so", "src/generated.h"],
        &["a.c", "src/main.c", "src/.cvsignore", "keep.txt"],
    );
    unanchored_name_everywhere => filt("unanchored_top", &["--exclude=top"], &["top", "sub/top", "sub/deep/top"], &["sub/deep/d.txt"]);
    anchored_subpath => filt("anchored_subpath", &["--exclude=/dir/sub"], &["dir/sub/", "dir/sub/z.txt"], &["dir/x.txt"]);
    double_star => filt("double_star", &["--exclude=sub/**/top"], &["sub/deep/top"], &["top", "sub/top"]);
    double_star_prefix => filt("double_star_prefix", &["--exclude=**/sub/*.o"], &["dir/sub/z.o"], &["dir/sub/z.txt", "a.o"]);
    dir_only_pattern => filt("dir_only_pattern", &["--exclude=sub/"], &["sub/", "dir/sub/"], &["dir/x.txt"]);
    include_overrides_later_exclude => filt(
        "include_then_exclude",
        &["--include=dir/y.o", "--exclude=*.o"],
        &["a.o", "dir/sub/z.o"],
        &["dir/y.o"],
    );
    char_class_and_question => filt("char_class", &["--exclude=[ab].?"], &["a.o", "a.c"], &["a.txt", "b.txt"]);
    exclude_from_file => {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("rules");
        std::fs::write(&f, "# comment\n*.o\n\n/secret\n").unwrap();
        let arg = format!("--exclude-from={}", f.display());
        filt("exclude_from", &[&arg], &["a.o", "secret/"], &["a.c"]);
    };
    merge_rule => {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("rules");
        std::fs::write(&f, "- *.txt\n+ dir/\n- /dir/*\n").unwrap();
        let arg = format!("--filter=merge {}", f.display());
        filt("merge_rule", &[&arg], &["a.txt", "dir/x.txt", "dir/y.o"], &["dir/", "a.o"]);
    };
    #[ignore = "daemon gap: dir-merge rules refused ('per-directory merge-file (dir-merge) rules are not supported by this server: :- .cvsignore', exit 4)"]
    dir_merge_per_dir_rules => filt(
        "dir_merge_cvsignore",
        &["--filter=:- .cvsignore"],
        &["src/generated.h"],
        &["src/main.c", "src/.cvsignore"],
    );
    delete_with_exclude_protects => {
        let (a, _) = differential(
            &Case::new("delete_exclude", vec![filter_tree()])
                .args(&["-ai", "--delete", "--exclude=*.o", "{url}/", "{dest}/"])
                .prepare_dest(|d| {
                    std::fs::write(d.join("local.o"), b"kept\n").unwrap();
                    std::fs::write(d.join("local.c"), b"deleted\n").unwrap();
                })
                .expect_code(0),
        );
        assert!(a.stdout.contains("*deleting   local.c\n"), "{}", a.stdout);
        assert!(!a.stdout.contains("local.o"), "{}", a.stdout);
    };
    delete_excluded => {
        let (a, _) = differential(
            &Case::new("delete_excluded", vec![filter_tree()])
                .args(&["-ai", "--delete-excluded", "--exclude=*.o", "{url}/", "{dest}/"])
                .prepare_dest(|d| std::fs::write(d.join("local.o"), b"gone\n").unwrap())
                .expect_code(0),
        );
        assert!(a.stdout.contains("*deleting   local.o\n"), "{}", a.stdout);
    };

    daemon_exclude_pull => {
        let (a, _) = daemon_side("daemon_exclude_pull", EXCL.0, EXCL.1, &["-ai", "{url}/", "{dest}/"], 0);
        check(&a, &["secret/", "secret/key", "file.tmp", "dir/other.tmp"], &["dir/x.txt", "top"]);
    };
    daemon_exclude_list => {
        let (a, _) = daemon_side("daemon_exclude_list", EXCL.0, EXCL.1, &["-r", "--list-only", "{url}/"], 0);
        assert!(!a.stdout.contains("secret") && !a.stdout.contains(".tmp"), "{}", a.stdout);
    };
    daemon_exclude_direct_dir => {
        daemon_side("daemon_exclude_dir", EXCL.0, EXCL.1, &["-a", "{url}/secret/", "{dest}/"], 23);
    };
    daemon_exclude_direct_file => {
        daemon_side("daemon_exclude_file", EXCL.0, EXCL.1, &["-a", "{url}/secret/key", "{dest}/"], 23);
    };
    daemon_exclude_direct_tmp => {
        daemon_side("daemon_exclude_tmp", EXCL.0, EXCL.1, &["-a", "{url}/dir/other.tmp", "{dest}/"], 23);
    };
    daemon_exclude_client_include_cannot_override => {
        let (a, _) = daemon_side(
            "daemon_exclude_override",
            EXCL.0,
            EXCL.1,
            &["-ai", "--include=secret/***", "--include=*.tmp", "{url}/", "{dest}/"],
            0,
        );
        check(&a, &["secret/key", "file.tmp"], &["top"]);
    };
    daemon_filter_param => {
        let (a, _) = daemon_side("daemon_filter", "filter", "- *.o - /src", &["-ai", "{url}/", "{dest}/"], 0);
        check(&a, &["a.o", "dir/y.o", "src/"], &["a.c"]);
    };
    daemon_exclude_with_delete => {
        let (a, _) = differential(
            &Case::new("daemon_exclude_delete", vec![filter_tree().with(EXCL.0, EXCL.1)])
                .args(&["-ai", "--delete", "{url}/", "{dest}/"])
                .prepare_dest(|d| {
                    std::fs::create_dir(d.join("secret")).unwrap();
                    std::fs::write(d.join("secret/mine"), b"x\n").unwrap();
                    std::fs::write(d.join("junk"), b"x\n").unwrap();
                })
                .expect_code(0),
        );
        assert!(a.stdout.contains("*deleting   junk\n"), "{}", a.stdout);
    };
}
