#!/usr/bin/env bash
# A throwaway PostgreSQL + pgvector for the tests, on a Debian machine (made for Debian 12 "bookworm").
#
# Usage:
#   scripts/postgres.sh install          # PostgreSQL (system packages) + pgvector >= 0.8; idempotent; needs root/sudo
#   eval "$(scripts/postgres.sh start [PORT])"   # fresh cluster on 127.0.0.1:PORT (default 54329), exports
#                                        #   DATAKNOBS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#                                        #   DATAKNOBS_TEST_POSTGRES_SSLROOTCERT=<its CA certificate (PEM)>
#   scripts/postgres.sh status           # exit 0 and the DSN when running, exit 3 when not
#   scripts/postgres.sh stop             # stop the cluster and delete its data; no error when nothing runs
#
# install: uses the PostgreSQL major version found in /usr/lib/postgresql/*/bin (the highest one; `postgresql`
#   is installed from Debian when there is none; `openssl` too, for `start`). When that version has no pgvector >= 0.8, it installs
#   postgresql-server-dev-<major>, fetches Debian trixie's *source* package of pgvector through a throwaway deb-src
#   list (nothing is added to the machine's apt configuration), builds it with OPTFLAGS="" (portable: never
#   -march=native) and installs it. Environment: PG_MAJOR (force a major version), PGVECTOR_SUITE (default trixie),
#   PGVECTOR_DESTDIR (testing this script: `make install` into that scratch dir instead of the system).
# start: initdb (trust auth, UTF8, C collation) in a new /tmp/dataknobs-pg.* directory, run as the `postgres` user
#   when invoked as root; fsync/full_page_writes/synchronous_commit off (test speed, data is disposable);
#   `CREATE EXTENSION IF NOT EXISTS vector` as a smoke test. The data dir is recorded in .pg/state. If that cluster
#   still runs on the same port it is reused; a stale one is cleaned up first. Only the export lines go to stdout.
#   TLS and passwords, for the security tests (tests/test_postgres_tls.py): `openssl` makes a throwaway CA and a
#   server certificate (SAN 127.0.0.1 and localhost) in <data dir>/tls, the server runs with ssl=on, and pg_hba.conf
#   gets two rules above the trust lines: members of the NOLOGIN role `dataknobs_password_auth` must give a password
#   (scram-sha-256), members of `dataknobs_tls_only` must give one over TLS (plain connections rejected). Every other
#   role keeps trust, with or without TLS (sslmode=disable works), so the rest of the suite is unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$ROOT/.pg"
STATE_FILE="$STATE_DIR/state"
DEFAULT_PORT=54329
MIN_PGVECTOR=0.8
PGVECTOR_SUITE="${PGVECTOR_SUITE:-trixie}"
DATA_PREFIX="dataknobs-pg."

say() { echo "postgres.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# ver_ge A B: true when version A >= version B
ver_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }

CLEANUP=()
cleanup() { local p; for p in "${CLEANUP[@]+"${CLEANUP[@]}"}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

# ---------------------------------------------------------------- locating PostgreSQL

# Installed major versions (have pg_config and the server binary), highest first.
pg_majors() {
  local d m
  for d in /usr/lib/postgresql/*/bin/pg_config; do
    [ -x "$d" ] || continue
    m="${d#/usr/lib/postgresql/}"; m="${m%%/*}"
    [ -x "/usr/lib/postgresql/$m/bin/postgres" ] && echo "$m"
  done | sort -rV
}

pick_major() {
  if [ -n "${PG_MAJOR:-}" ]; then
    [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] && echo "$PG_MAJOR"
    return 0
  fi
  pg_majors | head -n1
}

# vector.control of a major version (path printed even when absent)
control_file() { echo "$("/usr/lib/postgresql/$1/bin/pg_config" --sharedir)/extension/vector.control"; }

pgvector_version() {  # default_version from vector.control, empty when not installed
  local f; f="$(control_file "$1")"
  [ -f "$f" ] || return 0
  sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$f" | head -n1
}

# ---------------------------------------------------------------- install

SUDO=()
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "install needs root (or sudo) for apt-get and make install"
    SUDO=(sudo)
  fi
}

LOG=""
# step DESCRIPTION CMD...: run an external command quietly; on failure say what failed and show its output.
step() {
  local what="$1"; shift
  local rc=0
  "$@" >"$LOG" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || failed "$what" "$rc" "$*"
}
failed() {  # failed WHAT RC COMMAND: report a failed step with the tail of its output, and exit
  say "FAILED (exit $2): $1"
  say "command: $3"
  tail -n 40 "$LOG" | sed 's/^/    /' >&2
  exit 1
}
# try CMD...: like step, but only report success/failure (output kept in $LOG)
try() { "$@" >"$LOG" 2>&1; }

APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt_env() { "${SUDO[@]+"${SUDO[@]}"}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a "$@"; }

# apt-get update of the machine's lists. DPkg::Lock::Timeout covers only the dpkg locks, not the lists lock that
# `apt-get update` takes, so wait for that one here (up to 10 minutes, e.g. behind unattended-upgrades).
apt_update() {
  local rc i
  for i in $(seq 1 120); do
    rc=0
    apt_env apt-get "${APT_OPTS[@]}" update -q >"$LOG" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || return 0
    grep -q 'Could not get lock\|Unable to lock' "$LOG" || break
    [ "$i" -gt 1 ] || say "waiting for another apt process to release /var/lib/apt/lists/lock"
    sleep 5
  done
  failed "apt-get update" "$rc" "apt-get update"
}

has_candidate() {  # package known to apt with an installable version
  local c
  c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')"
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# apt-get install PKGS..., running `apt-get update` of the machine's lists first when apt doesn't know a package,
# and once more on failure (stale lists -> 404 on download).
apt_install() {
  local p updated=0
  for p in "$@"; do
    if ! has_candidate "$p"; then
      say "apt does not know $p yet: running apt-get update"
      apt_update
      updated=1; break
    fi
  done
  local rc=0
  try apt_env apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$updated" = 0 ] || failed "apt-get install $*" "$rc" "apt-get install $*"
    say "apt-get install $* failed; running apt-get update and retrying"
    apt_update
    step "apt-get install $*" apt_env apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "$@"
  fi
}

# The machine's own Debian mirror (first non-security http(s) URI), then deb.debian.org.
debian_mirrors() {
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) {
                 if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; continue }
                 if ($i ~ /security/) next; print $i; exit } }' /etc/apt/sources.list | head -n1)"
  fi
  case "$uri" in http://* | https://*) echo "${uri%/}" ;; esac
  [ "${uri%/}" = "http://deb.debian.org/debian" ] || echo "http://deb.debian.org/debian"
}

cmd_install() {
  local t0 major ver
  t0="$(now)"
  LOG="$(mktemp)"; CLEANUP+=("$LOG")

  if ! command -v openssl >/dev/null 2>&1; then  # `start` makes the cluster's TLS certificate with it
    need_root
    say "installing openssl (for the test cluster's TLS certificate)"
    apt_install openssl
  fi

  major="$(pick_major)"
  if [ -z "$major" ]; then
    [ -z "${PG_MAJOR:-}" ] || die "PG_MAJOR=$PG_MAJOR: /usr/lib/postgresql/$PG_MAJOR/bin/postgres not found"
    need_root
    say "no PostgreSQL server found; installing Debian's postgresql"
    apt_install postgresql
    major="$(pick_major)"
    [ -n "$major" ] || die "postgresql installed, but no /usr/lib/postgresql/*/bin/postgres was found"
  fi

  ver="$(pgvector_version "$major")"
  if [ -n "$ver" ] && ver_ge "$ver" "$MIN_PGVECTOR"; then
    say "PostgreSQL $major already has pgvector $ver (>= $MIN_PGVECTOR: iterative index scans available); nothing to do"
    return 0
  fi
  if [ -n "$ver" ]; then
    say "PostgreSQL $major has pgvector $ver (< $MIN_PGVECTOR); building a newer one over it"
  fi

  need_root
  local pg_config="/usr/lib/postgresql/$major/bin/pg_config"
  local pkgs=("postgresql-server-dev-$major")
  command -v make >/dev/null 2>&1 || pkgs+=(make)
  command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
  say "installing ${pkgs[*]}"
  apt_install "${pkgs[@]}"

  # Debian's source package of pgvector, through a throwaway deb-src list (the machine's apt config is untouched).
  local work; work="$(mktemp -d)"; CLEANUP+=("$work")
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
  local O=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
  local mirror fetched=""
  while read -r mirror; do
    echo "deb-src $mirror $PGVECTOR_SUITE main" >"$work/sources.list"
    rm -f "$work/src/"*
    if try apt-get "${O[@]}" update -q &&
       (cd "$work/src" && try apt-get "${O[@]}" source --download-only -q pgvector); then
      fetched="$mirror"; break
    fi
    say "could not fetch pgvector's source from $mirror ($PGVECTOR_SUITE):"
    tail -n 5 "$LOG" | sed 's/^/    /' >&2
  done < <(debian_mirrors)
  [ -n "$fetched" ] || die "could not fetch Debian's pgvector source package (suite $PGVECTOR_SUITE)"

  local orig; orig="$(find "$work/src" -maxdepth 1 -name 'pgvector_*.orig.tar.*' | head -n1)"
  [ -n "$orig" ] || die "no pgvector_*.orig.tar.* in the downloaded source package"
  say "building $(basename "$orig") (from $fetched $PGVECTOR_SUITE) for PostgreSQL $major"
  step "unpack $orig" tar -xf "$orig" -C "$work/src"
  local src; src="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector*' | head -n1)"
  [ -n "$src" ] || die "unpacking $orig gave no pgvector-* directory"
  # OPTFLAGS="" replaces pgvector's default -march=native (Debian's own no-native patch does the same).
  step "build pgvector" make -C "$src" -j"$(nproc)" OPTFLAGS="" PG_CONFIG="$pg_config"
  step "install pgvector" "${SUDO[@]+"${SUDO[@]}"}" make -C "$src" install OPTFLAGS="" PG_CONFIG="$pg_config" ${PGVECTOR_DESTDIR:+DESTDIR="$PGVECTOR_DESTDIR"}

  if [ -n "${PGVECTOR_DESTDIR:-}" ]; then
    say "installed into PGVECTOR_DESTDIR=$PGVECTOR_DESTDIR only, not into the system (in $(elapsed "$t0") s)"
    return 0
  fi
  ver="$(pgvector_version "$major")"
  [ -n "$ver" ] || die "make install finished but $(control_file "$major") is missing"
  ver_ge "$ver" "$MIN_PGVECTOR" || die "installed pgvector $ver is older than $MIN_PGVECTOR (no iterative index scans)"
  say "pgvector $ver installed for PostgreSQL $major in $(elapsed "$t0") s (>= $MIN_PGVECTOR: iterative index scans available)"
}

# ---------------------------------------------------------------- cluster

# Run a command as the postgres user when root (the server refuses to run as root), else as ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

STATE_DATA="" STATE_PORT="" STATE_BIN=""
read_state() {
  STATE_DATA="" STATE_PORT="" STATE_BIN=""
  [ -f "$STATE_FILE" ] || return 1
  local k v
  while IFS='=' read -r k v; do
    case "$k" in
      DATA_DIR) STATE_DATA="$v" ;;
      PORT) STATE_PORT="$v" ;;
      BIN_DIR) STATE_BIN="$v" ;;
    esac
  done <"$STATE_FILE"
  [ -n "$STATE_DATA" ]
}

pg_alive() {  # pg_alive BIN DATA: a postmaster process for DATA exists (per pg_ctl)
  [ -n "$1" ] && [ -x "$1/pg_ctl" ] && [ -f "$2/postmaster.pid" ] || return 1
  as_pg "$1/pg_ctl" -D "$2" status >/dev/null 2>&1
}

pg_answers() {  # pg_answers BIN PORT: something answers the PostgreSQL protocol there (0 accepting, 1 starting)
  local rc=0
  "$1/pg_isready" -q -t 3 -h 127.0.0.1 -p "$2" >/dev/null 2>&1 || rc=$?
  [ "$rc" -le 1 ]
}

is_running() {  # is_running BIN DATA PORT
  pg_alive "$1" "$2" && pg_answers "$1" "$3"
}

dsn() { echo "postgresql://postgres@127.0.0.1:$1/postgres"; }

# exports PORT DATA: the lines `start` prints for eval (the root certificate only when the cluster has one)
exports() {
  echo "export DATAKNOBS_TEST_POSTGRES_URL=$(dsn "$1")"
  if [ -f "$2/tls/ca.crt" ]; then echo "export DATAKNOBS_TEST_POSTGRES_SSLROOTCERT=$2/tls/ca.crt"; fi
}

# make_tls DIR: a throwaway CA (ca.crt) and a server certificate it signed (server.crt/.key, SAN 127.0.0.1 and
# localhost), P-256 keys (fast handshakes), valid 30 days: the cluster is deleted long before.
make_tls() {
  command -v openssl >/dev/null 2>&1 || { echo "openssl is needed for the test cluster's TLS certificate"; return 1; }
  local dir="$1"
  mkdir -p "$dir"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 30 \
    -subj "/CN=dataknobs-data test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$dir/server.ext" &&
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/server.ext" -out "$dir/server.crt" &&
  chmod 600 "$dir/server.key" "$dir/ca.key" && chmod 644 "$dir/ca.crt" &&
  rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
}

# secure_hba FILE: put the password and TLS rules for the test roles' groups above initdb's trust lines
# (pg_hba.conf is read top down; the first matching line decides).
secure_hba() {
  local tmp="$1.tmp"
  {
    echo "# dataknobs-data security tests: members of these roles must authenticate (scripts/postgres.sh)"
    echo "hostssl   all  +dataknobs_tls_only       127.0.0.1/32  scram-sha-256"
    echo "hostnossl all  +dataknobs_tls_only       127.0.0.1/32  reject"
    echo "host      all  +dataknobs_password_auth  127.0.0.1/32  scram-sha-256"
    cat "$1"
  } >"$tmp" && mv "$tmp" "$1"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stop the recorded cluster (if any) and delete its data dir and the state file.
stop_recorded() {
  read_state || { rm -f "$STATE_FILE"; return 0; }
  local data="$STATE_DATA" bin="$STATE_BIN"
  if pg_alive "$bin" "$data"; then
    if ! pg_answers "$bin" "$STATE_PORT" ||
       ! as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
      # Hung, dead-but-unreaped, or refusing to stop: kill the postmaster, after checking the pid is really
      # the one serving this data dir.
      local pid; pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
      if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data"; then
        say "the server on port $STATE_PORT does not stop cleanly; killing its postmaster (pid $pid)"
        kill -9 "$pid" 2>/dev/null || true
        sleep 0.5
      fi
    fi
    say "stopped the cluster on port $STATE_PORT"
  fi
  # Only ever delete a directory this script created.
  case "$(basename "$data")" in
    "$DATA_PREFIX"*) rm -rf -- "$data" ;;
    *) say "not deleting $data (not created by this script)" ;;
  esac
  rm -f "$STATE_FILE"
}

cmd_start() {
  local port="${1:-$DEFAULT_PORT}" t0 major bin
  t0="$(now)"
  if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "bad port: $port"; fi

  if read_state; then
    if [ "$STATE_PORT" = "$port" ] && is_running "$STATE_BIN" "$STATE_DATA" "$STATE_PORT"; then
      say "already running on 127.0.0.1:$port (data dir $STATE_DATA); reusing it"
      exports "$port" "$STATE_DATA"
      return 0
    fi
  fi
  # A port held by something else: fail before touching the recorded cluster.
  if [ "$STATE_PORT" != "$port" ] && port_in_use "$port"; then
    die "127.0.0.1:$port is already in use; pass another port: scripts/postgres.sh start PORT"
  fi
  if [ -n "$STATE_DATA" ]; then say "replacing the previous cluster recorded in $STATE_FILE"; fi
  stop_recorded

  major="$(pick_major)"
  [ -n "$major" ] || die "no PostgreSQL server in /usr/lib/postgresql; run: scripts/postgres.sh install"
  [ -n "$(pgvector_version "$major")" ] || die "pgvector is not installed for PostgreSQL $major; run: scripts/postgres.sh install"
  bin="/usr/lib/postgresql/$major/bin"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run the server as"
  fi
  port_in_use "$port" && die "127.0.0.1:$port is already in use; pass another port: scripts/postgres.sh start PORT"

  local data; data="$(mktemp -d "/tmp/${DATA_PREFIX}XXXXXXXX")"
  chmod 700 "$data"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$data"
  local log; log="$(mktemp)"; CLEANUP+=("$log")
  fail() {
    say "FAILED: $1"; tail -n 30 "$log" | sed 's/^/    /' >&2
    [ -f "$data/log" ] && tail -n 30 "$data/log" | sed 's/^/    server: /' >&2
    as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf -- "$data"
    if read_state && [ "$STATE_DATA" = "$data" ]; then rm -f "$STATE_FILE"; fi
    exit 1
  }
  as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >"$log" 2>&1 || fail "initdb"
  local tls=""
  if command -v openssl >/dev/null 2>&1; then
    make_tls "$data/tls" >"$log" 2>&1 || fail "openssl: test CA and server certificate"
    [ "$(id -u)" -ne 0 ] || chown -R postgres: "$data/tls"
    tls="-c ssl=on -c ssl_cert_file=$data/tls/server.crt -c ssl_key_file=$data/tls/server.key"
  else
    say "warning: no openssl: starting without TLS (the TLS tests will be skipped); scripts/postgres.sh install adds it"
  fi
  secure_hba "$data/pg_hba.conf" || fail "pg_hba.conf rules for the password and TLS test roles"
  as_pg "$bin/pg_ctl" -D "$data" -l "$data/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=50 $tls" \
    start >"$log" 2>&1 || fail "pg_ctl start (port $port)"

  mkdir -p "$STATE_DIR"
  printf 'DATA_DIR=%s\nPORT=%s\nBIN_DIR=%s\n' "$data" "$port" "$bin" >"$STATE_FILE.tmp"
  mv "$STATE_FILE.tmp" "$STATE_FILE"

  local i
  for i in $(seq 1 50); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres && break
    sleep 0.2
  done
  local versions
  versions="$(PGCONNECT_TIMEOUT=10 "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "CREATE ROLE dataknobs_password_auth NOLOGIN" -c "CREATE ROLE dataknobs_tls_only NOLOGIN" \
    -c "SELECT current_setting('server_version') || ' ' || extversion FROM pg_extension WHERE extname = 'vector'" \
    2>"$log")" || fail "smoke test: CREATE EXTENSION vector"
  say "PostgreSQL ${versions% *} + pgvector ${versions##* } on 127.0.0.1:$port (data dir $data${tls:+, ssl=on}), started in $(elapsed "$t0") s"
  exports "$port" "$data"
}

cmd_stop() {
  if read_state; then
    stop_recorded
    say "cluster stopped and its data removed"
  else
    rm -f "$STATE_FILE"
    say "nothing to stop"
  fi
}

cmd_status() {
  if read_state && is_running "$STATE_BIN" "$STATE_DATA" "$STATE_PORT"; then
    echo "running: $(dsn "$STATE_PORT") (data dir $STATE_DATA)"
    return 0
  fi
  if [ -n "$STATE_DATA" ]; then
    echo "not running (stale state in $STATE_FILE: $STATE_DATA)"
  else
    echo "not running"
  fi
  return 3
}

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

case "${1:-}" in
  install) shift; [ $# -eq 0 ] || { usage; exit 2; }; cmd_install ;;
  start) shift; [ $# -le 1 ] || { usage; exit 2; }; cmd_start "$@" ;;
  stop) shift; [ $# -eq 0 ] || { usage; exit 2; }; cmd_stop ;;
  status) shift; [ $# -eq 0 ] || { usage; exit 2; }; cmd_status ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
