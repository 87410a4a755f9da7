#!/usr/bin/env bash
# Builds a Traefik ingress controller image without a container registry: the traefik binary
# from the Go module proxy (pinned), in an image of its own made with `docker import`. Traefik
# serves Kubernetes Ingress and Gateway API, and is what the production end-to-end tests put in
# front of Backstage. With --pull, the official image is pulled and tagged instead.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

TRAEFIK_VERSION=${TRAEFIK_VERSION:-v3.6.12}
IMAGE=${TRAEFIK_IMAGE:-backstage-gitops/traefik:$TRAEFIK_VERSION}
WORK=$CACHE_DIR/traefik/$TRAEFIK_VERSION

usage() {
  cat <<USAGE
usage: scripts/build-traefik-image.sh [--pull] [--print-image]
Builds $IMAGE (Traefik $TRAEFIK_VERSION from the Go module proxy). Cached by version in
$WORK: a second run costs seconds. Prints the image name on stdout.
  --pull          docker pull traefik:$TRAEFIK_VERSION and tag it $IMAGE instead
  --print-image   print the image name and exit
USAGE
}

# A module that requires Traefik and repeats the replace and exclude directives of Traefik's
# own go.mod (Go ignores them in a dependency), so that `go build` resolves the same versions.
write_module() {
  mkdir -p "$WORK/src"
  local mod
  mod=$(curl -fsS "${GOPROXY_URL:-https://proxy.golang.org}/github.com/traefik/traefik/v3/@v/$TRAEFIK_VERSION.mod") \
    || die "cannot read Traefik $TRAEFIK_VERSION's go.mod from the Go module proxy"
  if grep -q '=> \./' <<<"$mod"; then
    die "Traefik $TRAEFIK_VERSION replaces a module by a folder of its repository; pick another TRAEFIK_VERSION"
  fi
  {
    echo "module backstagegitops/traefikbuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' <<<"$mod"
    echo
    echo "require github.com/traefik/traefik/v3 $TRAEFIK_VERSION"
    echo
    awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0}' <<<"$mod"
    grep '^exclude ' <<<"$mod" || true
  } >"$WORK/src/go.mod"
  cat >"$WORK/src/tools.go" <<'GO'
//go:build tools

package traefikbuild

import _ "github.com/traefik/traefik/v3/cmd/traefik"
GO
}

build_binary() {
  [ -x "$WORK/traefik" ] && return 0
  need go "install Go to build Traefik, or use --pull"
  write_module
  (
    cd "$WORK/src"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod tidy
    go build -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$WORK/traefik.tmp" github.com/traefik/traefik/v3/cmd/traefik
  )
  mv "$WORK/traefik.tmp" "$WORK/traefik"
}

build_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  local root
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$root/etc/ssl/certs" "$root/tmp"
  cp "$WORK/traefik" "$root/traefik"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'nonroot:x:65532:65532::/:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'nonroot:x:65532:\n' >"$root/etc/group"
  tar -C "$root" -c . | docker import \
    --change 'ENTRYPOINT ["/traefik"]' --change 'USER 65532:65532' \
    --change 'EXPOSE 8000 8443' - "$IMAGE" >/dev/null
}

pull_image() {
  docker pull "traefik:$TRAEFIK_VERSION"
  docker tag "traefik:$TRAEFIK_VERSION" "$IMAGE"
}

main() {
  local pull=0
  while [ $# -gt 0 ]; do
    case $1 in
      --pull) pull=1 ;;
      --print-image) echo "$IMAGE"; exit 0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  docker info >/dev/null 2>&1 || die "Docker does not answer: run scripts/docker-up.sh up"
  if [ "$pull" = 1 ]; then
    step "pull traefik:$TRAEFIK_VERSION" pull_image
  else
    step "traefik $TRAEFIK_VERSION binary (Go module proxy)" build_binary
    step "image $IMAGE" build_image
  fi
  echo "$IMAGE"
}

main "$@"
