#!/usr/bin/env bash
# Installs the pinned tools the repository needs into .tools/ (idempotent):
#   .tools/bin/kustomize   kustomize v5, built from the Go module proxy (or copied from PATH
#                          when the version there is the pinned one)
#   .tools/venv            the Python package (krm-secrets) with its test extras
#   .tools/checkov         checkov, the second linter, in a venv of its own (its pins clash)
#   .tools/bin/kubectl     a link to the kind toolchain's kubectl v1.34, once that is built
# and, from Debian when missing, age (the reference the plugin is tested against).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

usage() {
  cat <<USAGE
usage: scripts/bootstrap.sh [--no-checkov]
Installs pinned kustomize ($KUSTOMIZE_VERSION), the Python package with test extras and checkov
into $TOOLS_DIR. Safe to re-run: what is already there at the pinned version is kept.
USAGE
}

install_kustomize() {
  local bin=$TOOLS_DIR/bin/kustomize want=${KUSTOMIZE_VERSION#v}
  mkdir -p "$TOOLS_DIR/bin"
  if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "$want"; then
    return 0
  fi
  local onpath
  onpath=$(command -v kustomize || true)
  if [ -n "$onpath" ] && "$onpath" version 2>/dev/null | grep -q "v$want"; then
    log "kustomize $KUSTOMIZE_VERSION found at $onpath"
    cp "$onpath" "$bin"
    return 0
  fi
  need go "install Go 1.24 or newer (https://go.dev/dl) or put kustomize $KUSTOMIZE_VERSION on PATH"
  local gover
  gover=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  printf '%s\n%s\n' 1.24 "$gover" | sort -V -C ||
    die "Go $gover is too old: kustomize $KUSTOMIZE_VERSION and Kubernetes 1.34 need Go 1.24 or newer (https://go.dev/dl)"
  log "building kustomize $KUSTOMIZE_VERSION from the Go module proxy"
  GOBIN=$TOOLS_DIR/bin GOFLAGS=-trimpath go install \
    -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  "$bin" version
}

# kubectl v1.34, the version of the lab's cluster: the one the kind toolchain builds from the
# Go module proxy, linked into .tools/bin once it is built; else the one on PATH.
install_kubectl() {
  local dir
  dir=$("$REPO_ROOT/scripts/kind/build-binaries.sh" --print-dir kubernetes 2>/dev/null || true)
  if [ -n "$dir" ] && [ -x "$dir/kubectl" ]; then
    mkdir -p "$TOOLS_DIR/bin"
    ln -sfn "$dir/kubectl" "$TOOLS_DIR/bin/kubectl"
  elif command -v kubectl >/dev/null; then
    log "kubectl from PATH: $(command -v kubectl) (scripts/kind/toolchain.sh build makes the pinned one)"
  else
    log "no kubectl yet: scripts/kind/toolchain.sh build (or make lab) builds the pinned one"
  fi
}

# age and age-keygen: the reference implementation the plugin's age is tested against (and a
# user's way to read a lab Secret by hand). From Debian when root there, else a clear message.
install_age() {
  command -v age >/dev/null && command -v age-keygen >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install age"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age >/dev/null; }
  fi
  need age "install age (Debian: apt-get install age; elsewhere https://age-encryption.org)"
}

install_python() {
  local venv=$TOOLS_DIR/venv stamp
  need python3 "install Python 3.11 or newer"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is required"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  stamp=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" = "$stamp" ] && "$venv/bin/python" -c 'import krm_secrets' 2>/dev/null; then
    return 0
  fi
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -e "$REPO_ROOT[test]"
  echo "$stamp" > "$venv/.stamp"
}

# kustomize starts krm-secrets on every build: with bytecode compiled once (also where
# PYTHONDONTWRITEBYTECODE is set) each start saves the ~70 ms of compiling the plugin.
compile_plugin() {
  "$TOOLS_DIR/venv/bin/python" -m compileall -q "$REPO_ROOT/plugin"
}

install_checkov() {
  local venv=$TOOLS_DIR/checkov version=3.3.30
  if [ -x "$venv/bin/checkov" ] && [ "$(cat "$venv/.version" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "checkov==$version"
  echo "$version" > "$venv/.version"
}

main() {
  local checkov=1
  while [ $# -gt 0 ]; do
    case $1 in
      --no-checkov) checkov=0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  step "kustomize $KUSTOMIZE_VERSION" install_kustomize
  step "kubectl" install_kubectl
  step "age" install_age
  step "python package and test extras" install_python
  step "compile the plugin's bytecode" compile_plugin
  if [ "$checkov" = 1 ]; then step "checkov" install_checkov; fi
  log "tools ready in $TOOLS_DIR"
}

main "$@"
