#!/usr/bin/env bash
# Show which file-system syscalls each daemon makes during one null sync.
#
# Usage: benches/strace-null-sync.sh [FILES]        (default 5000 files)
# Env:   CARGO_TARGET_DIR  where release/rsyncd and release/null_sync live
#        RSYNCD            our daemon (default $CARGO_TARGET_DIR/release/rsyncd)
#        WORK              scratch dir (default /tmp/rsyncd-strace-<FILES>)
#
# Needs root (uid = 0 module, ptrace), stock rsync, strace, and a release
# build: cargo build --release -p rsyncd -p benches
#
# For each daemon it attaches `strace -f -y -C -e trace=<file syscalls>` to
# the running daemon, runs one null pull (`rsync -a --delete` into an
# up-to-date copy), detaches, and counts trace lines that name the module
# tree. A second attach without a filter (`strace -f -c`) gives the full
# syscall mix. Finally, as a positive control, our daemon is traced during a
# pull where one file of the copy was altered: that file must show up as
# exactly one openat2 beneath the module root.
set -euo pipefail

FILES=${1:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RSYNCD=${RSYNCD:-$TARGET/release/rsyncd}
NULL_SYNC=$TARGET/release/null_sync
WORK=${WORK:-/tmp/rsyncd-strace-$FILES}
OUT=$WORK/out
TRACE_SET='%file,getdents64,statx,newfstatat,lstat,stat,openat'

command -v strace >/dev/null || apt-get install -y strace
[ -x "$RSYNCD" ] || { echo "missing $RSYNCD: cargo build --release -p rsyncd" >&2; exit 1; }
[ -x "$NULL_SYNC" ] || { echo "missing $NULL_SYNC: cargo build --release -p benches" >&2; exit 1; }

# The same seeded tree generator as the null-sync benchmark.
"$NULL_SYNC" --files "$FILES" --work "$WORK" --generate-only
TREE=$WORK/tree
COPY=$WORK/copy
rm -rf "$OUT" "$WORK/state"
mkdir -p "$OUT" "$COPY"

cat > "$WORK/rsyncd.conf" <<EOF
use chroot = no
uid = 0
gid = 0
read only = yes
log file = $WORK/stock-rsyncd.log

[mod]
    path = $TREE
EOF

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

STOCK_PORT=$(free_port)
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --port="$STOCK_PORT" --address=127.0.0.1 &
STOCK_PID=$!
PIDS+=("$STOCK_PID")

"$RSYNCD" --config="$WORK/rsyncd.conf" --port=0 --address=127.0.0.1 --state-dir="$WORK/state" 2> "$OUT/ours.log" &
OURS_PID=$!
PIDS+=("$OURS_PID")
for _ in $(seq 1 600); do grep -q 'listening on' "$OUT/ours.log" && break; sleep 0.1; done
OURS_PORT=$(sed -n 's/^rsyncd: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$OUT/ours.log")
[ -n "$OURS_PORT" ] || { echo "our daemon did not start" >&2; cat "$OUT/ours.log" >&2; exit 1; }
sleep 0.5

# Make the client copy current (via stock), then check ours agrees.
rsync -a --delete "rsync://127.0.0.1:$STOCK_PORT/mod/" "$COPY/"
rsync -a --delete "rsync://127.0.0.1:$OURS_PORT/mod/" "$COPY/"

# wait_idle PID KIND: stock's per-connection child reaped / our session thread gone.
wait_idle() {
    for _ in $(seq 1 200); do
        if [ "$2" = stock ]; then
            [ -z "$(cat /proc/$1/task/$1/children)" ] && return 0
        else
            [ "$(awk '/^Threads:/ {print $2}' /proc/$1/status)" -le 1 ] && return 0
        fi
        sleep 0.05
    done
}

# traced NAME PID KIND PORT STRACE-ARGS...: one pull with strace attached.
traced() {
    local name=$1 pid=$2 kind=$3 port=$4
    shift 4
    strace "$@" -p "$pid" -o "$OUT/$name.trace" 2> "$OUT/$name.strace-stderr" &
    local spid=$!
    for _ in $(seq 1 100); do grep -q 'attached' "$OUT/$name.strace-stderr" 2>/dev/null && break; sleep 0.05; done
    sleep 0.2
    rsync -a --delete --stats "rsync://127.0.0.1:$port/mod/" "$COPY/" > "$OUT/$name.client"
    wait_idle "$pid" "$kind"
    kill -INT "$spid"
    wait "$spid" || true
}

for kind in stock ours; do
    if [ $kind = stock ]; then pid=$STOCK_PID; port=$STOCK_PORT; else pid=$OURS_PID; port=$OURS_PORT; fi
    traced "$kind-file" "$pid" $kind "$port" -f -y -C -e trace="$TRACE_SET"
    traced "$kind-all" "$pid" $kind "$port" -f -c
done

# Positive control: alter one file of the copy; ours must open exactly it.
CHANGED=$(cd "$COPY" && find pool -type f | LC_ALL=C sort | sed -n 1p)
printf 'x' >> "$COPY/$CHANGED"
traced ours-changed "$OURS_PID" ours "$OURS_PORT" -f -y -C -e trace="$TRACE_SET"

# Report.
report() {
    local name=$1
    local calls hits
    # Trace lines are "PID syscall(...)"; the -C summary table follows them.
    calls=$(grep -cE '^[0-9]+ +[a-z0-9_]+\(' "$OUT/$name.trace" || true)
    hits=$(grep -F -c "$TREE" "$OUT/$name.trace" || true)
    echo "== $name: $calls traced calls, $hits naming $TREE"
    echo "   client: $(grep -E 'Number of regular files transferred' "$OUT/$name.client")"
}

{
    echo "tree: $TREE ($FILES files)"
    echo "stock: rsync --daemon pid $STOCK_PID port $STOCK_PORT; ours: $RSYNCD pid $OURS_PID port $OURS_PORT"
    echo "filter: -e trace=$TRACE_SET"
    echo
    for n in stock-file ours-file ours-changed; do
        report $n
        echo "   syscall summary (strace -C):"
        sed -n '/% time/,$p' "$OUT/$n.trace" | sed 's/^/     /'
        echo "   first lines naming the tree:"
        awk -v t="$TREE" 'index($0, t) && n++ < 5 { print "     " substr($0, 1, 160) }' "$OUT/$n.trace"
        echo
    done
    for n in stock-all ours-all; do
        echo "== $n: every syscall during one null sync (strace -f -c)"
        sed 's/^/     /' "$OUT/$n.trace"
        echo "   client: $(grep -E 'Number of regular files transferred' "$OUT/$n.client")"
        echo
    done
} | tee "$OUT/report.txt"
echo "traces and report in $OUT"
