#!/usr/bin/env bash
# Build the PostgreSQL image that the manifests name (postgres:17-trixie, an official tag)
# from Debian's packages, for machines that cannot pull from a container registry. Its entry
# point (images/postgres/docker-entrypoint.sh) honours the official image's contract:
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA, init only on an empty data directory,
# port 5432 on all addresses, the postgres user (uid/gid 999).
#
# With --pull (a machine that reaches Docker Hub) the official image is pulled instead.
# The image carries a content key (base image + build context); an unchanged rebuild costs
# seconds.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [options]

Builds postgres:${POSTGRES_MAJOR}-${DEBIAN_SUITE} from Debian's postgresql-${POSTGRES_MAJOR}.

Options:
  --tag IMAGE            image name (default: postgres:${POSTGRES_MAJOR}-${DEBIAN_SUITE})
  --pull                 pull the official image instead of building (falls back to building
                         when the pull fails)
  --force                rebuild even when an image with the same content key exists
  --push REGISTRY        also push the image to REGISTRY
  --kind-load CLUSTER    also load the image into the kind cluster CLUSTER
  --minikube-load PROFILE  also load the image into the minikube profile PROFILE
  -h, --help             this help

Prints the image name on stdout.
USAGE
}

TAG="postgres:${POSTGRES_MAJOR}-${DEBIAN_SUITE}"
PULL=0
FORCE=0
PUSH_REGISTRY=""
KIND_CLUSTER=""
MINIKUBE_PROFILE=""
CONTEXT="${REPO_ROOT}/images/postgres"

parse_args() {
  while [[ $# -gt 0 ]]; do
    common_option "$@"
    if [[ ${OPTION_ARGS} -gt 0 ]]; then shift "${OPTION_ARGS}"; continue; fi
    case "$1" in
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
}

try_pull() {
  step "pull ${TAG}"
  if docker pull "${TAG}" >&2; then
    step_done
    return 0
  fi
  log "    pulling ${TAG} failed; building it from Debian's packages instead"
  return 1
}

build_image() {
  local base key old base_args=(postgres)
  [[ ${FORCE} -eq 1 ]] && base_args=(--force postgres)
  base="$(_IMAGES_NESTED=1 "${REPO_ROOT}/scripts/build-base-images.sh" "${base_args[@]}")"
  key="$(hash_of "${CONTEXT}" "base $(docker image inspect --format '{{.Id}}' "${base}")")"
  if [[ ${FORCE} -eq 0 ]] && image_is_current "${TAG}" "${key}"; then
    log "${TAG} is current (key ${key})"
    return 0
  fi
  step "docker build ${TAG} from ${CONTEXT} (base ${base}, key ${key})"
  old="$(image_id "${TAG}")"
  docker_build --build-arg "BASE_IMAGE=${base}" --label "${CONTENT_LABEL}=${key}" \
    --tag "${TAG}" "${CONTEXT}" >&2 || die "docker build of ${TAG} failed"
  remove_if_dangling "${old}"
  step_done
}

main() {
  parse_args "$@"
  require_docker
  if [[ ${PULL} -eq 0 ]] || ! try_pull; then
    require_cmd mmdebstrap
    build_image
  fi
  log "image ${TAG} ($(docker image inspect --format '{{.Size}}' "${TAG}" | awk '{printf "%d MB", $1/1000000}'))"
  distribute_image "${TAG}" "${KIND_CLUSTER}" "${MINIKUBE_PROFILE}" "${PUSH_REGISTRY}"
  total_time
  printf '%s\n' "${TAG}"
}

main "$@"
