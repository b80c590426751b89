#!/usr/bin/env bash
# Causeway vs PgBouncer vs direct PostgreSQL: throughput, latency, pooler CPU
# per transaction, the same over TLS (and TLS handshakes per second), and
# pooler RSS per idle client. See bench/README.md.
#
# Usage (from anywhere):  bash bench/run.sh          (or: make bench)
# Env:
#   CAUSEWAY_BIN   causeway binary (default target/release/causeway, relative to repo root)
#   BENCH_SECONDS  seconds per pgbench run (default 20)
#   IDLE_CLIENTS   idle clients for the RSS test (default 1000)
#   IDLE_HOLD      seconds to hold them (default 5)
#   PG_BINDIR      PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

CAUSEWAY_BIN=${CAUSEWAY_BIN:-target/release/causeway}
BENCH_SECONDS=${BENCH_SECONDS:-20}
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}
IDLE_HOLD=${IDLE_HOLD:-5}
OUT_DIR=$REPO_ROOT/bench/out
DB=bench
POOL_SIZE=20

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
if [[ -z ${PG_BINDIR:-} ]]; then
    PG_BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
fi
[[ -x $PG_BINDIR/initdb ]] || die "PostgreSQL server binaries not found (set PG_BINDIR)"
PGBENCH=$PG_BINDIR/pgbench; [[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
PSQL=$PG_BINDIR/psql;       [[ -x $PSQL ]]    || PSQL=$(command -v psql)       || die "psql not found"
command -v python3 >/dev/null || die "python3 not found"

# Plain rows are plain: the server has TLS on for the TLS rows, and libpq's
# default sslmode=prefer would otherwise use it.
export PGSSLMODE=disable

IS_ROOT=0; [[ $(id -u) -eq 0 ]] && IS_ROOT=1

# Install PgBouncer if missing, without letting the package's service run.
if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
    [[ $IS_ROOT -eq 1 ]] || die "pgbouncer is not installed and we are not root"
    log "installing pgbouncer"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq pgbouncer >/dev/null
    # The Debian package may start/enable a service on :6432; we run our own.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/pgbouncer ]]; then
        /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
        update-rc.d pgbouncer disable >/dev/null 2>&1 || true
    fi
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
# openssl makes the TLS rows' certificates.
if ! command -v openssl >/dev/null; then
    [[ $IS_ROOT -eq 1 ]] || die "openssl is not installed and we are not root"
    log "installing openssl"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null ||
        { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; } ||
        die "cannot install openssl"
fi

# PostgreSQL and PgBouncer refuse to run as root: run them as postgres.
# setpriv execs in place (so $! is the real PID) and leaves rlimits alone.
AS_PG=()
[[ $IS_ROOT -eq 1 ]] && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# Raise the fd limit before starting anything (1,000 clients need > 1024).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited || $NOFILE -ge $((IDLE_CLIENTS + 200)) ]] ||
    log "WARNING: ulimit -n is $NOFILE; the ${IDLE_CLIENTS}-client RSS test may fail"

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/causeway-bench.XXXXXX)
PGDATA=$TMP/pgdata
PGB_PID=""
CW_PID=""
CHILD=""  # the running pgbench / idle_clients.py (via timeout)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for pid in $CHILD $CW_PID $PGB_PID ${CW_TLS_PID:-} ${PGB_TLS_PID:-}; do
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.5
    for pid in $CHILD $CW_PID $PGB_PID ${CW_TLS_PID:-} ${PGB_TLS_PID:-}; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    [[ -f $PGDATA/postmaster.pid ]] && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1
    # Keep the server logs for post-mortems.
    mkdir -p "$OUT_DIR/logs"
    cp -f "$TMP"/*.log "$OUT_DIR/logs/" 2>/dev/null
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT_DIR"
rm -rf "$OUT_DIR/logs"
mkdir -p "$OUT_DIR/logs"
[[ $IS_ROOT -eq 1 ]] && chown postgres: "$TMP"

# Distinct free loopback ports (held open together so they differ).
read -r PG_PORT PGB_PORT CW_PORT PGB_TLS_PORT CW_TLS_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

# Runs a command in the background and waits for it, so that a signal to this
# script runs the cleanup trap at once instead of after the command ends.
# Usage: run_child OUTFILE CMD...   (stdout+stderr to OUTFILE; returns its status)
run_child() {
    local out=$1 rc=0; shift
    "$@" >"$out" 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# Waits until a target answers `SELECT 1` (or its process dies). $1=port $2=pid(optional) $3=seconds
wait_ready() {
    local port=$1 pid=${2:-} secs=${3:-15} i
    for ((i = 0; i < secs * 4; i++)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if PGCONNECT_TIMEOUT=2 "$PSQL" -h 127.0.0.1 -p "$port" -U postgres -d "$DB" -XAtqc 'select 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

# ---------------------------------------------------------------- certificates
# One ECDSA P-256 CA and server certificate (localhost, 127.0.0.1) for
# PostgreSQL, PgBouncer and Causeway alike.
TLS_DIR=$TMP/tls
gen_certs() {
    local d=$TLS_DIR
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=bench-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=localhost -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/san.ext" -out "$d/server.crt" 2>/dev/null &&
    chmod 600 "$d/server.key"
}
gen_certs || die "openssl could not make the test certificates"

# ---------------------------------------------------------------- PostgreSQL
log "starting PostgreSQL on 127.0.0.1:$PG_PORT ($PG_BINDIR)"
"${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 ||
    { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
EOF
[[ $IS_ROOT -eq 1 ]] && chown -R postgres: "$TMP"
"${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$TMP/postgresql.log" -w -t 60 start >/dev/null ||
    { tail -n 30 "$TMP/postgresql.log" >&2; die "PostgreSQL did not start"; }
"$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtqc "create database $DB" >/dev/null
log "pgbench -i -s 10"
"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q "$DB" >"$TMP/pgbench-init.log" 2>&1 ||
    { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
PG_VERSION=$("$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -XAtqc 'show server_version')

# ---------------------------------------------------------------- PgBouncer
echo '"postgres" ""' >"$TMP/userlist.txt"
PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | head -n1 | awk '{print $NF}')
# Protocol-level prepared statements in transaction mode exist since 1.21
# (max_prepared_statements); older versions do not know the setting and
# fail the `prepared` row.
PGB_PREPARED=""
if [[ $(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -n1) == 1.21 ]]; then
    PGB_PREPARED="max_prepared_statements = 200"
fi
cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir = $TMP
auth_type = trust
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
$PGB_PREPARED
EOF
[[ $IS_ROOT -eq 1 ]] && chown -R postgres: "$TMP"
log "starting PgBouncer on 127.0.0.1:$PGB_PORT"
"${AS_PG[@]}" "$PGBOUNCER" "$TMP/pgbouncer.ini" >"$TMP/pgbouncer.log" 2>&1 &  # logs to stderr
PGB_PID=$!
wait_ready "$PGB_PORT" "$PGB_PID" 15 || { tail -n 20 "$TMP/pgbouncer.log" >&2; die "PgBouncer did not start"; }
PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | head -n1 | awk '{print $NF}')

# The TLS rows' PgBouncer: TLS from clients and to the server.
sed -e "s/^listen_port = .*/listen_port = $PGB_TLS_PORT/" "$TMP/pgbouncer.ini" >"$TMP/pgbouncer-tls.ini"
cat >>"$TMP/pgbouncer-tls.ini" <<EOF
client_tls_sslmode = require
client_tls_key_file = $TLS_DIR/server.key
client_tls_cert_file = $TLS_DIR/server.crt
server_tls_sslmode = require
EOF
[[ $IS_ROOT -eq 1 ]] && chown -R postgres: "$TMP"
log "starting PgBouncer with TLS on 127.0.0.1:$PGB_TLS_PORT"
"${AS_PG[@]}" "$PGBOUNCER" "$TMP/pgbouncer-tls.ini" >"$TMP/pgbouncer-tls.log" 2>&1 &
PGB_TLS_PID=$!
PGSSLMODE=require wait_ready "$PGB_TLS_PORT" "$PGB_TLS_PID" 15 || {
    tail -n 20 "$TMP/pgbouncer-tls.log" >&2
    log "PgBouncer with TLS did not start: its TLS columns read n/a"
    kill -KILL "$PGB_TLS_PID" 2>/dev/null || true
    PGB_TLS_PID=""
}

# ---------------------------------------------------------------- Causeway
# A failing/absent Causeway is not fatal: its columns then read "n/a".
CW_STATUS="ok"
cat >"$TMP/causeway.toml" <<EOF
listen_addr = "127.0.0.1"
listen_port = $CW_PORT
pool_mode = "transaction"
auth_type = "trust"
default_pool_size = $POOL_SIZE
max_client_conn = 2000
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
if [[ ! -x $CAUSEWAY_BIN ]]; then
    CW_STATUS="binary not found: $CAUSEWAY_BIN"
else
    log "starting Causeway on 127.0.0.1:$CW_PORT ($CAUSEWAY_BIN)"
    NO_COLOR=1 "$CAUSEWAY_BIN" --config "$TMP/causeway.toml" >"$TMP/causeway.log" 2>&1 &
    CW_PID=$!
    if ! wait_ready "$CW_PORT" "$CW_PID" 15; then
        if kill -0 "$CW_PID" 2>/dev/null; then
            CW_STATUS="not answering SELECT 1 on :$CW_PORT"
            kill -KILL "$CW_PID" 2>/dev/null || true
        else
            wait "$CW_PID" 2>/dev/null && rc=0 || rc=$?
            CW_STATUS="exited (status $rc) before accepting connections"
        fi
        CW_PID=""
        tail -n 10 "$TMP/causeway.log" >&2 || true
    fi
fi
[[ $CW_STATUS == ok ]] || log "Causeway unavailable: $CW_STATUS -> its columns read n/a"

# The TLS rows' Causeway: TLS from clients and to the server.
CW_TLS_PID=""
if [[ $CW_STATUS == ok ]]; then
    {
        # Top-level keys first (TOML), then the plain instance's config.
        printf 'client_tls_sslmode = "require"\nclient_tls_key_file = "%s"\nclient_tls_cert_file = "%s"\nserver_tls_sslmode = "require"\n' \
            "$TLS_DIR/server.key" "$TLS_DIR/server.crt"
        sed -e "s/^listen_port = .*/listen_port = $CW_TLS_PORT/" "$TMP/causeway.toml"
    } >"$TMP/causeway-tls.toml"
    log "starting Causeway with TLS on 127.0.0.1:$CW_TLS_PORT"
    NO_COLOR=1 "$CAUSEWAY_BIN" --config "$TMP/causeway-tls.toml" >"$TMP/causeway-tls.log" 2>&1 &
    CW_TLS_PID=$!
    PGSSLMODE=require wait_ready "$CW_TLS_PORT" "$CW_TLS_PID" 15 || {
        tail -n 10 "$TMP/causeway-tls.log" >&2
        log "Causeway with TLS did not start: its TLS columns read n/a"
        kill -KILL "$CW_TLS_PID" 2>/dev/null || true
        CW_TLS_PID=""
    }
fi

# ---------------------------------------------------------------- pgbench runs
# Results, keyed "<row>/<target>": TPS, latency (ms), pooler CPU (us/txn).
declare -A TPS LAT CPU

# utime+stime (fields 14 and 15 of /proc/PID/stat) in clock ticks; the comm
# field may contain spaces, so cut everything up to ") " first.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# bench ROW TARGET PORT PID MODE CLIENTS THREADS [EXTRA_PGBENCH_ARGS]
# ($SSLMODE, default disable, is the clients' sslmode.)
bench() {
    local row=$1 target=$2 port=$3 pid=$4 mode=$5 clients=$6 threads=$7 extra=${8:-}
    local key="$row/$target" out="$TMP/pgbench-$target-${row// /-}.log"
    if [[ -z $port ]]; then TPS[$key]=n/a; LAT[$key]=n/a; CPU[$key]=n/a; return; fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        log "$target is not running; skipping $row"
        TPS[$key]=n/a; LAT[$key]=n/a; CPU[$key]=n/a; return
    fi
    log "$target: pgbench -S -M $mode -c $clients -j $threads -T $BENCH_SECONDS $extra (sslmode=${SSLMODE:-disable})"
    local t0=0 t1=0 rc=0
    [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
    # $extra is a list of pgbench flags: unquoted on purpose.
    # shellcheck disable=SC2086
    PGSSLMODE=${SSLMODE:-disable} run_child "$out" timeout -k 5 $((BENCH_SECONDS + 60)) \
        "$PGBENCH" -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$mode" \
        -c "$clients" -j "$threads" -T "$BENCH_SECONDS" $extra "$DB" || rc=$?
    [[ -n $pid ]] && t1=$(cpu_ticks "$pid" 2>/dev/null || echo "$t0")

    local txns failed tps lat
    txns=$(awk -F': ' '/number of transactions actually processed/ {print $2+0}' "$out")
    failed=$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$out")
    tps=$(awk '/^tps = / {print $3}' "$out")
    lat=$(awk '/^latency average = / {print $4}' "$out")
    if [[ $rc -ne 0 || -z $txns || $txns -eq 0 || ${failed:-0} -ne 0 || -z $tps ]] ||
        grep -q 'aborted' "$out"; then
        log "$target $row: FAILED (exit $rc); first error: $(grep -m1 -iE 'error|fatal|abort' "$out" || echo '?')"
        TPS[$key]=fail; LAT[$key]=fail; CPU[$key]=fail
        return
    fi
    TPS[$key]=$tps; LAT[$key]=$lat
    if [[ -n $pid ]]; then
        # CPU microseconds per transaction == CPU ms per 1,000 transactions.
        CPU[$key]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.2f", d / hz / n * 1e6}')
    else
        CPU[$key]=-
    fi
}

ROWS=("simple 50" "extended 50" "prepared 50" "simple 1")
CW_ARGS=("" "")
[[ $CW_STATUS == ok ]] && CW_ARGS=("$CW_PORT" "$CW_PID")
# Mode-major order: the three targets of one row run back to back.
for row in "${ROWS[@]}"; do
    read -r mode clients <<<"$row"
    threads=$((clients < 2 ? clients : 2))
    bench "$row" direct    "$PG_PORT"       ""         "$mode" "$clients" "$threads"
    bench "$row" pgbouncer "$PGB_PORT"      "$PGB_PID" "$mode" "$clients" "$threads"
    bench "$row" causeway  "${CW_ARGS[0]}" "${CW_ARGS[1]}" "$mode" "$clients" "$threads"
done

# TLS rows: every hop encrypted (client -> pooler -> PostgreSQL; direct is
# client -> PostgreSQL). "tls 50": pgbench -S, 50 clients, sslmode=require.
# "connect 8": pgbench -C (a new connection, so a TLS handshake with the
# pooler, per transaction): its TPS is handshakes per second.
TLS_ROWS=("tls 50" "connect 8")
SSLMODE=require
for row in "${TLS_ROWS[@]}"; do
    read -r kind clients <<<"$row"
    extra=""
    [[ $kind == connect ]] && extra="-C"
    bench "$row" direct    "$PG_PORT" "" simple "$clients" 2 "$extra"
    if [[ -n $PGB_TLS_PID ]]; then
        bench "$row" pgbouncer "$PGB_TLS_PORT" "$PGB_TLS_PID" simple "$clients" 2 "$extra"
    else
        bench "$row" pgbouncer "" "" simple "$clients" 2 "$extra"
    fi
    if [[ -n $CW_TLS_PID ]]; then
        bench "$row" causeway "$CW_TLS_PORT" "$CW_TLS_PID" simple "$clients" 2 "$extra"
    else
        bench "$row" causeway "" "" simple "$clients" 2 "$extra"
    fi
done
SSLMODE=disable

# ---------------------------------------------------------------- idle-client RSS
# idle TARGET PORT PID -> sets RSS_<TARGET>="total_kb per_client_kb" or a reason.
declare -A RSS_LINE
idle() {
    local target=$1 port=$2 pid=$3 line
    if [[ -z $port || -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        RSS_LINE[$target]="n/a"; return
    fi
    log "$target: holding $IDLE_CLIENTS idle clients for ${IDLE_HOLD}s"
    run_child "$TMP/idle-$target.log" timeout -k 5 $((IDLE_HOLD + 120)) \
        python3 "$REPO_ROOT/bench/idle_clients.py" --port "$port" --dbname "$DB" \
        --clients "$IDLE_CLIENTS" --hold "$IDLE_HOLD" --pid "$pid" || true
    line=$(grep -m1 '^connected=' "$TMP/idle-$target.log" || true)
    log "$target: $line"
    if [[ $line =~ connected=([0-9]+)\ failed=([0-9]+)\ rss_before_kb=(-?[0-9]+)\ rss_held_kb=(-?[0-9]+)\ per_client_kb=([^ ]+) ]]; then
        local conn=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]} before=${BASH_REMATCH[3]} held=${BASH_REMATCH[4]} per=${BASH_REMATCH[5]}
        RSS_LINE[$target]=$(printf '%d KB before, %d KB with %d idle clients held -> %s KB per idle client' \
            "$before" "$held" "$conn" "$per")
        [[ $failed -eq 0 ]] || RSS_LINE[$target]+=" ($failed logins FAILED: $(grep -v "^connected=" "$TMP/idle-$target.log" | head -c 200))"
    else
        RSS_LINE[$target]="fail ($(grep -v "^connected=" "$TMP/idle-$target.log" | head -c 200))"
    fi
}
idle pgbouncer "$PGB_PORT" "$PGB_PID"
idle causeway "${CW_ARGS[0]}" "${CW_ARGS[1]}"

# ---------------------------------------------------------------- report
# ratio A B -> A/B with 2 decimals, or "-" when either is not a number.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'; }
# num X DECIMALS -> formatted number, or X unchanged (n/a, fail, -).
num() { awk -v x="$1" -v d="$2" 'BEGIN { if (x ~ /^[0-9.]+$/) printf "%.*f", d, x; else print x }'; }

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
report() {
    echo "Causeway benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $GIT_REV  $(nproc) cores  ${BENCH_SECONDS}s/run"
    echo "PostgreSQL $PG_VERSION | PgBouncer $PGB_VERSION | Causeway: $CAUSEWAY_BIN ($CW_STATUS)"
    echo "pgbench -S (select-only), -j 2 (-j 1 for 1 client); pools: transaction mode, pool size $POOL_SIZE"
    echo
    echo "Throughput (TPS, excluding connection time) and pooler CPU (us of CPU per transaction = ms per 1,000 txns)"
    printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' \
        mode clients direct pgbouncer causeway cw/pgb "pgb us" "cw us" cw/pgb
    printf '%s\n' "------------------+-----------------------------------------+--------------------------"
    local row mode clients
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$row/direct]}" 0)" "$(num "${TPS[$row/pgbouncer]}" 0)" "$(num "${TPS[$row/causeway]}" 0)" \
            "$(ratio "${TPS[$row/causeway]}" "${TPS[$row/pgbouncer]}")" \
            "$(num "${CPU[$row/pgbouncer]}" 1)" "$(num "${CPU[$row/causeway]}" 1)" \
            "$(ratio "${CPU[$row/causeway]}" "${CPU[$row/pgbouncer]}")"
    done
    echo
    echo "Over TLS (sslmode=require; the poolers use TLS to clients and to PostgreSQL; ECDSA P-256)"
    echo "  tls:     pgbench -S -M simple; TPS and pooler CPU per transaction"
    echo "  connect: pgbench -S -C, a new connection (TLS handshake) per transaction: TPS = handshakes/s; CPU per connection"
    printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' \
        row clients direct pgbouncer causeway cw/pgb "pgb us" "cw us" cw/pgb
    printf '%s\n' "------------------+-----------------------------------------+--------------------------"
    for row in "${TLS_ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$row/direct]}" 0)" "$(num "${TPS[$row/pgbouncer]}" 0)" "$(num "${TPS[$row/causeway]}" 0)" \
            "$(ratio "${TPS[$row/causeway]}" "${TPS[$row/pgbouncer]}")" \
            "$(num "${CPU[$row/pgbouncer]}" 1)" "$(num "${CPU[$row/causeway]}" 1)" \
            "$(ratio "${CPU[$row/causeway]}" "${CPU[$row/pgbouncer]}")"
    done
    echo
    echo "Average latency (ms)"
    printf '%-9s %7s | %9s %9s %9s %7s\n' mode clients direct pgbouncer causeway cw/pgb
    printf '%s\n' "------------------+-----------------------------------------"
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s\n' "$mode" "$clients" \
            "$(num "${LAT[$row/direct]}" 3)" "$(num "${LAT[$row/pgbouncer]}" 3)" "$(num "${LAT[$row/causeway]}" 3)" \
            "$(ratio "${LAT[$row/causeway]}" "${LAT[$row/pgbouncer]}")"
    done
    echo
    echo "RSS with $IDLE_CLIENTS idle clients (VmRSS, KB)"
    echo "  pgbouncer: ${RSS_LINE[pgbouncer]}"
    echo "  causeway:  ${RSS_LINE[causeway]}"
}
report | tee "$OUT_DIR/latest.txt"
log "table written to bench/out/latest.txt; pgbench and server logs in bench/out/logs/"
