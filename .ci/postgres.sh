# Sourced by .ci/run: a PostgreSQL server on 127.0.0.1 for the tests, its URL in DEEPROOTS_TEST_POSTGRES.
#
# * DEEPROOTS_TEST_POSTGRES already set: used as it is.
# * root (or password-less sudo): Debian's `postgresql` package is installed when missing, its
#   cluster started when no server answers on 127.0.0.1:5432, and a role and database made for the tests.
# * otherwise, with PostgreSQL's programs at hand: a throwaway server of this user (initdb) on
#   127.0.0.1:55432, stopped when CI ends.
# * none of these: the PostgreSQL tests skip, saying why.
# Prints the server's version. The role may create databases: every test gets a database of its own.

_pg_user=deeproots
_pg_password=deeproots
_pg_db=deeproots_ci

_pg_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

_pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

_pg_as_superuser() {  # psql as the postgres superuser over the local socket (peer authentication)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi
}

_pg_make_role_and_db() {  # $1: how to run psql as a superuser (a function name), then psql's connection options
  local as="$1"; shift
  $as psql "$@" -v ON_ERROR_STOP=1 -q -d postgres <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$_pg_user') THEN
    CREATE ROLE $_pg_user LOGIN CREATEDB PASSWORD '$_pg_password';
  ELSE
    ALTER ROLE $_pg_user LOGIN CREATEDB PASSWORD '$_pg_password';
  END IF;
END \$\$;
SQL
  if ! $as psql "$@" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$_pg_db'" | grep -q 1; then
    $as psql "$@" -v ON_ERROR_STOP=1 -q -d postgres -c "CREATE DATABASE $_pg_db OWNER $_pg_user"
  fi
}

_pg_plain() { "$@"; }

_pg_system_server() {  # Debian's cluster, as root or with sudo
  _pg_sudo true || return 1
  if [ -z "$(_pg_bindir)" ]; then
    echo "PostgreSQL: installing Debian's postgresql package"
    _pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 ||
      { _pg_sudo apt-get update -q >/dev/null 2>&1 && _pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1; } ||
      { echo "PostgreSQL: apt-get install postgresql failed"; return 1; }
  fi
  local bin; bin=$(_pg_bindir)
  if ! "$bin/pg_isready" -q -h 127.0.0.1 -p 5432; then
    local version; version=$(basename "$(dirname "$bin")")
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -q "^$version main$"; then
      _pg_sudo pg_createcluster "$version" main >/dev/null || return 1
    fi
    _pg_sudo pg_ctlcluster "$version" main start || return 1
    for _ in $(seq 1 30); do "$bin/pg_isready" -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  _pg_make_role_and_db _pg_as_superuser || return 1
  DEEPROOTS_TEST_POSTGRES="postgresql+psycopg2://$_pg_user:$_pg_password@127.0.0.1:5432/$_pg_db"
}

_pg_stop_private() {
  "$_pg_private_bin/pg_ctl" -D "$_pg_private_dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$_pg_private_dir"
}

_pg_private_server() {  # a throwaway server of this user, when PostgreSQL's programs are installed
  _pg_private_bin=$(_pg_bindir); [ -n "$_pg_private_bin" ] || return 1
  _pg_private_dir=$(mktemp -d "${TMPDIR:-/tmp}/deeproots-ci-pg.XXXXXX")
  "$_pg_private_bin/initdb" -D "$_pg_private_dir/data" -U postgres -A trust >/dev/null || return 1
  "$_pg_private_bin/pg_ctl" -D "$_pg_private_dir/data" -l "$_pg_private_dir/log" -w \
    -o "-h 127.0.0.1 -p 55432 -k $_pg_private_dir" start >/dev/null || return 1
  trap _pg_stop_private EXIT
  _pg_make_role_and_db _pg_plain -h 127.0.0.1 -p 55432 -U postgres || return 1
  DEEPROOTS_TEST_POSTGRES="postgresql+psycopg2://$_pg_user:$_pg_password@127.0.0.1:55432/$_pg_db"
}

if [ -z "${DEEPROOTS_TEST_POSTGRES:-}" ]; then
  _pg_system_server || _pg_private_server || true
fi
if [ -n "${DEEPROOTS_TEST_POSTGRES:-}" ]; then
  export DEEPROOTS_TEST_POSTGRES
  _pg_dsn=${DEEPROOTS_TEST_POSTGRES/postgresql+psycopg2:/postgresql:}
  echo "PostgreSQL for the tests: ${DEEPROOTS_TEST_POSTGRES//:$_pg_password@/:***@}"
  psql "$_pg_dsn" -tAc "SELECT version()" 2>/dev/null || "$(_pg_bindir)/psql" "$_pg_dsn" -tAc "SELECT version()" ||
    echo "PostgreSQL: the server does not answer at that URL; its tests will say so"
else
  echo "PostgreSQL: no server can be had here (not root, no sudo, no PostgreSQL programs): the PostgreSQL tests skip"
fi
