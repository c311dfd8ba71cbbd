#!/bin/bash
# A hot standby: clone the primary once with pg_basebackup, then follow it by streaming.
set -euo pipefail
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p 5432; do sleep 1; done
  gosu postgres pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" \
    --wal-method=stream --write-recovery-conf --checkpoint=fast
  chmod 700 "$PGDATA"
fi
exec gosu postgres postgres -D "$PGDATA" -c hot_standby=on
