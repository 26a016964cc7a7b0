#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 + pgvector cluster for the test suite.
#
#   OMPF_TEST_DATABASE_URL=$(scripts/ci/start-postgres.sh)
#
# Idempotent: installs what is missing (postgresql-15, server headers, build
# tools, pgvector >= 0.7 built from Debian trixie's source package), then
# starts a cluster owned by the `postgres` OS user unless one already answers
# on the port. Only the connection URL goes to stdout (as the last line);
# everything else goes to stderr.
#
# Env:
#   OMPF_PG_PORT     port to listen on (127.0.0.1 only)   default 54329
#   OMPF_PG_DATADIR  cluster data dir                      default ${TMPDIR:-/tmp}/ompf-pg-$OMPF_PG_PORT
#   OMPF_PG_DB       database to create                    default ompf_test
set -euo pipefail

# Keep the real stdout on fd 3 for the URL; everything else to stderr.
exec 3>&1 1>&2

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin
PG_CONFIG=${PG_BIN}/pg_config
PORT=${OMPF_PG_PORT:-54329}
DATADIR=${OMPF_PG_DATADIR:-${TMPDIR:-/tmp}/ompf-pg-${PORT}}
DB=${OMPF_PG_DB:-ompf_test}
HOST=127.0.0.1
PGVECTOR_MIN=0.7
URL="postgres://postgres@${HOST}:${PORT}/${DB}"

log() { printf '[start-postgres] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 && SUDO=(sudo) || SUDO=()
fi
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif [[ ${#SUDO[@]} -gt 0 ]]; then "${SUDO[@]}" "$@"
  else die "need root (or sudo) to run: $*"; fi
}
as_pg() {
  # Run from / so postgres is not left in a cwd it cannot read.
  if [[ $(id -un) == postgres ]]; then (cd / && "$@")
  elif [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@")
  else (cd / && sudo -u postgres -- "$@"); fi
}

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update_once() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
}
pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update_once
    log "apt-get install ${missing[*]}"
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# --- 1. PostgreSQL 15 server ------------------------------------------------
if [[ ! -x ${PG_BIN}/postgres || ! -x ${PG_BIN}/initdb ]]; then
  ensure_pkgs postgresql-${PG_MAJOR}
fi
[[ -x ${PG_BIN}/postgres ]] || die "${PG_BIN}/postgres missing after install"

# --- 2. pgvector ------------------------------------------------------------
pgvector_version() {
  # Prints default_version from vector.control, or nothing.
  local ctl
  ctl="$("$PG_CONFIG" --sharedir)/extension/vector.control"
  [[ -f $ctl ]] || return 0
  sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$ctl"
}
pgvector_ok() {
  local v
  v=$(pgvector_version)
  [[ -n $v ]] && [[ -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ]] \
    && dpkg --compare-versions "$v" ge "$PGVECTOR_MIN"
}

if pgvector_ok; then
  log "pgvector $(pgvector_version) already installed"
else
  log "pgvector >= ${PGVECTOR_MIN} not installed; building from Debian trixie source package"
  ensure_pkgs postgresql-server-dev-${PG_MAJOR} build-essential dpkg-dev ca-certificates

  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ompf-pgvector.XXXXXX")
  trap 'as_root rm -rf "$WORK"' EXIT
  # Only deb-src for trixie, and only in a private sources list used for these
  # two apt invocations, so no trixie binaries can ever be installed and later
  # `apt-get update`s are unaffected.
  SRCLIST="$WORK/trixie-src.list"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" > "$SRCLIST"
  APT_SRC_OPTS=(-o "Dir::Etc::sourcelist=$SRCLIST" -o "Dir::Etc::sourceparts=-"
                -o "APT::Get::List-Cleanup=0")
  log "apt-get update (trixie deb-src only)"
  as_root apt-get "${APT_SRC_OPTS[@]}" update -qq
  SRCDIR="$WORK/src"
  mkdir -p "$SRCDIR"
  # Let apt's unprivileged _apt user write the download (avoids sandbox warning).
  if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$SRCDIR"; fi
  log "apt-get source pgvector"
  (cd "$SRCDIR" && as_root apt-get "${APT_SRC_OPTS[@]}" source -qq pgvector)
  PKGDIR=$(find "$SRCDIR" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
  [[ -n $PKGDIR ]] || die "apt-get source pgvector produced no source tree"
  log "building $(basename "$PKGDIR") against $("$PG_CONFIG" --version)"
  # OPTFLAGS= : portable build (no -march=native), as Debian does.
  make -C "$PKGDIR" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" OPTFLAGS= >&2
  as_root make -C "$PKGDIR" install PG_CONFIG="$PG_CONFIG" OPTFLAGS= >&2
  as_root rm -rf "$WORK"
  trap - EXIT
  pgvector_ok || die "pgvector install did not produce a usable vector.control/vector.so"
  log "pgvector $(pgvector_version) installed"
fi

# --- 3. cluster ---------------------------------------------------------------
psql_pg() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres "$@"; }

# Called as `ensure_db || die`, where set -e is off: every step checks itself.
ensure_db() {
  local exists v
  exists=$(psql_pg -d postgres -tAc "select 1 from pg_database where datname = '${DB}'") || return 1
  if [[ $exists != 1 ]]; then
    log "creating database ${DB}"
    psql_pg -d postgres -c "CREATE DATABASE \"${DB}\"" || return 1
  fi
  psql_pg -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS vector" || return 1
  v=$(psql_pg -d "$DB" -tAc "select extversion from pg_extension where extname = 'vector'") || return 1
  [[ -n $v ]] || return 1
  log "database ${DB} ready, extension vector ${v}"
}

ready() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -t 2; }

if ready; then
  log "server already accepting connections on ${HOST}:${PORT}"
else
  rc=0; "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -t 2 || rc=$?
  if [[ $rc -eq 1 ]]; then
    log "server on ${HOST}:${PORT} is starting up; waiting"
  else
    # Nothing answering: (re)create a fresh throwaway cluster.
    if [[ -d $DATADIR ]]; then
      log "removing stale data dir ${DATADIR}"
      as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" stop -m immediate >/dev/null 2>&1 || true
      as_root rm -rf "$DATADIR"
    fi
    as_root install -d -m 0700 -o postgres -g postgres "$DATADIR"
    log "initdb ${DATADIR}"
    as_pg "$PG_BIN/initdb" -D "$DATADIR" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >&2
    cat <<CONF | as_pg tee -a "$DATADIR/postgresql.conf" >/dev/null

# --- ompf throwaway test cluster ---
listen_addresses = '${HOST}'
port = ${PORT}
unix_socket_directories = '${DATADIR}'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    log "starting server on ${HOST}:${PORT}"
    # The postmaster must not inherit fd 3 (the caller's stdout, e.g. the pipe
    # of `URL=$(start-postgres.sh)`) or any other pipe of the caller's, or the
    # caller would wait for EOF forever. Close every fd above 2 in a subshell.
    (
      for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        if [[ $fd -gt 2 ]]; then eval "exec ${fd}>&-" 2>/dev/null || true; fi
      done
      as_pg "$PG_BIN/pg_ctl" -D "$DATADIR" -l "$DATADIR/server.log" -w -t 60 start >&2
    ) || { cat "$DATADIR/server.log" >&2 || true; die "pg_ctl start failed"; }
  fi
  for _ in $(seq 1 60); do ready && break; sleep 0.5; done
  ready || die "server on ${HOST}:${PORT} not ready after 30s"
fi

ensure_db || die "server on ${HOST}:${PORT} is not usable as postgres/trust (port taken by another server?)"

# --- 4. URL: last (and only) line on stdout ----------------------------------
printf '%s\n' "$URL" >&3
