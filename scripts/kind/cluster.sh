#!/usr/bin/env bash
# Create, delete and load images into kind clusters made from the locally built node image.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "${TOOLCHAIN_DIR}/versions.env"

DEFAULT_NAME="backstage-gitops"
KIND_CONFIG="${KIND_CONFIG:-${TOOLCHAIN_DIR}/kind-config.yaml}"

usage() {
  cat <<USAGE
Usage: $(basename "$0") COMMAND [ARGS]

  create [NAME]          create cluster NAME (default ${DEFAULT_NAME}) from ${KIND_CONFIG#"${REPO_ROOT}"/}
                         and wait until its node is Ready; prints the create-to-Ready time
  delete [NAME]          delete cluster NAME (only a kind cluster of that name)
  load IMAGE... [--name NAME]   kind load docker-image IMAGE... into cluster NAME
  kubeconfig [NAME]      print the path of cluster NAME's kubeconfig (written on create)
  list                   list kind clusters

Environment: KIND_CONFIG (kind config file), TOOLCHAIN_PULL=1 (use kind's default upstream
node image instead of the locally built one, on a machine that can reach registries).
USAGE
}

kind_bin() {
  local k
  k="$("${TOOLCHAIN_DIR}/build-binaries.sh" --print-dir kind)/kind"
  [[ -x "${k}" ]] || "${TOOLCHAIN_DIR}/build-binaries.sh" kind >&2
  echo "${k}"
}

kubectl_bin() { echo "$("${TOOLCHAIN_DIR}/build-binaries.sh" --print-dir kubernetes)/kubectl"; }

kubeconfig_path() { echo "${CACHE_ROOT}/kubeconfig/$1"; }

cmd_create() {
  local name="${1:-${DEFAULT_NAME}}" kind image_args=() kubeconfig start
  kind="$(kind_bin)"
  docker info >/dev/null 2>&1 || die "Docker does not answer; run scripts/docker-up.sh first"
  if [[ "${TOOLCHAIN_PULL:-0}" != 1 ]]; then
    local image
    image="$("${TOOLCHAIN_DIR}/build-images.sh" --print-node-image)"
    docker image inspect "${image}" >/dev/null 2>&1 \
      || die "node image ${image} is missing; run scripts/kind/toolchain.sh build"
    image_args=(--image "${image}")
  fi
  if "${kind}" get clusters 2>/dev/null | grep -qx "${name}"; then
    log "cluster ${name} exists already"
    return 0
  fi
  kubeconfig="$(kubeconfig_path "${name}")"
  mkdir -p "$(dirname "${kubeconfig}")"
  start=$(date +%s)
  run_timed "kind create cluster ${name}" "${kind}" create cluster --name "${name}" \
    --config "${KIND_CONFIG}" "${image_args[@]}" --kubeconfig "${kubeconfig}" --wait 180s
  "$(kubectl_bin)" --kubeconfig "${kubeconfig}" wait --for=condition=Ready nodes --all --timeout=180s >&2
  log "cluster ${name}: create-to-Ready $(( $(date +%s) - start )) s; kubeconfig ${kubeconfig}"
}

cmd_delete() {
  local name="${1:-${DEFAULT_NAME}}" kind
  kind="$(kind_bin)"
  if ! "${kind}" get clusters 2>/dev/null | grep -qx "${name}"; then
    log "no kind cluster named ${name}"
    return 0
  fi
  run_timed "kind delete cluster ${name}" "${kind}" delete cluster --name "${name}" \
    --kubeconfig "$(kubeconfig_path "${name}")"
  rm -f "$(kubeconfig_path "${name}")"
}

cmd_load() {
  local name="${DEFAULT_NAME}" images=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name) name="$2"; shift ;;
      *) images+=("$1") ;;
    esac
    shift
  done
  [[ ${#images[@]} -gt 0 ]] || die "load: name at least one image"
  run_timed "kind load docker-image ${images[*]} (${name})" \
    "$(kind_bin)" load docker-image --name "${name}" "${images[@]}"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    create) cmd_create "$@" ;;
    delete) cmd_delete "$@" ;;
    load) cmd_load "$@" ;;
    kubeconfig) kubeconfig_path "${1:-${DEFAULT_NAME}}" ;;
    list) "$(kind_bin)" get clusters ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
