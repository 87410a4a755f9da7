#!/usr/bin/env bash
# Build the base images that the Backstage and PostgreSQL images start FROM, without pulling
# from any container registry: a Debian root filesystem made by mmdebstrap from Debian's
# packages, plus (for Node) the official Node binary as published on the npm registry, turned
# into an image by `docker import`.
#
#   node:24-trixie-slim                   Debian trixie + /usr/local/bin/node + yarn 1 + user node (1000)
#   backstage-gitops/postgres-base:17-trixie  Debian trixie + Debian's postgresql-17, user postgres (999)
#
# The Node image has the same name, user, paths and entry point conventions as the official
# image, so the app's Dockerfile (FROM node:24-trixie-slim) works with either. Each image is
# labelled with a key of what it was built from; an image with the same key is reused, so a
# rebuild with nothing changed costs a second. Root file systems are cached as tarballs under
# ${XDG_CACHE_HOME:-~/.cache}/backstage-gitops/rootfs.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [options] [node|postgres|all]

Builds the base images (default: all) from Debian packages and the npm registry.

Options:
  --force        rebuild even when an image with the same content key exists
  --pull         on a machine that reaches Docker Hub: pull the official node image instead
                 of building it, and build it when the pull fails (the PostgreSQL base is
                 always built; build-postgres-image.sh --pull pulls the final image instead)
  -h, --help     this help

Environment (defaults): DEBIAN_SUITE=${DEBIAN_SUITE} NODE_VERSION=${NODE_VERSION}
  YARN_CLASSIC_VERSION=${YARN_CLASSIC_VERSION} POSTGRES_MAJOR=${POSTGRES_MAJOR}
  DEBIAN_MIRROR=${DEBIAN_MIRROR}
Prints the image names built, one a line, on stdout.
USAGE
}

FORCE=0
PULL=0
TARGET=all

node_image() { printf 'node:%s-%s-slim\n' "${NODE_VERSION%%.*}" "${DEBIAN_SUITE}"; }
postgres_base_image() {
  printf 'backstage-gitops/postgres-base:%s-%s\n' "${POSTGRES_MAJOR}" "${DEBIAN_SUITE}"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --force) FORCE=1 ;;
      --pull) PULL=1 ;;
      -h | --help) usage; exit 0 ;;
      node | postgres | all) TARGET="$1" ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
}

# Trim a Debian root file system the way the -slim images do: no manuals, docs or locales.
DPKG_SLIM_OPTS=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

sources() {
  printf 'deb %s %s main\n' "${DEBIAN_MIRROR}" "${DEBIAN_SUITE}"
  printf 'deb %s %s-updates main\n' "${DEBIAN_MIRROR}" "${DEBIAN_SUITE}"
  printf 'deb %s %s-security main\n' "${DEBIAN_SECURITY_MIRROR}" "${DEBIAN_SUITE}"
}

# add_user_hook NAME UID GID HOME SHELL GECOS: a hook that writes the account into the root
# file system directly (useradd may not be there yet); skipped when it exists. /etc/shadow,
# when it does not exist yet, is made later from /etc/passwd by the passwd package.
add_user_hook() {
  local name="$1" uid="$2" gid="$3" home="$4" shell="$5" gecos="$6"
  printf '%s' "grep -q '^${name}:' \"\$1/etc/group\" || echo '${name}:x:${gid}:' >> \"\$1/etc/group\"; "
  printf '%s' "grep -q '^${name}:' \"\$1/etc/passwd\" || echo '${name}:x:${uid}:${gid}:${gecos}:${home}:${shell}' >> \"\$1/etc/passwd\"; "
  printf '%s' "if [ -e \"\$1/etc/shadow\" ] && ! grep -q '^${name}:' \"\$1/etc/shadow\"; then echo '${name}:*:20000:0:99999:7:::' >> \"\$1/etc/shadow\"; fi; "
  printf '%s' "mkdir -p \"\$1${home}\" && chown ${uid}:${gid} \"\$1${home}\""
}

# mmdebstrap_rootfs OUT.tar INCLUDE HOOK...: a minbase root file system as a tarball.
mmdebstrap_rootfs() {
  local out="$1" include="$2"
  shift 2
  local args=(--variant=minbase --format=tar "${DPKG_SLIM_OPTS[@]}" --aptopt='Acquire::Retries "3"')
  [[ -n "${include}" ]] && args+=(--include="${include}")
  args+=("$@")
  # shellcheck disable=SC2016  # $1 is expanded by mmdebstrap's hook shell: the root directory.
  args+=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log')
  rm -f "${out}.tmp"
  local src=()
  mapfile -t src < <(sources)
  mmdebstrap "${args[@]}" "${DEBIAN_SUITE}" "${out}.tmp" "${src[@]}" >&2 ||
    die "mmdebstrap ${DEBIAN_SUITE} failed (are Debian's mirrors reachable? is ${DEBIAN_SUITE} known to this host's keyring?)"
  mv "${out}.tmp" "${out}"
}

# import_rootfs TAR IMAGE KEY CHANGE...: docker import with the content key as a label.
import_rootfs() {
  local tar="$1" image="$2" key="$3"
  shift 3
  local changes=(--change "LABEL ${CONTENT_LABEL}=${key}")
  local c old old_key
  for c in "$@"; do changes+=(--change "${c}"); done
  old="$(image_id "${image}")"
  old_key="$(image_key "${image}")"
  docker import "${changes[@]}" "${tar}" "${image}" >/dev/null
  remove_if_dangling "${old}"
  # Build-cache images made FROM the replaced base (e.g. the Backstage install stage) inherit
  # its key label; they can no longer be used, and only ours carry that label.
  if [[ -n "${old_key}" && "${old_key}" != "${key}" ]]; then
    docker image prune --force --filter "label=${CONTENT_LABEL}=${old_key}" >/dev/null || true
  fi
}

# The recipe of each image: the mmdebstrap packages and hooks, and the `docker import` changes.
# The content key is a hash of the recipe (plus the functions that run it), so editing
# anything else in this script does not rebuild the images. Hooks refer to the cached Node and
# Yarn through environment variables, so the key does not depend on where the cache is.
INCLUDE=""
HOOKS=()
CHANGES=()

node_recipe() {
  INCLUDE=""
  # As in the official image: node in /usr/local/bin, Yarn 1 in /opt/yarn-vX with links in
  # /usr/local/bin, user and group node with id 1000.
  # shellcheck disable=SC2016  # ${BGO_NODE_HOME} and $1 are expanded by the hook's shell.
  HOOKS=(
    --customize-hook="$(add_user_hook node 1000 1000 /home/node /bin/bash '')"
    --customize-hook='install -m 0755 "${BGO_NODE_HOME}/bin/node" "$1/usr/local/bin/node"'
    --customize-hook="cp -a \"\${BGO_YARN_HOME}\" \"\$1/opt/yarn-v${YARN_CLASSIC_VERSION}\" && ln -s /opt/yarn-v${YARN_CLASSIC_VERSION}/bin/yarn \"\$1/usr/local/bin/yarn\" && ln -s /opt/yarn-v${YARN_CLASSIC_VERSION}/bin/yarnpkg \"\$1/usr/local/bin/yarnpkg\""
  )
  CHANGES=(
    "ENV NODE_VERSION=${NODE_VERSION}" "ENV YARN_VERSION=${YARN_CLASSIC_VERSION}"
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    'CMD ["node"]'
    "LABEL org.opencontainers.image.description=\"Debian ${DEBIAN_SUITE} with the official Node ${NODE_VERSION} binary, built locally by backstage-gitops\""
  )
}

postgres_recipe() {
  # The postgres account exists (uid/gid 999, as in the official image) before the packages
  # are installed, so postgresql-common keeps it. The cluster that postgresql-common creates
  # on install is removed: the entry point initialises PGDATA on first start.
  INCLUDE="postgresql-${POSTGRES_MAJOR},ca-certificates,tzdata"
  HOOKS=(
    --essential-hook="$(add_user_hook postgres 999 999 /var/lib/postgresql /bin/bash 'PostgreSQL administrator')"
    --customize-hook="rm -rf \"\$1/etc/postgresql/${POSTGRES_MAJOR}\" \"\$1/var/lib/postgresql/${POSTGRES_MAJOR}\""
  )
  CHANGES=(
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/${POSTGRES_MAJOR}/bin"
    "ENV PG_MAJOR=${POSTGRES_MAJOR}"
  )
}

recipe_key() {
  hash_of "$(declare -f mmdebstrap_rootfs sources)" "${DPKG_SLIM_OPTS[*]}" "${DEBIAN_SUITE}" \
    "${DEBIAN_MIRROR}" "${INCLUDE}" "${HOOKS[@]}" "${CHANGES[@]}"
}

# build_from_recipe IMAGE NAME: make (or reuse) the root file system and import it as IMAGE.
build_from_recipe() {
  local image="$1" name="$2" key tar
  key="$(recipe_key)"
  if [[ ${FORCE} -eq 0 ]] && image_is_current "${image}" "${key}"; then
    log "${image} is current (key ${key})"
    return 0
  fi
  step "${name} ${image} (key ${key})"
  tar="${CACHE_DIR}/rootfs/${image//[\/:]/_}-${key}.tar"
  mkdir -p "${CACHE_DIR}/rootfs"
  if [[ ${FORCE} -eq 1 || ! -s "${tar}" ]]; then
    mmdebstrap_rootfs "${tar}" "${INCLUDE}" "${HOOKS[@]}"
  else
    log "    reusing the root file system ${tar}"
  fi
  import_rootfs "${tar}" "${image}" "${key}" "${CHANGES[@]}"
  step_done
}

build_node_base() {
  local image
  image="$(node_image)"
  if [[ ${PULL} -eq 1 ]]; then
    step "pull ${image}"
    if docker pull "${image}" >&2; then
      step_done
      printf '%s\n' "${image}"
      return 0
    fi
    log "    pulling ${image} failed; building it instead"
  fi
  node_recipe
  BGO_NODE_HOME="$(node_home "${NODE_VERSION}")"
  BGO_YARN_HOME="$(yarn_classic_home "${YARN_CLASSIC_VERSION}")"
  export BGO_NODE_HOME BGO_YARN_HOME
  build_from_recipe "${image}" "node base image (Debian ${DEBIAN_SUITE} + Node ${NODE_VERSION})"
  [[ "$(docker run --rm --network none "${image}" node --version)" == "v${NODE_VERSION}" ]] ||
    die "${image}: node ${NODE_VERSION} does not run in the image"
  printf '%s\n' "${image}"
}

build_postgres_base() {
  local image
  image="$(postgres_base_image)"
  postgres_recipe
  build_from_recipe "${image}" "PostgreSQL base image (Debian ${DEBIAN_SUITE} + postgresql-${POSTGRES_MAJOR})"
  docker run --rm --network none "${image}" "/usr/lib/postgresql/${POSTGRES_MAJOR}/bin/postgres" --version >/dev/null ||
    die "${image}: postgres does not run in the image"
  [[ "$(docker run --rm --network none "${image}" id -u postgres)" == 999 ]] ||
    die "${image}: user postgres is not uid 999"
  printf '%s\n' "${image}"
}

main() {
  parse_args "$@"
  require_docker
  require_cmd mmdebstrap
  case "${TARGET}" in
    node) build_node_base ;;
    postgres) build_postgres_base ;;
    all) build_node_base; build_postgres_base ;;
  esac
  total_time
}

main "$@"
