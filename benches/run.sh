#!/usr/bin/env bash
# The benchmark suite in one command: our rsyncd against stock rsync --daemon.
#
#   benches/run.sh --quick          # minutes: small trees, one run per configuration
#   benches/run.sh                  # hours: 10k/100k/1M-entry trees, 1/4/16 clients,
#                                   # 3 alternating runs, 2 GiB full/delta pulls,
#                                   # --files-from 100k/1M, snapshot figures, criterion
#   benches/run.sh --sections null-sync,strace --sizes 100000   # a part (other results kept)
#   benches/run.sh --report-only    # regenerate summary.md, plots, results.* from raw.csv
#   benches/run.sh --help           # every option (time budgets, sizes, directories)
#
# Installs what it needs (rsync, strace; apt-get, as root), builds the release
# daemon and the harness, then runs target/release/bench-all with the arguments
# given. Results go to benches/runs/<date>-<host>[-quick]/ (summary.md, SETUP.md,
# results.csv/json, raw.csv, *.svg). Trees are generated under /tmp/rsyncd-bench
# (about 1 GB of disk for the 1M-entry trees: files are sparse) and reused by later
# runs; `--clean` removes them at the end. Run as root: both daemons serve the
# trees as uid nobody from a root daemon, strace attaches to them.
# Never part of the test suite (.ci/run only builds the harness).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
command -v rsync >/dev/null 2>&1 || missing="$missing rsync"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
case " $* " in
*" --report-only "* | *" --help "* | *" -h "*) cargo build --release -q -p benches --bin bench-all ;;
*)
    cargo build --release -p rsyncd -p benches --bins
    # Criterion's bench binary, so the micro section does not compile mid-run.
    cargo bench -p benches --bench hot_paths --no-run
    ;;
esac
umask 022
exec "$TARGET/release/bench-all" "$@"
