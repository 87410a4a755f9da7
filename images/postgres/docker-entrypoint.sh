#!/usr/bin/env bash
# Entry point of the PostgreSQL image that backstage-gitops builds from Debian's packages.
# It follows the contract of the official postgres image, so the same manifests work with
# either image:
#   POSTGRES_PASSWORD   superuser password; required to initialise (unless
#                       POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER       superuser name (default: postgres)
#   POSTGRES_DB         database created at initialisation (default: POSTGRES_USER)
#   POSTGRES_INITDB_ARGS  extra initdb arguments
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for TCP connections (default: scram-sha-256)
#   PGDATA              data directory (default: /var/lib/postgresql/data); use a subdirectory
#                       of a mounted volume
#   *_FILE              POSTGRES_PASSWORD_FILE, POSTGRES_USER_FILE, POSTGRES_DB_FILE read the
#                       value from a file (e.g. a mounted Secret)
#   /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz  run once, after initialisation
# The data directory is initialised only when it holds no database (no PG_VERSION). The server
# listens on 5432 on all addresses. Started as root, the script prepares the directories and
# drops to the postgres user (uid/gid 999); started directly as that user (a pod with
# runAsUser: 999 and fsGroup: 999), it needs no privileges.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
fail() { log "error: $*"; exit 1; }

# file_env VAR [DEFAULT]: VAR from the environment, or from the file named by VAR_FILE.
file_env() {
  local var="$1" default="${2:-}" file_var="${1}_FILE"
  if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
    fail "both ${var} and ${file_var} are set; set only one"
  fi
  local value="${default}"
  if [[ -n "${!var:-}" ]]; then
    value="${!var}"
  elif [[ -n "${!file_var:-}" ]]; then
    [[ -r "${!file_var}" ]] || fail "${file_var}=${!file_var} is not a readable file"
    value="$(<"${!file_var}")"
  fi
  export "${var}=${value}"
  unset "${file_var}"
}

setup_env() {
  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "${POSTGRES_USER}"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  DATABASE_EXISTS=0
  [[ -s "${PGDATA}/PG_VERSION" ]] && DATABASE_EXISTS=1
  return 0
}

# As root: create PGDATA and the socket directory for the postgres user.
prepare_dirs_as_root() {
  mkdir -p "${PGDATA}" /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  # Only PGDATA itself (and its content when it is not ours yet): a volume's root may hold
  # other things, such as lost+found.
  if [[ "$(stat -c %u "${PGDATA}")" != "$(id -u postgres)" ]]; then
    chown -R postgres:postgres "${PGDATA}"
  fi
  chmod 0700 "${PGDATA}"
}

# As the postgres user: create PGDATA if needed, with the mode initdb and postgres demand.
prepare_dirs_as_user() {
  mkdir -p "${PGDATA}" 2>/dev/null ||
    fail "cannot create PGDATA=${PGDATA} as uid $(id -u): make the volume writable for this user (e.g. fsGroup: 999) and use a subdirectory of it as PGDATA"
  [[ -O "${PGDATA}" ]] ||
    fail "PGDATA=${PGDATA} belongs to uid $(stat -c %u "${PGDATA}"), not to uid $(id -u) that runs PostgreSQL: use a subdirectory of the volume as PGDATA (PostgreSQL creates it) or start the container as root"
  chmod 0700 "${PGDATA}" || fail "cannot set mode 0700 on PGDATA=${PGDATA}"
  [[ -w /var/run/postgresql ]] || fail "/var/run/postgresql is not writable by uid $(id -u)"
}

require_password() {
  if [[ -z "${POSTGRES_PASSWORD}" && "${POSTGRES_HOST_AUTH_METHOD}" != trust ]]; then
    cat >&2 <<'MSG'
Error: the database is not initialised and no superuser password is given.
       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value, e.g. from the
       Secret postgres-secrets. Refusing to start.
       (POSTGRES_HOST_AUTH_METHOD=trust would allow connections without a password: never
       do that outside a throwaway test.)
MSG
    exit 1
  fi
  if [[ "${POSTGRES_HOST_AUTH_METHOD}" == trust ]]; then
    log "warning: POSTGRES_HOST_AUTH_METHOD=trust: every TCP connection is allowed without a password"
  fi
}

init_database_dir() {
  log "initialising a new database cluster in ${PGDATA} (superuser ${POSTGRES_USER})"
  local pwfile
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD}" >"${pwfile}"
  # Local (socket) connections are trusted, so `psql -U "$POSTGRES_USER"` works inside the
  # container; TCP connections need a password (scram-sha-256 by default).
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments, as upstream.
  initdb --username="${POSTGRES_USER}" --pwfile="${pwfile}" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD}" ${POSTGRES_INITDB_ARGS} >&2 ||
    { rm -f "${pwfile}"; fail "initdb failed in ${PGDATA}"; }
  rm -f "${pwfile}"
  {
    printf '\n# added by the entrypoint: TCP connections from any address\n'
    printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD}"
  } >>"${PGDATA}/pg_hba.conf"
}

# psql_local ARGS...: psql over the socket of the temporary server, as the superuser.
psql_local() {
  PGHOST=/var/run/postgresql PGPORT=5432 psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
    --username "${POSTGRES_USER}" "$@"
}

# Start a server that listens on the socket only, create POSTGRES_DB, run the init scripts.
setup_database() {
  pg_ctl -D "${PGDATA}" -o "-c listen_addresses='' -p 5432" -w start >&2 ||
    fail "the temporary server for initialisation did not start"
  if [[ "${POSTGRES_DB}" != postgres ]]; then
    log "creating database ${POSTGRES_DB}"
    psql_local --dbname postgres --set db="${POSTGRES_DB}" <<<'CREATE DATABASE :"db";' >&2
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e "${f}" ]] || continue
    case "${f}" in
      *.sh) log "running ${f}"; bash "${f}" ;;
      *.sql) log "running ${f}"; psql_local --dbname "${POSTGRES_DB}" -f "${f}" >&2 ;;
      *.sql.gz) log "running ${f}"; gunzip -c "${f}" | psql_local --dbname "${POSTGRES_DB}" >&2 ;;
      *) log "ignoring ${f}" ;;
    esac
  done
  pg_ctl -D "${PGDATA}" -m fast -w stop >&2 || fail "the temporary server did not stop"
  log "initialisation complete; starting PostgreSQL"
}

main() {
  # `docker run IMAGE -c key=value` means `postgres -c key=value`.
  if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
  if [[ "${1:-}" != postgres ]]; then exec "$@"; fi

  setup_env
  if [[ "$(id -u)" == 0 ]]; then
    prepare_dirs_as_root
    log "dropping privileges to postgres (uid $(id -u postgres))"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi

  prepare_dirs_as_user
  if [[ ${DATABASE_EXISTS} -eq 1 ]]; then
    log "PGDATA=${PGDATA} already holds a database (PG_VERSION $(<"${PGDATA}/PG_VERSION")); skipping initialisation"
  else
    require_password
    init_database_dir
    setup_database
  fi
  unset POSTGRES_PASSWORD
  exec "$@"
}

main "$@"
