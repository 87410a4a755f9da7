#!/usr/bin/env bash
# Measure the images as docs/images.md reports them: build times (warm, and cold with --cold),
# image sizes, and the Backstage start-to-ready time against our PostgreSQL image.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--cold] [--runs N]

  --cold     first remove backstage:1.0.0, postgres:17-trixie and their base images, and build
             with empty caches (a temporary XDG_CACHE_HOME and Yarn global folder, and no
             node_modules in the app), as on a new machine; takes minutes
  --runs N   start Backstage N times to time start-to-ready (default 3)
USAGE
}

COLD=0
RUNS=3
NET="bgo-measure-$$"
PG="bgo-measure-pg-$$"
BS="bgo-measure-backstage-$$"
APP_DIR="${REPO_ROOT}/images/backstage-app"
COLD_DIR=""
BUILD_LOG="${TMPDIR:-/tmp}/bgo-measure-images.log"

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --cold) COLD=1 ;;
      --runs) RUNS="${2:?--runs needs a number}"; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
}

# timed LABEL CMD...: run CMD (its progress into BUILD_LOG) and print LABEL with the seconds.
timed() {
  local label="$1" t0=${SECONDS}
  shift
  "$@" >/dev/null 2>>"${BUILD_LOG}" || { tail -n 30 "${BUILD_LOG}" >&2; die "${label} failed (log: ${BUILD_LOG})"; }
  printf '%-44s %4d s\n' "${label}" "$((SECONDS - t0))"
}

make_cold() {
  local img cold_dir
  cold_dir="$(mktemp -d /tmp/bgo-measure-cold.XXXXXX)"
  log "cold: removing the images and using empty caches in ${cold_dir}"
  for img in backstage:1.0.0 postgres:17-trixie "backstage-gitops/postgres-base:${POSTGRES_MAJOR}-${DEBIAN_SUITE}" \
    "node:${NODE_VERSION%%.*}-${DEBIAN_SUITE}-slim"; do
    docker image rm "${img}" >/dev/null 2>&1 || true
  done
  docker image ls --format '{{.Repository}}:{{.Tag}}' backstage | grep -F 'backstage:1.0.0-' |
    xargs -r docker image rm >/dev/null 2>&1 || true
  rm -rf "${APP_DIR}/node_modules" "${APP_DIR}/packages/backend/dist"
  export XDG_CACHE_HOME="${cold_dir}/cache" YARN_GLOBAL_FOLDER="${cold_dir}/yarn"
  COLD_DIR="${cold_dir}"
}

measure_builds() {
  local kind=warm
  [[ ${COLD} -eq 1 ]] && kind=cold
  timed "build-postgres-image.sh (${kind})" "${REPO_ROOT}/scripts/build-postgres-image.sh"
  timed "build-backstage-image.sh (${kind})" "${REPO_ROOT}/scripts/build-backstage-image.sh"
  timed "build-postgres-image.sh (unchanged)" "${REPO_ROOT}/scripts/build-postgres-image.sh"
  timed "build-backstage-image.sh (unchanged)" "${REPO_ROOT}/scripts/build-backstage-image.sh"
}

measure_sizes() {
  local img
  for img in backstage:1.0.0 postgres:17-trixie "node:${NODE_VERSION%%.*}-${DEBIAN_SUITE}-slim"; do
    printf '%-44s %4d MB\n' "size of ${img}" \
      "$(docker image inspect --format '{{.Size}}' "${img}" | awk '{print int($1/1000000)}')"
  done
}

# Remove only what this script made.
cleanup() {
  docker rm -f "${BS}" "${PG}" >/dev/null 2>&1 || true
  docker network rm "${NET}" >/dev/null 2>&1 || true
  if [[ -n "${COLD_DIR}" ]]; then rm -rf "${COLD_DIR}"; fi
}

now() { date +%s.%N; }

measure_ready() {
  require_cmd curl
  docker network create "${NET}" >/dev/null
  docker run -d --name "${PG}" --network "${NET}" --network-alias postgres \
    -e POSTGRES_USER=backstage -e POSTGRES_PASSWORD=measure-only \
    -e PGDATA=/var/lib/postgresql/data/pgdata postgres:17-trixie >/dev/null
  local i t0 port deadline
  deadline=$((SECONDS + 60))
  until docker exec "${PG}" pg_isready -h 127.0.0.1 -U backstage >/dev/null 2>&1; do
    [[ ${SECONDS} -lt ${deadline} ]] || die "PostgreSQL did not become ready in 60 s"
    sleep 0.2
  done
  for ((i = 1; i <= RUNS; i++)); do
    t0="$(now)"
    docker run -d --name "${BS}" --network "${NET}" -p 127.0.0.1::7007 \
      -e POSTGRES_HOST=postgres -e POSTGRES_PORT=5432 -e POSTGRES_USER=backstage \
      -e POSTGRES_PASSWORD=measure-only -e BACKEND_SECRET=bWVhc3VyZS1vbmx5 backstage:1.0.0 >/dev/null
    port="$(docker port "${BS}" 7007/tcp | head -1)"
    deadline=$((SECONDS + 180))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://${port}/.backstage/health/v1/readiness")" == 200 ]]; do
      [[ ${SECONDS} -lt ${deadline} ]] || { docker logs --tail 40 "${BS}" >&2; die "Backstage was not ready in 180 s"; }
      sleep 0.2
    done
    printf '%-44s %6.1f s\n' "start-to-ready, run ${i}$([[ ${i} -eq 1 ]] && echo ' (empty database)')" \
      "$(echo "$(now) - ${t0}" | bc)"
    docker rm -f "${BS}" >/dev/null
  done
}

main() {
  parse_args "$@"
  require_docker
  require_cmd bc
  trap cleanup EXIT
  : >"${BUILD_LOG}"
  log "build progress goes to ${BUILD_LOG}"
  if [[ ${COLD} -eq 1 ]]; then make_cold; fi
  measure_builds
  measure_sizes
  measure_ready
  printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

main "$@"
