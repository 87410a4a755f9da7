#!/usr/bin/env bash
# The offline kind toolchain in one command: Docker, the Go builds, the images, and the cache.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "${TOOLCHAIN_DIR}/versions.env"

usage() {
  cat <<USAGE
Usage: $(basename "$0") COMMAND

  build         docker-up.sh up, build-binaries.sh (all), build-images.sh (all): everything a
                kind cluster needs, from Debian packages and the Go module proxy. Idempotent:
                with a full cache it only checks and takes seconds.
  env           print shell exports for the tests and for people:
                KIND, KUBECTL, KIND_NODE_IMAGE, KIND_CONFIG, KUBESEAL, INGRESS_IMAGE
  cache list    show what the cache holds (${CACHE_ROOT}) and its size, and the images
  cache prune   remove images and saved node images of earlier recipes (keeps the current ones)
  cache clear   delete the cache folder and the images these scripts named for themselves
  timings       print the build timings recorded in ${CACHE_ROOT}/timings.log
USAGE
}

cmd_build() {
  local start
  start=$(date +%s)
  "${REPO_ROOT}/scripts/docker-up.sh" up
  "${TOOLCHAIN_DIR}/build-binaries.sh"
  "${TOOLCHAIN_DIR}/build-images.sh"
  log "toolchain ready in $(( $(date +%s) - start )) s"
}

cmd_env() {
  local k8s
  k8s="$("${TOOLCHAIN_DIR}/build-binaries.sh" --print-dir kubernetes)"
  echo "export KIND=$("${TOOLCHAIN_DIR}/build-binaries.sh" --print-dir kind)/kind"
  echo "export KUBECTL=${k8s}/kubectl"
  echo "export KUBESEAL=$("${TOOLCHAIN_DIR}/build-binaries.sh" --print-dir sealed-secrets)/kubeseal"
  echo "export KIND_NODE_IMAGE=$("${TOOLCHAIN_DIR}/build-images.sh" --print-node-image)"
  echo "export KIND_CONFIG=${TOOLCHAIN_DIR}/kind-config.yaml"
  echo "export INGRESS_IMAGE=$("${TOOLCHAIN_DIR}/build-images.sh" --print-ingress-image)"
}

# Images these scripts (and the kind smoke tests) name for themselves; images named as upstream
# names them (registry.k8s.io/..., docker.io/kindest/...) are listed but never removed.
OUR_REPOS='^backstage-gitops/(kind-base|kind-node|runtime|smoke):'
our_images() {
  docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -E "${OUR_REPOS}" || true
}

# Images of ours that the current recipe no longer names.
stale_images() {
  local keep
  keep="$("${TOOLCHAIN_DIR}/build-images.sh" --print-image-names)"
  our_images | grep -v '^backstage-gitops/smoke:' | grep -vxF "${keep}" || true
}

cmd_cache() {
  case "${1:-list}" in
    list)
      echo "cache: ${CACHE_ROOT}"
      if [[ -d "${CACHE_ROOT}" ]]; then
        du -sh "${CACHE_ROOT}"/* 2>/dev/null || true
        du -sh "${CACHE_ROOT}" 2>/dev/null
        ls -1 "${CACHE_ROOT}/bin" 2>/dev/null | sed 's/^/  bin\//'
      fi
      echo "images built here (docker):"
      docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' 2>/dev/null \
        | grep -E 'backstage-gitops/(kind-base|kind-node|runtime|smoke):|registry.k8s.io/|kindest/|bitnami/sealed|cloudnativelabs/' || true
      ;;
    prune)
      local img f current
      for img in $(stale_images); do docker rmi "${img}" >/dev/null && log "removed stale image ${img}"; done
      current="$("${TOOLCHAIN_DIR}/build-images.sh" --print-image-names)"
      for f in "${CACHE_ROOT}"/images/*.tar; do
        [[ -e "${f}" ]] || continue
        grep -qxF "$(basename "${f}" .tar | sed 's/_/\//; s/_/:/')" <<<"${current}" \
          || { rm -f "${f}"; log "removed stale ${f}"; }
      done
      ;;
    clear)
      log "removing ${CACHE_ROOT}"
      as_root rm -rf "${CACHE_ROOT}"
      local img
      for img in $(our_images); do docker rmi "${img}" >/dev/null && log "removed image ${img}"; done
      log "(registry-named images such as registry.k8s.io/* stay in Docker: docker rmi them if wanted)"
      ;;
    *) usage >&2; exit 2 ;;
  esac
}

main() {
  case "${1:-}" in
    build) cmd_build ;;
    env) cmd_env ;;
    cache) shift; cmd_cache "$@" ;;
    timings) cat "${CACHE_ROOT}/timings.log" 2>/dev/null || echo "no timings yet" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
