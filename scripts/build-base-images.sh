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
                 of building it (the PostgreSQL base is always built; see build-postgres-image.sh)
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
  local c old
  for c in "$@"; do changes+=(--change "${c}"); done
  old="$(image_id "${image}")"
  docker import "${changes[@]}" "${tar}" "${image}" >/dev/null
  remove_if_dangling "${old}"
}

build_node_base() {
  local image key tar node yarn
  image="$(node_image)"
  key="$(hash_of "$(declare -f build_node_base mmdebstrap_rootfs add_user_hook)" "${DPKG_SLIM_OPTS[*]}" \
    "${DEBIAN_SUITE}" "${NODE_VERSION}" "${YARN_CLASSIC_VERSION}")"
  if [[ ${PULL} -eq 1 ]]; then
    step "pull ${image}"
    docker pull "${image}" >&2 || die "docker pull ${image} failed; build it instead (omit --pull)"
    step_done
    printf '%s\n' "${image}"
    return 0
  fi
  if [[ ${FORCE} -eq 0 ]] && image_is_current "${image}" "${key}"; then
    log "${image} is current (key ${key})"
    printf '%s\n' "${image}"
    return 0
  fi
  step "node base image ${image} (Debian ${DEBIAN_SUITE} + Node ${NODE_VERSION}, key ${key})"
  node="$(node_home "${NODE_VERSION}")"
  yarn="$(yarn_classic_home "${YARN_CLASSIC_VERSION}")"
  tar="${CACHE_DIR}/rootfs/node-${NODE_VERSION}-${DEBIAN_SUITE}-${key}.tar"
  mkdir -p "${CACHE_DIR}/rootfs"
  if [[ ${FORCE} -eq 1 || ! -s "${tar}" ]]; then
    # As in the official image: node in /usr/local/bin, Yarn 1 in /opt/yarn-vX with links in
    # /usr/local/bin, user and group node with id 1000.
    mmdebstrap_rootfs "${tar}" "" \
      --customize-hook="$(add_user_hook node 1000 1000 /home/node /bin/bash '')" \
      --customize-hook="install -m 0755 '${node}/bin/node' \"\$1/usr/local/bin/node\"" \
      --customize-hook="cp -a '${yarn}' \"\$1/opt/yarn-v${YARN_CLASSIC_VERSION}\" && ln -s /opt/yarn-v${YARN_CLASSIC_VERSION}/bin/yarn \"\$1/usr/local/bin/yarn\" && ln -s /opt/yarn-v${YARN_CLASSIC_VERSION}/bin/yarnpkg \"\$1/usr/local/bin/yarnpkg\""
  fi
  import_rootfs "${tar}" "${image}" "${key}" \
    "ENV NODE_VERSION=${NODE_VERSION}" "ENV YARN_VERSION=${YARN_CLASSIC_VERSION}" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["node"]' \
    "LABEL org.opencontainers.image.description=\"Debian ${DEBIAN_SUITE} with the official Node ${NODE_VERSION} binary, built locally by backstage-gitops\""
  docker run --rm --network none "${image}" node -e 'process.exit(0)' ||
    die "${image}: node does not run in the new image"
  step_done
  printf '%s\n' "${image}"
}

build_postgres_base() {
  local image key tar
  image="$(postgres_base_image)"
  key="$(hash_of "$(declare -f build_postgres_base mmdebstrap_rootfs add_user_hook)" "${DPKG_SLIM_OPTS[*]}" \
    "${DEBIAN_SUITE}" "${POSTGRES_MAJOR}")"
  if [[ ${FORCE} -eq 0 ]] && image_is_current "${image}" "${key}"; then
    log "${image} is current (key ${key})"
    printf '%s\n' "${image}"
    return 0
  fi
  step "PostgreSQL base image ${image} (Debian ${DEBIAN_SUITE} + postgresql-${POSTGRES_MAJOR}, key ${key})"
  tar="${CACHE_DIR}/rootfs/postgres-${POSTGRES_MAJOR}-${DEBIAN_SUITE}-${key}.tar"
  mkdir -p "${CACHE_DIR}/rootfs"
  if [[ ${FORCE} -eq 1 || ! -s "${tar}" ]]; then
    # The postgres account exists (uid/gid 999, as in the official image) before the packages
    # are installed, so postgresql-common keeps it. The cluster that postgresql-common creates
    # on install is removed: the entry point initialises PGDATA on first start.
    mmdebstrap_rootfs "${tar}" "postgresql-${POSTGRES_MAJOR},ca-certificates,tzdata" \
      --essential-hook="$(add_user_hook postgres 999 999 /var/lib/postgresql /bin/bash 'PostgreSQL administrator')" \
      --customize-hook="rm -rf \"\$1/etc/postgresql/${POSTGRES_MAJOR}\" \"\$1/var/lib/postgresql/${POSTGRES_MAJOR}\""
  fi
  import_rootfs "${tar}" "${image}" "${key}" \
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/${POSTGRES_MAJOR}/bin" \
    "ENV PG_MAJOR=${POSTGRES_MAJOR}"
  docker run --rm --network none "${image}" "/usr/lib/postgresql/${POSTGRES_MAJOR}/bin/postgres" --version >&2 ||
    die "${image}: postgres does not run in the new image"
  [[ "$(docker run --rm --network none "${image}" id -u postgres)" == 999 ]] ||
    die "${image}: user postgres is not uid 999"
  step_done
  printf '%s\n' "${image}"
}

main() {
  parse_args "$@"
  require_docker
  [[ ${PULL} -eq 1 && "${TARGET}" == node ]] || require_cmd mmdebstrap
  case "${TARGET}" in
    node) build_node_base ;;
    postgres) build_postgres_base ;;
    all) build_node_base; build_postgres_base ;;
  esac
  total_time
}

main "$@"
