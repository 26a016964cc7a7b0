#!/usr/bin/env bash
# Restart the throwaway cluster started by scripts/ci/start-postgres.sh, the way a database
# restart hits a running application: `pg_ctl restart -m fast` (open sessions are terminated,
# in-flight transactions rolled back), returning once the server accepts connections again.
# The soak's databaseRestart fault (npm run soak -- --restart-command ...) runs it mid-batch.
# Uses the same OMPF_PG_PORT / OMPF_PG_DATADIR defaults as start-postgres.sh.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PORT=${OMPF_PG_PORT:-54329}
DATADIR=${OMPF_PG_DATADIR:-${TMPDIR:-/tmp}/ompf-pg-${PORT}}

log() { printf '[restart-postgres] %s\n' "$*" >&2; }
as_pg() {
  if [[ $(id -un) == postgres ]]; then (cd / && "$@")
  elif [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@")
  else (cd / && sudo -u postgres -- "$@"); fi
}

[[ -f $DATADIR/PG_VERSION ]] || { log "no cluster in ${DATADIR} (start it with start-postgres.sh)"; exit 1; }
# The new postmaster must not inherit the caller's pipes (or the caller waits for EOF forever):
# close every fd above 2, and send pg_ctl's own output to the server log.
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if [[ $fd -gt 2 ]]; then eval "exec ${fd}>&-" 2>/dev/null || true; fi
  done
  as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" -l "$DATADIR/server.log" -w -t 60 restart -m fast \
    </dev/null >/dev/null 2>&1
) || { tail -n 20 "$DATADIR/server.log" >&2 || true; log "pg_ctl restart failed"; exit 1; }
for _ in $(seq 1 60); do
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 && exit 0
  sleep 0.25
done
log "server on 127.0.0.1:${PORT} not ready after restart"
exit 1
