#!/usr/bin/env bash
# The test command of the README and of CI: installs and starts what the tests need, then runs
# every tier. A tier that cannot run fails and says why; none is skipped.
#   scripts/test.sh                 every tier
#   scripts/test.sh --fast          unit and render only (no Docker, seconds)
#   scripts/test.sh -m render       any pytest arguments are passed through
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

usage() {
  cat <<USAGE
usage: scripts/test.sh [--fast] [pytest arguments]
Installs the pinned tools (scripts/bootstrap.sh); unless --fast, starts Docker
(scripts/docker-up.sh) and builds what the cache lacks of the kind toolchain
(scripts/kind/toolchain.sh build); then runs pytest over tests/.
Tiers (pytest markers): unit (no marker), render, images, kind, e2e.
UPDATE_GOLDENS=1 rewrites the render goldens after a reviewed change.
Artifacts of failed cluster tests (logs, events, describe): artifacts/.
USAGE
}

docker_engine() { "$REPO_ROOT/scripts/docker-up.sh" up; }
kind_toolchain() { "$REPO_ROOT/scripts/kind/toolchain.sh" build; }

main() {
  local fast=0
  case ${1:-} in
    -h|--help) usage; exit 0 ;;
    --fast) fast=1; shift ;;
  esac
  step "bootstrap" "$REPO_ROOT/scripts/bootstrap.sh"
  if [ "$fast" = 1 ]; then
    set -- -m "not images and not kind and not e2e" "$@"
  else
    step "Docker engine" docker_engine
    step "kind toolchain" kind_toolchain
  fi
  cd "$REPO_ROOT"
  log "running pytest $*"
  exec "$TOOLS_DIR/venv/bin/python" -m pytest "$@"
}

main "$@"
