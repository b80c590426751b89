#!/usr/bin/env bash
# Integration tests wait on conditions, not clocks (integration/src/wait.rs:
# eventually / poll). A fixed sleep in integration/tests or the harness
# (integration/src, not its bins) must say why on the line just above it:
#     // sleep-ok: <why: load pacing, a sampler, a "does NOT happen" window>
# Exits 1 listing every unmarked sleep. Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."

files=$(find integration/tests integration/src -name '*.rs' \
    -not -path 'integration/src/bin/*' -not -path 'integration/src/wait.rs' | sort)

# shellcheck disable=SC2086
bad=$(awk '
    FNR == 1 { prev = "" }
    {
        line = $0
        gsub(/pg_sleep\(/, "", line)
        if (line ~ /(^|[^A-Za-z0-9_])sleep(_until)?\(/ && line !~ /^[ \t]*\/\// && prev !~ /sleep-ok:/)
            printf "%s:%d: %s\n", FILENAME, FNR, $0
        prev = $0
    }' $files)

if [ -n "$bad" ]; then
    echo "Fixed sleeps in integration tests: wait on the condition instead"
    echo "(eventually / poll in integration/src/wait.rs), or, if the sleep is"
    echo "not a wait (load pacing, a sampler, a window in which something must"
    echo "NOT happen), put '// sleep-ok: <why>' on the line above."
    echo "$bad"
    exit 1
fi
echo "check-sleeps: no unmarked sleeps in integration/"
