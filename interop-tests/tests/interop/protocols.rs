//! Every protocol the stock client speaks (27-31, and the default 32) with
//! each common option set, pulling the edge tree into an empty destination.

use interop_tests::{differential, Case};

use crate::common::{cases, edge};

/// Pulls the edge tree with `opts` (plus `-i`) at `protocol` (None: default).
fn proto(name: &str, protocol: Option<u32>, opts: &[&str]) {
    let p = protocol.map(|p| format!("--protocol={p}"));
    let mut args: Vec<&str> = opts.to_vec();
    args.push("-i");
    if let Some(p) = &p {
        args.push(p);
    }
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let mut case = Case::new(name, vec![edge()]).args(&args).expect_code(0);
    if protocol.is_some_and(|p| p < 29) {
        case = case.unordered_stdout();
    }
    let (a, _) = differential(&case);
    assert!(
        a.stdout
            .lines()
            .any(|l| l.starts_with(">f") && l.ends_with(" size-1048576")),
        "{}",
        a.stdout
    );
}

const A: &[&str] = &["-a"];
const AH: &[&str] = &["-aH", "--numeric-ids"];
const AC: &[&str] = &["-a", "-c"];

cases! {
    p27_a => proto("p27_a", Some(27), A);
    p27_ah_numeric => proto("p27_ah_numeric", Some(27), AH);
    p27_a_checksum => proto("p27_a_checksum", Some(27), AC);
    p28_a => proto("p28_a", Some(28), A);
    p28_ah_numeric => proto("p28_ah_numeric", Some(28), AH);
    p28_a_checksum => proto("p28_a_checksum", Some(28), AC);
    p29_a => proto("p29_a", Some(29), A);
    p29_ah_numeric => proto("p29_ah_numeric", Some(29), AH);
    p29_a_checksum => proto("p29_a_checksum", Some(29), AC);
    p30_a => proto("p30_a", Some(30), A);
    p30_ah_numeric => proto("p30_ah_numeric", Some(30), AH);
    p30_a_checksum => proto("p30_a_checksum", Some(30), AC);
    p31_a => proto("p31_a", Some(31), A);
    p31_ah_numeric => proto("p31_ah_numeric", Some(31), AH);
    p31_a_checksum => proto("p31_a_checksum", Some(31), AC);
    p32_a => proto("p32_a", None, A);
    p32_ah_numeric => proto("p32_ah_numeric", None, AH);
    p32_a_checksum => proto("p32_a_checksum", None, AC);
}
