#!/usr/bin/env bash
# Causeway vs PgBouncer vs direct PostgreSQL: throughput, latency, pooler CPU
# per transaction, the same over TLS (and TLS handshakes per second), pooler
# RSS per idle client, 10,000 clients (idle + 50 running), 5,000 clients
# waiting on a 20-connection pool, TPC-B writes with read-your-writes tokens
# on and off, and Causeway on one worker thread. See bench/README.md.
#
# Usage (from anywhere):  bash bench/run.sh          (or: make bench)
# Env:
#   CAUSEWAY_BIN   causeway binary (default target/release/causeway, relative to repo root)
#   BENCH_SECONDS  seconds per pgbench run (default 15)
#   BENCH_REPEAT   runs of every cell (default 1; 2 shows the noise)
#   BENCH_ROWS     row groups to run (default all): select tls idle workers tpcb waiters clients10k
#                  (+ baseline when BASELINE_BIN is set)
#   BASELINE_BIN  another causeway build run on the select rows beside this one
#   PGBOUNCER      PgBouncer binary (default: PgBouncer 1.25.2 built by
#                  $ANCHORS/build-pgbouncer.sh, else Debian's package)
#   ANCHORS        directory of build-pgbouncer.sh (default /work/shared/anchors or ../shared/anchors)
#   IDLE_CLIENTS   idle clients for the RSS test, each pooler a fresh process (default 10000, as issue 14 asks)
#   IDLE_HOLD      seconds to hold them (default 5)
#   MANY_CLIENTS   clients of the clients10k row, 50 of them running pgbench (default 10000)
#   WAITERS        clients of the waiters row, on a $POOL_SIZE-connection pool (default 5000)
#   PG_BINDIR      PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

CAUSEWAY_BIN=${CAUSEWAY_BIN:-target/release/causeway}
BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_REPEAT=${BENCH_REPEAT:-1}
BASELINE_BIN=${BASELINE_BIN:-}
BENCH_ROWS=${BENCH_ROWS:-select tls idle workers tpcb waiters clients10k${BASELINE_BIN:+ baseline}}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
MANY_CLIENTS=${MANY_CLIENTS:-10000}
WAITERS=${WAITERS:-5000}
OUT_DIR=$REPO_ROOT/bench/out
DB=bench
POOL_SIZE=20
# Room for the clients10k and waiters rows in both poolers.
MAX_CLIENTS=$(( (MANY_CLIENTS > WAITERS ? MANY_CLIENTS : WAITERS) + 2000 ))

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
# want GROUP: is the row group selected (BENCH_ROWS)?
want() { [[ " ${BENCH_ROWS//,/ } " == *" $1 "* ]]; }
for g in ${BENCH_ROWS//,/ }; do
    [[ " select tls idle workers tpcb waiters clients10k baseline " == *" $g "* ]] || die "unknown row group in BENCH_ROWS: $g"
done
if want baseline; then
    [[ -x $BASELINE_BIN ]] || die "the baseline row group needs BASELINE_BIN (another causeway build)"
fi
# The 1-minute load average (the machine is shared: a busy start skews a cell).
load1() { cut -d' ' -f1 /proc/loadavg; }

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
mkdir -p "$OUT_DIR"

# PgBouncer: $PGBOUNCER if given; else 1.25.2 built from the anchors' source
# (1.21+ runs the prepared row like for like); else Debian's package.
if [[ -z ${PGBOUNCER:-} ]]; then
    if [[ -z ${ANCHORS:-} ]]; then
        for d in /work/shared/anchors "$REPO_ROOT/../shared/anchors"; do
            [[ -x $d/build-pgbouncer.sh ]] && { ANCHORS=$d; break; }
        done
    fi
    if [[ -n ${ANCHORS:-} && -x $ANCHORS/build-pgbouncer.sh ]]; then
        log "PgBouncer 1.25.2 from $ANCHORS (built once into /tmp/anchors)"
        PGBOUNCER=$("$ANCHORS/build-pgbouncer.sh" 2>"$OUT_DIR/pgbouncer-build.log" | tail -n1) || PGBOUNCER=""
        [[ -x $PGBOUNCER ]] || { log "PgBouncer build failed (bench/out/pgbouncer-build.log): Debian's package instead"; PGBOUNCER=""; }
    fi
fi
[[ -z ${PGBOUNCER:-} || -x $PGBOUNCER ]] || die "PGBOUNCER=$PGBOUNCER is not executable"
# Install PgBouncer if missing, without letting the package's service run.
if [[ -z ${PGBOUNCER:-} ]] && ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
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
[[ -n ${PGBOUNCER:-} ]] || PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
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

# Raise the fd limit before starting anything (10,000 clients: a socket each
# in the client, and one in the pooler). Children inherit it.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited || $NOFILE -ge $((MAX_CLIENTS + 200)) ]] ||
    log "WARNING: ulimit -n is $NOFILE; the ${MANY_CLIENTS}-client row may fail"

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/causeway-bench.XXXXXX)
PGDATA=$TMP/pgdata
PGB_PID=""
CW_PID=""
CHILD=""  # the running pgbench / idle_clients.py (via timeout)
EXTRA_PIDS=()  # the rows' own Causeway instances and the idle holder
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for pid in $CHILD $CW_PID $PGB_PID ${CW_TLS_PID:-} ${PGB_TLS_PID:-} "${EXTRA_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.5
    for pid in $CHILD $CW_PID $PGB_PID ${CW_TLS_PID:-} ${PGB_TLS_PID:-} "${EXTRA_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    [[ -f $TMP/replica/postmaster.pid ]] && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$TMP/replica" -m immediate -w stop >/dev/null 2>&1
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
read -r PG_PORT PGB_PORT CW_PORT PGB_TLS_PORT CW_TLS_PORT REPLICA_PORT CW_W1_PORT CW_NONE_PORT CW_SESSION_PORT CW_BASE_PORT PGB_IDLE_PORT CW_IDLE_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(12)]
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
max_client_conn = $MAX_CLIENTS
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
PGB_TLS_PID=""
if want tls; then
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
fi

# ---------------------------------------------------------------- Causeway
# A failing/absent Causeway is not fatal: its columns then read "n/a".
CW_STATUS="ok"
cat >"$TMP/causeway.toml" <<EOF
listen_addr = "127.0.0.1"
listen_port = $CW_PORT
pool_mode = "transaction"
auth_type = "trust"
auth_file = "$TMP/userlist.txt"
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENTS
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
if [[ $CW_STATUS == ok ]] && want tls; then
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

# ---------------------------------------------------------------- the rows' own instances
# start_cw NAME PORT TOP_LINES DB_LINES PIDVAR: a Causeway like the plain one
# with TOP_LINES added and [databases] replaced by DB_LINES; PIDVAR gets its
# PID, or stays empty (its cells read n/a) if it does not answer.
start_cw() {
    local name=$1 port=$2 top=$3 dbs=$4 var=$5 bin=${6:-$CAUSEWAY_BIN} pid
    printf -v "$var" '%s' ""
    [[ $CW_STATUS == ok ]] || return 0
    {
        printf '%s\n' "$top"
        sed -e "s/^listen_port = .*/listen_port = $port/" -e '/^\[databases/,$d' "$TMP/causeway.toml"
        printf '%s\n' "$dbs"
    } >"$TMP/causeway-$name.toml"
    log "starting Causeway ($name) on 127.0.0.1:$port"
    NO_COLOR=1 "$bin" --config "$TMP/causeway-$name.toml" >"$TMP/causeway-$name.log" 2>&1 &
    pid=$!
    EXTRA_PIDS+=("$pid")
    if ! wait_ready "$port" "$pid" 20; then
        tail -n 10 "$TMP/causeway-$name.log" >&2
        log "Causeway ($name) did not start: its cells read n/a"
        kill -KILL "$pid" 2>/dev/null || true
        return 0
    fi
    printf -v "$var" '%s' "$pid"
}
PLAIN_DBS=$(sed -n '/^\[databases/,$p' "$TMP/causeway.toml")

CW_W1_PID=""
want workers && start_cw w1 "$CW_W1_PORT" "workers = 1" "$PLAIN_DBS" CW_W1_PID
# Another build of Causeway (BASELINE_BIN, e.g. the previous
# revision) on the select rows: before/after in the same run.
CW_BASE_PID=""
want baseline && start_cw base "$CW_BASE_PORT" "" "$PLAIN_DBS" CW_BASE_PID "$BASELINE_BIN"

# TPC-B rows: a streaming replica, so that Causeway splits and (consistency =
# session) reads the WAL position after each writing transaction.
CW_NONE_PID=""; CW_SESSION_PID=""
if want tpcb; then
    log "starting a streaming replica on 127.0.0.1:$REPLICA_PORT"
    if "${AS_PG[@]}" "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -D "$TMP/replica" -R -X stream -c fast >"$TMP/basebackup.log" 2>&1 &&
        printf 'port = %s\n' "$REPLICA_PORT" >>"$TMP/replica/postgresql.conf" &&
        "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$TMP/replica" -l "$TMP/replica.log" -w -t 60 start >/dev/null; then
        SPLIT_DBS=$(printf '[databases.%s]\ndbname = "%s"\nuser = "postgres"\n' "$DB" "$DB"
            printf '\n[[databases.%s.servers]]\nhost = "127.0.0.1"\nport = %s\n' "$DB" "$PG_PORT" "$DB" "$REPLICA_PORT")
        start_cw none "$CW_NONE_PORT" 'consistency = "none"' "$SPLIT_DBS" CW_NONE_PID
        start_cw session "$CW_SESSION_PORT" 'consistency = "session"' "$SPLIT_DBS" CW_SESSION_PID
        # Writes need the monitor to have found the primary.
        for port in ${CW_NONE_PID:+$CW_NONE_PORT} ${CW_SESSION_PID:+$CW_SESSION_PORT}; do
            for ((i = 0; i < 80; i++)); do
                "$PSQL" -h 127.0.0.1 -p "$port" -U postgres -d "$DB" -XAtqc \
                    'update pgbench_branches set bbalance = bbalance where bid = 1' >/dev/null 2>&1 && break
                sleep 0.25
            done
        done
    else
        tail -n 10 "$TMP/basebackup.log" "$TMP/replica.log" >&2 2>/dev/null || true
        log "no replica: the TPC-B Causeway cells read n/a"
    fi
fi

# ---------------------------------------------------------------- pgbench runs
# Results, keyed "<row>/<target>": TPS, latency (ms), pooler CPU (us/txn).
declare -A TPS LAT CPU

# utime+stime (fields 14 and 15 of /proc/PID/stat) in clock ticks; the comm
# field may contain spaces, so cut everything up to ") " first.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# Results, keyed "<rep>:<row>/<target>" ($REP: which run of BENCH_REPEAT).
declare -A LOADS STDDEV CPU_PCT TXNS TICKS
REP=1
# bench ROW TARGET PORT PID MODE CLIENTS THREADS [EXTRA_PGBENCH_ARGS]
# ($SSLMODE, default disable, is the clients' sslmode; $SCRIPT, default -S,
# the pgbench script: empty for TPC-B.)
bench() {
    local row=$1 target=$2 port=$3 pid=$4 mode=$5 clients=$6 threads=$7 extra=${8:-}
    local key="$REP:$row/$target" out="$TMP/pgbench-$target-${row// /-}-run$REP.log"
    local script=${SCRIPT--S}
    if [[ -z $port ]]; then TPS[$key]=n/a; LAT[$key]=n/a; CPU[$key]=n/a; return; fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        log "$target is not running; skipping $row"
        TPS[$key]=n/a; LAT[$key]=n/a; CPU[$key]=n/a; return
    fi
    local l0 l1
    l0=$(load1)
    log "$target: pgbench $script -M $mode -c $clients -j $threads -T $BENCH_SECONDS $extra (sslmode=${SSLMODE:-disable}; load $l0)"
    local t0=0 t1=0 rc=0 w0 w1
    [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
    w0=$(date +%s.%N)
    # $extra and $script are lists of pgbench flags: unquoted on purpose.
    # shellcheck disable=SC2086
    PGSSLMODE=${SSLMODE:-disable} run_child "$out" timeout -k 5 $((BENCH_SECONDS + 120)) \
        "$PGBENCH" -h 127.0.0.1 -p "$port" -U postgres -n $script -M "$mode" \
        -c "$clients" -j "$threads" -T "$BENCH_SECONDS" $extra "$DB" || rc=$?
    [[ -n $pid ]] && t1=$(cpu_ticks "$pid" 2>/dev/null || echo "$t0")
    w1=$(date +%s.%N)
    [[ -n $pid ]] && CPU_PCT[$key]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", d / hz / (b - a) * 100}')
    l1=$(load1)
    LOADS[$key]="$l0 -> $l1"
    log "$target $row: load $l0 -> $l1"
    STDDEV[$key]=$(awk '/^latency stddev = / {print $4}' "$out")

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
    TXNS[$key]=$txns; TICKS[$key]=$((t1 - t0))
    if [[ -n $pid ]]; then
        # CPU microseconds per transaction == CPU ms per 1,000 transactions.
        CPU[$key]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.2f", d / hz / n * 1e6}')
    else
        CPU[$key]=-
    fi
}

ROWS=("simple 50" "extended 50" "prepared 50" "simple 1")
TLS_ROWS=("tls 50" "connect 8")
CW_ARGS=("" "")
[[ $CW_STATUS == ok ]] && CW_ARGS=("$CW_PORT" "$CW_PID")
# only_if PID PORT -> PORT when the instance runs (else "": its cells read n/a).
only_if() { [[ -n $1 ]] && echo "$2" || true; }

# Mode-major order: the three targets of one row run back to back.
run_select() {
    local row mode clients threads
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        threads=$((clients < 2 ? clients : 2))
        bench "$row" direct    "$PG_PORT"       ""         "$mode" "$clients" "$threads"
        bench "$row" pgbouncer "$PGB_PORT"      "$PGB_PID" "$mode" "$clients" "$threads"
        bench "$row" causeway  "${CW_ARGS[0]}" "${CW_ARGS[1]}" "$mode" "$clients" "$threads"
    done
}

# TLS rows: every hop encrypted (client -> pooler -> PostgreSQL; direct is
# client -> PostgreSQL). "tls 50": pgbench -S, 50 clients, sslmode=require.
# "connect 8": pgbench -C (a new connection, so a TLS handshake with the
# pooler, per transaction): its TPS is handshakes per second.
run_tls() {
    local row kind clients extra
    SSLMODE=require
    for row in "${TLS_ROWS[@]}"; do
        read -r kind clients <<<"$row"
        extra=""
        [[ $kind == connect ]] && extra="-C"
        bench "$row" direct    "$PG_PORT" "" simple "$clients" 2 "$extra"
        bench "$row" pgbouncer "$(only_if "$PGB_TLS_PID" "$PGB_TLS_PORT")" "$PGB_TLS_PID" simple "$clients" 2 "$extra"
        bench "$row" causeway  "$(only_if "$CW_TLS_PID" "$CW_TLS_PORT")" "$CW_TLS_PID" simple "$clients" 2 "$extra"
    done
    SSLMODE=disable
}

# Causeway on one runtime thread (workers = 1), the select rows again.
run_baseline() {
    local row mode clients threads
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        threads=$((clients < 2 ? clients : 2))
        bench "$row" causeway-base "$(only_if "$CW_BASE_PID" "$CW_BASE_PORT")" "$CW_BASE_PID" "$mode" "$clients" "$threads"
    done
}
run_workers() {
    local row mode clients threads
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        threads=$((clients < 2 ? clients : 2))
        bench "$row" causeway-w1 "$(only_if "$CW_W1_PID" "$CW_W1_PORT")" "$CW_W1_PID" "$mode" "$clients" "$threads"
    done
}

# TPC-B (pgbench's default script: 3 updates, a select, an insert per
# transaction), 50 clients. Causeway over primary + replica with
# consistency = none and = session: the difference is the write token.
run_tpcb() {
    SCRIPT=""
    bench "tpcb 50" direct    "$PG_PORT"  ""         simple 50 2
    bench "tpcb 50" pgbouncer "$PGB_PORT" "$PGB_PID" simple 50 2
    bench "tpcb 50" cw-none    "$(only_if "$CW_NONE_PID" "$CW_NONE_PORT")" "$CW_NONE_PID" simple 50 2
    bench "tpcb 50" cw-session "$(only_if "$CW_SESSION_PID" "$CW_SESSION_PORT")" "$CW_SESSION_PID" simple 50 2
    SCRIPT=-S
}

# $WAITERS clients on the $POOL_SIZE-connection pool: all but 20 wait at any
# time. -P makes pgbench print the latency's standard deviation (unfair
# service shows as a large one).
# logins ROW TARGET PORT PID: the pooler's CPU ticks for $WAITERS clients
# that log in, run one transaction each and leave (pgbench -t 1): the same
# logins and goodbyes as the waiters row, so subtracting it leaves what
# waiting for a connection and the transactions cost.
declare -A LOGIN_TICKS
logins() {
    local row=$1 target=$2 port=$3 pid=$4 t0 rc=0
    [[ -n $port && -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    t0=$(cpu_ticks "$pid")
    run_child "$TMP/logins-$target-run$REP.log" timeout -k 5 120 \
        "$PGBENCH" -h 127.0.0.1 -p "$port" -U postgres -n -S -M simple \
        -c "$WAITERS" -j 2 -t 1 "$DB" || rc=$?
    [[ $rc -eq 0 ]] && LOGIN_TICKS["$REP:$row/$target"]=$(( $(cpu_ticks "$pid") - t0 ))
    log "$target: $WAITERS logins + 1 transaction each: $(( ${LOGIN_TICKS["$REP:$row/$target"]:-0} )) ticks (exit $rc)"
}
run_waiters() {
    logins "waiters $WAITERS" pgbouncer "$PGB_PORT" "$PGB_PID"
    bench "waiters $WAITERS" pgbouncer "$PGB_PORT" "$PGB_PID" simple "$WAITERS" 2 "-P $BENCH_SECONDS"
    logins "waiters $WAITERS" causeway "${CW_ARGS[0]}" "${CW_ARGS[1]}"
    bench "waiters $WAITERS" causeway  "${CW_ARGS[0]}" "${CW_ARGS[1]}" simple "$WAITERS" 2 "-P $BENCH_SECONDS"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }

# many TARGET PORT PID: $MANY_CLIENTS clients, all but 50 idle (held by
# idle_clients.py), 50 running pgbench -S; the pooler's RSS before, held,
# and after the idle ones leave.
declare -A MANY
many() {
    local target=$1 port=$2 pid=$3 idle=$((MANY_CLIENTS - 50))
    local key="$REP:$target"
    if [[ -z $port || -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then MANY[$key]="n/a"; return; fi
    local ready=$TMP/many-ready-$target-$REP release=$TMP/many-release-$target-$REP out=$TMP/many-$target-run$REP.log
    local rss0 rss1 rss2 holder i
    rss0=$(rss_kb "$pid")
    log "$target: $idle idle clients (load $(load1))"
    timeout -k 5 900 python3 "$REPO_ROOT/bench/idle_clients.py" --port "$port" --dbname "$DB" \
        --clients "$idle" --hold 800 --pid "$pid" --parallel 200 \
        --ready-file "$ready" --release-file "$release" >"$out" 2>&1 &
    holder=$!
    EXTRA_PIDS+=("$holder")
    for ((i = 0; i < 1200; i++)); do
        [[ -e $ready ]] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.25
    done
    if [[ ! -e $ready ]]; then
        kill -TERM "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
        MANY[$key]="fail (idle clients: $(head -c 200 "$out"))"; return
    fi
    log "$target: $(cat "$ready") idle; 50 clients running"
    bench "many $MANY_CLIENTS" "$target" "$port" "$pid" simple 50 2
    rss1=$(rss_kb "$pid")
    touch "$release"
    wait "$holder" 2>/dev/null || true
    # Give the pooler a moment to close them all (and an allocator to trim).
    sleep 3
    rss2=$(rss_kb "$pid")
    local line
    line=$(grep -m1 '^connected=' "$out" || echo "connected=? failed=?")
    MANY[$key]="${line%% rss_before*} | RSS KB: $rss0 before, $rss1 held, $rss2 3 s after they left (+$((rss2 - rss0)))"
}
run_many() {
    many pgbouncer "$PGB_PORT" "$PGB_PID"
    many causeway "${CW_ARGS[0]}" "${CW_ARGS[1]}"
}

# ---------------------------------------------------------------- idle-client RSS
# idle TARGET PORT PID -> sets RSS_LINE[rep:TARGET]="total_kb per_client_kb" or a reason.
declare -A RSS_LINE
idle() {
    local target=$1 port=$2 pid=$3 line
    if [[ -z $port || -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        RSS_LINE[$REP:$target]="n/a"; return
    fi
    log "$target: holding $IDLE_CLIENTS idle clients for ${IDLE_HOLD}s"
    run_child "$TMP/idle-$target-run$REP.log" timeout -k 5 $((IDLE_HOLD + 120)) \
        python3 "$REPO_ROOT/bench/idle_clients.py" --port "$port" --dbname "$DB" \
        --clients "$IDLE_CLIENTS" --hold "$IDLE_HOLD" --pid "$pid" || true
    line=$(grep -m1 '^connected=' "$TMP/idle-$target-run$REP.log" || true)
    log "$target: $line"
    if [[ $line =~ connected=([0-9]+)\ failed=([0-9]+)\ rss_before_kb=(-?[0-9]+)\ rss_held_kb=(-?[0-9]+)\ per_client_kb=([^ ]+) ]]; then
        local conn=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]} before=${BASH_REMATCH[3]} held=${BASH_REMATCH[4]} per=${BASH_REMATCH[5]}
        RSS_LINE[$REP:$target]=$(printf '%d KB before, %d KB with %d idle clients held -> %s KB per idle client' \
            "$before" "$held" "$conn" "$per")
        [[ $failed -eq 0 ]] || RSS_LINE[$REP:$target]+=" ($failed logins FAILED: $(grep -v "^connected=" "$TMP/idle-$target-run$REP.log" | head -c 200))"
    else
        RSS_LINE[$REP:$target]="fail ($(grep -v "^connected=" "$TMP/idle-$target-run$REP.log" | head -c 200))"
    fi
}
# Each pooler measured as a fresh process (like the plain one, on its own
# port), stopped after: one that has run the other rows first would reuse
# the heap they freed, and read low.
run_idle() {
    local pid=""
    if [[ -n $PGB_PID ]]; then
        sed -e "s/^listen_port = .*/listen_port = $PGB_IDLE_PORT/" "$TMP/pgbouncer.ini" >"$TMP/pgbouncer-idle.ini"
        [[ $IS_ROOT -eq 1 ]] && chown postgres: "$TMP/pgbouncer-idle.ini"
        log "starting a fresh PgBouncer on 127.0.0.1:$PGB_IDLE_PORT"
        "${AS_PG[@]}" "$PGBOUNCER" "$TMP/pgbouncer-idle.ini" >"$TMP/pgbouncer-idle.log" 2>&1 &
        pid=$!
        EXTRA_PIDS+=("$pid")
        if wait_ready "$PGB_IDLE_PORT" "$pid" 15; then
            idle pgbouncer "$PGB_IDLE_PORT" "$pid"
        else
            RSS_LINE[$REP:pgbouncer]="fail (PgBouncer did not start)"
        fi
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    CW_IDLE_PID=""
    start_cw idle "$CW_IDLE_PORT" "" "$PLAIN_DBS" CW_IDLE_PID
    if [[ -n $CW_IDLE_PID ]]; then
        idle causeway "$CW_IDLE_PORT" "$CW_IDLE_PID"
        kill -TERM "$CW_IDLE_PID" 2>/dev/null || true
        wait "$CW_IDLE_PID" 2>/dev/null || true
    else
        RSS_LINE[$REP:causeway]="n/a"
    fi
}

for ((REP = 1; REP <= BENCH_REPEAT; REP++)); do
    ((BENCH_REPEAT == 1)) || log "run $REP of $BENCH_REPEAT"
    want select && run_select
    want tls && run_tls
    want idle && run_idle
    want workers && run_workers
    want baseline && run_baseline
    want tpcb && run_tpcb
    want waiters && run_waiters
    want clients10k && run_many
done

# ---------------------------------------------------------------- report
# ratio A B -> A/B with 2 decimals, or "-" when either is not a number.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'; }
# num X DECIMALS -> formatted number, or X unchanged (n/a, fail, -).
num() { awk -v x="$1" -v d="$2" 'BEGIN { if (x ~ /^[0-9.]+$/) printf "%.*f", d, x; else print x }'; }

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
# report_run: the tables of run $REP (of BENCH_REPEAT), for the rows run.
report_run() {
    local R=$REP row mode clients
    if want select; then
    echo "Throughput (TPS, excluding connection time) and pooler CPU (us of CPU per transaction = ms per 1,000 txns)"
    printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' \
        mode clients direct pgbouncer causeway cw/pgb "pgb us" "cw us" cw/pgb
    printf '%s\n' "------------------+-----------------------------------------+--------------------------"
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$R:$row/direct]}" 0)" "$(num "${TPS[$R:$row/pgbouncer]}" 0)" "$(num "${TPS[$R:$row/causeway]}" 0)" \
            "$(ratio "${TPS[$R:$row/causeway]}" "${TPS[$R:$row/pgbouncer]}")" \
            "$(num "${CPU[$R:$row/pgbouncer]}" 1)" "$(num "${CPU[$R:$row/causeway]}" 1)" \
            "$(ratio "${CPU[$R:$row/causeway]}" "${CPU[$R:$row/pgbouncer]}")"
    done
    echo
    echo "Average latency (ms)"
    printf '%-9s %7s | %9s %9s %9s %7s\n' mode clients direct pgbouncer causeway cw/pgb
    printf '%s\n' "------------------+-----------------------------------------"
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s\n' "$mode" "$clients" \
            "$(num "${LAT[$R:$row/direct]}" 3)" "$(num "${LAT[$R:$row/pgbouncer]}" 3)" "$(num "${LAT[$R:$row/causeway]}" 3)" \
            "$(ratio "${LAT[$R:$row/causeway]}" "${LAT[$R:$row/pgbouncer]}")"
    done
    echo
    fi
    if want tls; then
    echo "Over TLS (sslmode=require; the poolers use TLS to clients and to PostgreSQL; ECDSA P-256)"
    echo "  tls:     pgbench -S -M simple; TPS and pooler CPU per transaction"
    echo "  connect: pgbench -S -C, a new connection (TLS handshake) per transaction: TPS = handshakes/s; CPU per connection"
    printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' \
        row clients direct pgbouncer causeway cw/pgb "pgb us" "cw us" cw/pgb
    printf '%s\n' "------------------+-----------------------------------------+--------------------------"
    for row in "${TLS_ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$R:$row/direct]}" 0)" "$(num "${TPS[$R:$row/pgbouncer]}" 0)" "$(num "${TPS[$R:$row/causeway]}" 0)" \
            "$(ratio "${TPS[$R:$row/causeway]}" "${TPS[$R:$row/pgbouncer]}")" \
            "$(num "${CPU[$R:$row/pgbouncer]}" 1)" "$(num "${CPU[$R:$row/causeway]}" 1)" \
            "$(ratio "${CPU[$R:$row/causeway]}" "${CPU[$R:$row/pgbouncer]}")"
    done
    echo
    fi
    if want workers; then
    echo "Causeway with workers = 1 vs the default (one per core); the default's figures are the select rows' (if run)"
    printf '%-9s %7s | %9s %9s %7s | %8s %8s %7s\n' mode clients causeway "cw w=1" w1/def "cw us" "w=1 us" w1/def
    printf '%s\n' "------------------+-------------------------------+--------------------------"
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$R:$row/causeway]:--}" 0)" "$(num "${TPS[$R:$row/causeway-w1]}" 0)" \
            "$(ratio "${TPS[$R:$row/causeway-w1]}" "${TPS[$R:$row/causeway]:--}")" \
            "$(num "${CPU[$R:$row/causeway]:--}" 1)" "$(num "${CPU[$R:$row/causeway-w1]}" 1)" \
            "$(ratio "${CPU[$R:$row/causeway-w1]}" "${CPU[$R:$row/causeway]:--}")"
    done
    echo
    fi
    if want baseline; then
    echo "Causeway vs the baseline build ($BASELINE_BIN); the current build's figures are the select rows' (if run)"
    printf '%-9s %7s | %9s %9s %7s | %8s %8s %7s\n' mode clients causeway baseline cur/base "cw us" "base us" cur/base
    printf '%s\n' "------------------+-------------------------------+--------------------------"
    for row in "${ROWS[@]}"; do
        read -r mode clients <<<"$row"
        printf '%-9s %7s | %9s %9s %7s | %8s %8s %7s\n' "$mode" "$clients" \
            "$(num "${TPS[$R:$row/causeway]:--}" 0)" "$(num "${TPS[$R:$row/causeway-base]}" 0)" \
            "$(ratio "${TPS[$R:$row/causeway]:--}" "${TPS[$R:$row/causeway-base]}")" \
            "$(num "${CPU[$R:$row/causeway]:--}" 1)" "$(num "${CPU[$R:$row/causeway-base]}" 1)" \
            "$(ratio "${CPU[$R:$row/causeway]:--}" "${CPU[$R:$row/causeway-base]}")"
    done
    echo
    fi
    if want tpcb; then
    local k="$R:tpcb 50"
    echo "TPC-B (pgbench default script, -M simple, 50 clients); Causeway over primary + streaming replica"
    printf '%-9s | %9s %9s %9s %9s | %8s %8s %8s\n' "" direct pgbouncer "cw none" "cw sess" "pgb us" "none us" "sess us"
    printf '%s\n' "----------+-----------------------------------------+---------------------------"
    printf '%-9s | %9s %9s %9s %9s | %8s %8s %8s\n' "tpcb 50" \
        "$(num "${TPS[$k/direct]}" 0)" "$(num "${TPS[$k/pgbouncer]}" 0)" "$(num "${TPS[$k/cw-none]}" 0)" "$(num "${TPS[$k/cw-session]}" 0)" \
        "$(num "${CPU[$k/pgbouncer]}" 1)" "$(num "${CPU[$k/cw-none]}" 1)" "$(num "${CPU[$k/cw-session]}" 1)"
    echo "  write token's cost: session TPS / none TPS = $(ratio "${TPS[$k/cw-session]}" "${TPS[$k/cw-none]}"); cw none / pgbouncer TPS = $(ratio "${TPS[$k/cw-none]}" "${TPS[$k/pgbouncer]}")"
    echo
    fi
    if want waiters; then
    local k="$R:waiters $WAITERS" s50="$R:simple 50"
    echo "$WAITERS clients on a $POOL_SIZE-connection pool (pgbench -S -M simple -j 2)"
    echo "  CPU us: all of the pooler's CPU over the run, the $WAITERS logins included; net: less a pass of the same logins (pgbench -t 1)"
    printf '%-10s | %9s %9s %9s | %8s %11s | %8s %11s\n' target TPS "lat ms" "stddev" "CPU us" "us vs 50cl" "net us" "net vs 50cl"
    printf '%s\n' "-----------+-------------------------------+----------------------+---------------------"
    for t in pgbouncer causeway; do
        local net=-
        if [[ -n ${LOGIN_TICKS[$k/$t]:-} && -n ${TXNS[$k/$t]:-} ]]; then
            net=$(awk -v d=$(( TICKS[$k/$t] - LOGIN_TICKS[$k/$t] )) -v hz="$CLK_TCK" -v n=$(( TXNS[$k/$t] - WAITERS )) \
                'BEGIN {if (n > 0 && d > 0) printf "%.2f", d / hz / n * 1e6; else print "-"}')
        fi
        printf '%-10s | %9s %9s %9s | %8s %11s | %8s %11s\n' "$t" "$(num "${TPS[$k/$t]}" 0)" "$(num "${LAT[$k/$t]}" 1)" \
            "$(num "${STDDEV[$k/$t]:--}" 1)" "$(num "${CPU[$k/$t]}" 1)" "$(ratio "${CPU[$k/$t]}" "${CPU[$s50/$t]:--}")" \
            "$(num "$net" 1)" "$(ratio "$net" "${CPU[$s50/$t]:--}")"
    done
    echo
    fi
    if want clients10k; then
    local k="$R:many $MANY_CLIENTS" s50="$R:simple 50"
    echo "$MANY_CLIENTS clients: $((MANY_CLIENTS - 50)) idle + 50 running pgbench -S -M simple -j 2"
    printf '%-10s | %9s %13s | %8s %8s\n' target TPS "vs no idle" "CPU us" "CPU %"
    printf '%s\n' "-----------+-------------------------+------------------"
    for t in pgbouncer causeway; do
        printf '%-10s | %9s %13s | %8s %8s\n' "$t" "$(num "${TPS[$k/$t]}" 0)" "$(ratio "${TPS[$k/$t]}" "${TPS[$s50/$t]:--}")" \
            "$(num "${CPU[$k/$t]}" 1)" "$(num "${CPU_PCT[$k/$t]:--}" 0)"
    done
    echo "  pgbouncer: ${MANY[$R:pgbouncer]:-n/a}"
    echo "  causeway:  ${MANY[$R:causeway]:-n/a}"
    echo
    fi
    if want idle; then
    echo "RSS with $IDLE_CLIENTS idle clients (VmRSS, KB; each pooler a fresh process)"
    echo "  pgbouncer: ${RSS_LINE[$R:pgbouncer]}"
    echo "  causeway:  ${RSS_LINE[$R:causeway]}"
    echo
    fi
    echo "1-minute load average at the start and end of each cell"
    local key
    for key in "${!LOADS[@]}"; do
        if [[ $key == "$R:"* ]]; then printf '  %-34s %s\n' "${key#"$R:"}" "${LOADS[$key]}"; fi
    done | sort
}
report() {
    echo "Causeway benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  rev $GIT_REV  $(nproc) cores  ${BENCH_SECONDS}s/run  rows: $BENCH_ROWS"
    echo "PostgreSQL $PG_VERSION | PgBouncer $PGB_VERSION ($PGBOUNCER) | Causeway: $CAUSEWAY_BIN ($CW_STATUS)"
    echo "pgbench -S (select-only) unless said, -j 2 (-j 1 for 1 client); pools: transaction mode, pool size $POOL_SIZE"
    for ((REP = 1; REP <= BENCH_REPEAT; REP++)); do
        echo
        ((BENCH_REPEAT == 1)) || echo "=== run $REP of $BENCH_REPEAT"
        report_run
    done
}
report | tee "$OUT_DIR/latest.txt"
log "table written to bench/out/latest.txt; pgbench and server logs in bench/out/logs/"
