#!/bin/bash
# A streaming replica of `primary`: copy its data directory once (the
# primary is healthy before this starts), then run as a hot standby.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres \
        pg_basebackup -h primary -U replicator -D "$PGDATA" -R -X stream
fi
exec gosu postgres postgres -c hot_standby=on
