#!/usr/bin/env bash
# Where a pooler's CPU goes per transaction: user-space instructions
# (valgrind callgrind) and syscalls / context switches (perf stat), for
# PgBouncer and Causeway side by side, on pgbench -S at 50 clients,
# transaction pooling, pool size 20. The figures issue 14's note quotes.
#
# Usage: make profile   (or: bash bench/profile.sh)
# Env:
#   CAUSEWAY_BIN  causeway binary (default target/release/causeway)
#   PGBOUNCER     PgBouncer binary (default /tmp/anchors/bin/pgbouncer-1.25
#                 when built by the anchors' script, else pgbouncer on PATH)
#   PROFILE_MODES pgbench protocols (default "simple extended")
#   PG_BINDIR     PostgreSQL server binaries (default: newest installed)
#
# Instructions per transaction are marginal: the difference between a run
# of 500 and one of 100 transactions per client, divided by the 20,000
# transactions between them, so logins and warm-up cancel out. Both poolers
# run on one thread under callgrind (Causeway with workers = 1), so their
# counts compare like for like; callgrind counts are steady from run to run
# (±20 instructions here), unlike CPU time on a shared machine.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
CAUSEWAY_BIN=${CAUSEWAY_BIN:-target/release/causeway}
PROFILE_MODES=${PROFILE_MODES:-simple extended}
DB=bench
log() { printf '[profile %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

if [[ -z ${PG_BINDIR:-} ]]; then
    PG_BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
fi
[[ -x $PG_BINDIR/initdb ]] || die "PostgreSQL server binaries not found (set PG_BINDIR)"
if [[ -z ${PGBOUNCER:-} ]]; then
    PGBOUNCER=/tmp/anchors/bin/pgbouncer-1.25
    [[ -x $PGBOUNCER ]] || PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
fi
[[ -x $PGBOUNCER ]] || die "PgBouncer not found (set PGBOUNCER)"
[[ -x $CAUSEWAY_BIN ]] || die "causeway binary not found: $CAUSEWAY_BIN (make release)"
for t in valgrind callgrind_annotate; do
    command -v $t >/dev/null || die "$t not found (apt-get install valgrind)"
done
PERF=$(command -v perf || true)
export PGSSLMODE=disable

AS_PG=()
[[ $(id -u) -eq 0 ]] && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
TMP=$(mktemp -d /tmp/causeway-profile.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    [[ -f $TMP/pgdata/postmaster.pid ]] && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$TMP/pgdata" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
[[ ${#AS_PG[@]} -gt 0 ]] && chown postgres: "$TMP"

read -r PG_PORT PGB_PORT CW_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

ready() {  # PORT PID
    for _ in $(seq 240); do
        kill -0 "$2" 2>/dev/null || return 1
        "$PG_BINDIR/psql" -h 127.0.0.1 -p "$1" -U postgres -d $DB -XAtqc 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}

log "PostgreSQL on :$PG_PORT"
"${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$TMP/pgdata" -U postgres -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 || die "initdb failed"
cat >>"$TMP/pgdata/postgresql.conf" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP'
max_connections = 100
fsync = off
synchronous_commit = off
shared_buffers = 256MB
EOF
"${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$TMP/pgdata" -l "$TMP/pg.log" -w start >/dev/null || die "PostgreSQL did not start"
"$PG_BINDIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtqc "create database $DB" >/dev/null
"$PG_BINDIR/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q $DB >/dev/null 2>&1

echo '"postgres" ""' >"$TMP/userlist.txt"
cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
max_prepared_statements = 200
log_connections = 0
log_disconnections = 0
EOF
cat >"$TMP/causeway.toml" <<EOF
listen_addr = "127.0.0.1"
listen_port = $CW_PORT
workers = 1
pool_mode = "transaction"
auth_type = "trust"
auth_file = "$TMP/userlist.txt"
default_pool_size = 20
max_client_conn = 200
metrics_addr = ""
log_connections = false
log_disconnections = false
max_prepared_statements = 200

[databases.$DB]
dbname = "$DB"
host = "127.0.0.1"
port = $PG_PORT
user = "postgres"
EOF
[[ ${#AS_PG[@]} -gt 0 ]] && chown -R postgres: "$TMP"

pgb() {  # PORT MODE TXNS_PER_CLIENT
    "$PG_BINDIR/pgbench" -h 127.0.0.1 -p "$1" -U postgres -S -M "$2" -c 50 -j 2 -t "$3" $DB >"$TMP/pgbench.log" 2>&1 ||
        { cat "$TMP/pgbench.log" >&2; die "pgbench failed on :$1"; }
}

# total NAME MODE TXNS: all instructions of one pooler process under
# callgrind that serves pgbench -t TXNS (a fresh process per run, stopped by
# SIGINT: callgrind's live controls need a busy process, and PgBouncer
# sleeps in epoll_wait).
total() {
    local name=$1 m=$2 t=$3 out=$TMP/cg.$1.$2.$3 pid port
    if [[ $name == pgb ]]; then
        port=$PGB_PORT
        "${AS_PG[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
            "$PGBOUNCER" "$TMP/pgbouncer.ini" >"$TMP/vg-$name.log" 2>&1 &
    else
        port=$CW_PORT
        NO_COLOR=1 valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
            "$CAUSEWAY_BIN" --config "$TMP/causeway.toml" >"$TMP/vg-$name.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    ready "$port" "$pid" || die "$name under valgrind did not start ($TMP/vg-$name.log)"
    pgb "$port" "$m" "$t"
    kill -INT "$pid"
    wait "$pid" || true
    # awk reads to the end (grep -m1 would end the pipe early: SIGPIPE).
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n { gsub(",", "", $1); print $1; n = 1 }'
}

# Instructions per transaction: (500-txn run - 100-txn run) / 20,000.
declare -A IR
for name in pgb cw; do
    for m in $PROFILE_MODES; do
        log "$name $m under callgrind"
        a=$(total "$name" "$m" 100)
        b=$(total "$name" "$m" 500)
        IR[$name:$m]=$(( (b - a) / (50 * 400) ))
        log "$name $m: ${IR[$name:$m]} instructions per transaction"
    done
done

# perf stat NAME PORT PID MODE: syscalls and context switches per transaction.
declare -A SYS
sys_per_txn() {
    local name=$1 port=$2 pid=$3 m=$4 ev=context-switches s
    for s in epoll_wait epoll_ctl futex recvfrom sendto read write; do ev+=,syscalls:sys_enter_$s; done
    pgb "$port" simple 20
    "$PERF" stat -e "$ev" -p "$pid" -x, -o "$TMP/perf.$name.$m" &
    local pp=$!
    sleep 0.3  # sleep-ok: perf attaches before the measured run starts
    pgb "$port" "$m" 400
    kill -INT "$pp"; wait "$pp" || true
    SYS[$name:$m]=$(python3 - "$TMP/perf.$name.$m" <<'EOF'
import sys
n = 50 * 400
parts = []
for line in open(sys.argv[1]):
    p = line.strip().split(",")
    if len(p) < 3 or not p[0].replace(".", "").isdigit():
        continue
    name = p[2].replace("syscalls:sys_enter_", "").replace("context-switches", "cs")
    parts.append(f"{name} {float(p[0]) / n:.2f}")
print("  ".join(parts))
EOF
)
}
if [[ -n $PERF ]] && "$PERF" stat -e syscalls:sys_enter_sendto true >/dev/null 2>&1; then
    log "perf stat (no valgrind)"
    "${AS_PG[@]}" "$PGBOUNCER" "$TMP/pgbouncer.ini" >"$TMP/pgb.log" 2>&1 &
    PIDS+=($!); ready "$PGB_PORT" "${PIDS[-1]}" || die "PgBouncer did not start"
    for m in $PROFILE_MODES; do sys_per_txn pgb "$PGB_PORT" "${PIDS[-1]}" "$m"; done
    NO_COLOR=1 "$CAUSEWAY_BIN" --config "$TMP/causeway.toml" >"$TMP/cw.log" 2>&1 &
    PIDS+=($!); ready "$CW_PORT" "${PIDS[-1]}" || die "Causeway did not start"
    for m in $PROFILE_MODES; do sys_per_txn cw "$CW_PORT" "${PIDS[-1]}" "$m"; done
else
    log "perf with syscall tracepoints not available: syscall rows skipped"
fi

echo "Per transaction, pgbench -S, 50 clients, transaction pooling, pool 20 ($(date -u '+%Y-%m-%d %H:%M UTC'), rev $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "PgBouncer: $("$PGBOUNCER" --version 2>/dev/null | head -n1) | Causeway: $CAUSEWAY_BIN (workers = 1 in both parts)"
printf '%-9s | %12s %12s %7s\n' mode "pgb instr" "cw instr" "cw/pgb"
for m in $PROFILE_MODES; do
    p=${IR[pgb:$m]} c=${IR[cw:$m]}
    printf '%-9s | %12s %12s %7s\n' "$m" "$p" "$c" "$(python3 -c "print(f'{$c/$p:.2f}')")"
done
for m in $PROFILE_MODES; do
    [[ -n ${SYS[pgb:$m]:-} ]] || continue
    echo "syscalls $m: pgbouncer: ${SYS[pgb:$m]}"
    echo "syscalls $m: causeway:  ${SYS[cw:$m]}"
done
