#!/usr/bin/env bash
# Stop the throwaway cluster started by scripts/ci/start-postgres.sh (if running).
# Uses the same OMPF_PG_PORT / OMPF_PG_DATADIR defaults. The data dir is left
# in place (start-postgres.sh recreates it); set OMPF_PG_CLEAN=1 to delete it.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PORT=${OMPF_PG_PORT:-54329}
DATADIR=${OMPF_PG_DATADIR:-${TMPDIR:-/tmp}/ompf-pg-${PORT}}

log() { printf '[stop-postgres] %s\n' "$*" >&2; }
as_pg() {
  if [[ $(id -un) == postgres ]]; then (cd / && "$@")
  elif [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@")
  else (cd / && sudo -u postgres -- "$@"); fi
}

if [[ -f $DATADIR/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1; then
  log "stopping cluster in ${DATADIR}"
  as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" stop -m fast -w >&2
else
  log "no running cluster in ${DATADIR}"
fi

if [[ ${OMPF_PG_CLEAN:-0} == 1 && -d $DATADIR ]]; then
  log "removing ${DATADIR}"
  if [[ $(id -u) -eq 0 ]]; then rm -rf "$DATADIR"; else sudo rm -rf "$DATADIR"; fi
fi
