#!/usr/bin/env bash
# make fuzz: runs every cargo-fuzz target for FUZZ_SECONDS (default 60) on
# its committed corpus (fuzz/corpus/<target>, grown in place) and prints
# one line per target: executions, seconds, crashes. Exits 1 if any target
# crashed (the input is in fuzz/artifacts/<target>/).
# Sanitizers are off (-s none): the code is safe Rust, and the fuzzer runs
# several times faster; panics and overflow checks still count as crashes.
# FUZZ_TARGETS limits the run to some targets; FUZZ_JOBS runs that many
# workers per target (libFuzzer -fork; default 1).
set -uo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' Cargo.toml | grep -v causeway-fuzz)}
export RUSTC_BOOTSTRAP=1
RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a -s none >/dev/null 2>build.log || { cat build.log; exit 1; }
mkdir -p logs
failed=0
printf '%-14s %14s %8s %8s\n' target executions seconds crashes
for t in $targets; do
  mkdir -p "corpus/$t"
  log="logs/$t.log"
  cargo fuzz run -O -a -s none "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|leak|timeout|oom)-' || true)
  printf '%-14s %14s %8s %8s\n' "$t" "${runs:-?}" "${took:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    grep -m5 -E 'panicked|ERROR|SUMMARY' "$log" | sed 's/^/    /'
  fi
done
exit $failed
