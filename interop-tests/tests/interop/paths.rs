//! Source paths: sub-directories, single files, missing paths, several
//! sources, globs, `..`, `-R` with `/./`, trailing-slash semantics and names
//! with spaces (plain, `-s`, `--old-args`).

use interop_tests::{differential, Case, RunResult};

use crate::common::{cases, edge};

/// Runs `args` on the edge tree, expecting exit `code`.
fn p(name: &str, args: &[&str], code: i32) -> (RunResult, RunResult) {
    differential(&Case::new(name, vec![edge()]).args(args).expect_code(code))
}

fn has(r: &RunResult, want: &str) {
    assert!(r.stdout.contains(want), "{want:?} missing:\n{}", r.stdout);
}

cases! {
    subdir_no_slash => { let (a, _) = p("subdir_noslash", &["-ai", "{url}/nested", "{dest}/"], 0); has(&a, ">f+++++++++ nested/l1/l2/l3/l4/l5/deep.txt\n"); };
    subdir_slash => { let (a, _) = p("subdir_slash", &["-ai", "{url}/nested/", "{dest}/"], 0); has(&a, ">f+++++++++ l1/l2/l3/l4/l5/deep.txt\n"); };
    subdir_into_new_name => { p("subdir_new_name", &["-ai", "{url}/order", "{dest}/new"], 0); };
    subdir_slash_into_new_name => { p("subdir_slash_new_name", &["-ai", "{url}/order/", "{dest}/new"], 0); };
    single_file => { let (a, _) = p("single_file", &["-ai", "{url}/nested/l1/l2/l3/l4/l5/deep.txt", "{dest}/"], 0); has(&a, ">f+++++++++ deep.txt\n"); };
    single_file_new_name => { p("single_file_new_name", &["-ai", "{url}/size-700", "{dest}/renamed"], 0); };
    single_file_trailing_slash => { p("single_file_slash", &["-ai", "{url}/size-700/", "{dest}/"], 23); };
    missing => {
        let (a, _) = p("missing", &["-a", "{url}/missing", "{dest}/"], 23);
        assert!(a.stderr.contains("missing"), "{}", a.stderr);
    };
    missing_among_others => { p("missing_among", &["-ai", "{url}/size-1", "{url}/nosuch/x", "{url}/size-700", "{dest}/"], 23); };
    multiple_sources => {
        let (a, _) = p("multiple_sources", &["-ai", "{url}/a", "{url}/order/b", "{url}/size-1", "{dest}/"], 0);
        has(&a, ">f+++++++++ a/inner\n");
        has(&a, ">f+++++++++ b\n");
    };
    glob_star_txt => { let (a, _) = p("glob_txt", &["-ai", "{url}/*.txt", "{dest}/"], 0); has(&a, ">f+++++++++ with space.txt\n"); };
    glob_in_subdir => { let (a, _) = p("glob_subdir", &["-ai", "{url}/order/b*", "{dest}/"], 0); has(&a, ">f+++++++++ b.c\n"); };
    glob_question_and_class => { p("glob_class", &["-ai", "{url}/size-70[01]", "{url}/a?b", "{dest}/"], 0); };
    glob_no_match => { p("glob_no_match", &["-ai", "{url}/*.nomatch", "{dest}/"], 23); };
    glob_dirs => { p("glob_dirs", &["-ai", "{url}/order/b*/", "{dest}/"], 0); };
    dotdot_stays_in_module => { p("dotdot_etc", &["-ai", "{url}/../../etc", "{dest}/"], 23); };
    dotdot_to_file_outside => { p("dotdot_hostname", &["-ai", "{url}/../../../../../etc/hostname", "{dest}/"], 23); };
    dotdot_inside => { p("dotdot_inside", &["-ai", "{url}/nested/../a/", "{dest}/"], 0); };
    absolute_path_in_module => { p("absolute_path", &["-ai", "{url}//a/", "{dest}/"], 0); };
    dot_path => { p("dot_path", &["-ai", "{url}/./order/./", "{dest}/"], 0); };
    relative_dot_dir => {
        let (a, _) = p("relative_dot", &["-aiR", "{url}/nested/./l1/l2", "{dest}/"], 0);
        has(&a, ">f+++++++++ l1/l2/l3/l4/l5/deep.txt\n");
    };
    relative_file => {
        let (a, _) = p("relative_file", &["-aiR", "{url}/nested/l1/l2/l3/l4/l5/deep.txt", "{dest}/"], 0);
        has(&a, ">f+++++++++ nested/l1/l2/l3/l4/l5/deep.txt\n");
    };
    relative_no_implied_dirs => { p("relative_no_implied", &["-aiR", "--no-implied-dirs", "{url}/nested/l1/l2/l3", "{dest}/"], 0); };
    relative_p29 => { p("relative_p29", &["-aiR", "--protocol=29", "{url}/nested/./l1/l2", "{url}/order/b", "{dest}/"], 0); };
    space_arg => { let (a, _) = p("space_arg", &["-ai", "{url}/with space.txt", "{dest}/"], 0); has(&a, ">f+++++++++ with space.txt\n"); };
    space_arg_secluded => { p("space_arg_s", &["-ais", "{url}/with space.txt", "{dest}/"], 0); };
    space_arg_old_args => { p("space_arg_old", &["-ai", "--old-args", "{url}/with space.txt", "{dest}/"], 0); };
    space_arg_p29 => { p("space_arg_p29", &["-ai", "--protocol=29", "{url}/with space.txt", "{dest}/"], 0); };
    secluded_glob => { p("secluded_glob", &["-ais", "{url}/order/b*", "{dest}/"], 0); };
    secluded_several => { p("secluded_several", &["-ais", "{url}/ü.txt", "{url}/日本/", "{url}/with space.txt", "{dest}/"], 0); };
    secluded_subdir_p30 => { p("secluded_p30", &["-ais", "--protocol=30", "{url}/nested/", "{dest}/"], 0); };
}
