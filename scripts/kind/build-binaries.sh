#!/usr/bin/env bash
# Build, from the Go module proxy, the pinned binaries a kind cluster needs here.
#
# Output: ${CACHE}/bin/<component>-<version>/ with the binaries and a .done marker; a component
# whose marker exists is not rebuilt. Go's own build cache (`go env GOCACHE`) makes a rebuild
# after a version bump cheaper; every build uses -trimpath so that cache is shared with other
# builds of the same modules.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "${TOOLCHAIN_DIR}/versions.env"

BIN_CACHE="${CACHE_ROOT}/bin"
SRC_CACHE="${CACHE_ROOT}/src"
# No symbol tables or DWARF, as Kubernetes' release builds: the binaries go into images, and
# these flags only change linking, so Go's build cache is still shared with unstripped builds.
STRIP="-s -w"
COMPONENTS=(kind kubernetes crictl etcd coredns local-path-provisioner sealed-secrets kube-router traefik)

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--print-dir COMPONENT] [COMPONENT...]

Builds the pinned toolchain binaries into ${BIN_CACHE}/<component>-<version>/.
Components (default: all, in this order): ${COMPONENTS[*]}
  kubernetes  kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler
              kube-proxy ${KUBERNETES_VERSION}, through a wrapper module
  etcd, coredns  at the versions the built kubeadm asks for (kubeadm config images list)
  traefik     the Ingress controller of the production end-to-end tests
--print-dir COMPONENT  print the cache folder of COMPONENT (building nothing)
USAGE
}

# kubeadm_image_tag NAME: the tag of registry.k8s.io/NAME that the built kubeadm uses.
kubeadm_image_tag() {
  local kubeadm
  kubeadm="$(component_dir kubernetes)/kubeadm"
  [[ -x "${kubeadm}" ]] || die "kubeadm is not built yet (${kubeadm}); build 'kubernetes' first"
  "${kubeadm}" config images list --kubernetes-version "${KUBERNETES_VERSION}" 2>/dev/null \
    | awk -F: -v n="registry.k8s.io/$1" '$1 == n {print $2}'
}

component_version() {
  case "$1" in
    kind) echo "${KIND_VERSION}" ;;
    kubernetes) echo "${KUBERNETES_VERSION}" ;;
    crictl) echo "${CRICTL_VERSION}" ;;
    # etcd image tags look like 3.6.5-0: the part before '-' is the etcd release.
    etcd) local t; t="$(kubeadm_image_tag etcd)"; echo "v${t%%-*}" ;;
    coredns) kubeadm_image_tag coredns/coredns ;;
    local-path-provisioner) echo "${LOCAL_PATH_PROVISIONER_VERSION}" ;;
    sealed-secrets) echo "${SEALED_SECRETS_VERSION}" ;;
    kube-router) echo "${KUBE_ROUTER_VERSION}" ;;
    traefik) echo "${TRAEFIK_VERSION}" ;;
    *) die "unknown component '$1' (known: ${COMPONENTS[*]})" ;;
  esac
}

component_dir() { echo "${BIN_CACHE}/$1-$(component_version "$1")"; }

# go_install OUT MODULE_PACKAGE@VERSION...: `go install` into OUT (modules without replace directives).
go_install() {
  local out="$1"; shift
  mkdir -p "${out}"
  GOBIN="${out}" GOFLAGS="-trimpath -buildvcs=false" go install -ldflags="${STRIP}" "$@"
}

# wrapper_module DIR MODULE: create (once) a Go module in DIR named MODULE.
wrapper_module() {
  mkdir -p "$1"
  [[ -f "$1/go.mod" ]] || (cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

build_kind() { go_install "$1" "sigs.k8s.io/kind@${KIND_VERSION}"; }

build_crictl() { go_install "$1" "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"; }

build_local-path-provisioner() {
  go_install "$1" "github.com/rancher/local-path-provisioner@${LOCAL_PATH_PROVISIONER_VERSION}"
}

# From v0.40 sealed-secrets' go.mod names the module github.com/bitnami/sealed-secrets, but the
# proxy serves it only under its old path github.com/bitnami-labs/sealed-secrets: a wrapper module
# requires the new path and replaces it with the old one.
build_sealed-secrets() {
  local out="$1" mod="${SRC_CACHE}/sealed-secrets-${SEALED_SECRETS_VERSION}" m=github.com/bitnami/sealed-secrets
  wrapper_module "${mod}" sealedsecretswrapper
  cat >"${mod}/tools.go" <<'GO'
//go:build tools

// Package sealedsecretswrapper only pins the sealed-secrets commands build-binaries.sh builds.
package sealedsecretswrapper

import (
	_ "github.com/bitnami/sealed-secrets/cmd/controller"
	_ "github.com/bitnami/sealed-secrets/cmd/kubeseal"
)
GO
  (cd "${mod}" && go mod edit -require "${m}@${SEALED_SECRETS_VERSION}" \
    -replace "${m}=github.com/bitnami-labs/sealed-secrets@${SEALED_SECRETS_VERSION}" && go mod tidy)
  local cmd
  for cmd in controller kubeseal; do
    (cd "${mod}" && go build -trimpath -buildvcs=false \
      -ldflags "${STRIP} -X main.VERSION=${SEALED_SECRETS_VERSION}" -o "${out}/${cmd}" "${m}/cmd/${cmd}")
  done
}

build_kube-router() {
  go_install "$1" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}"
}

# Traefik's go.mod replaces modules, one of them with a folder inside its own module: a wrapper
# module repeats each replace, pointing folder replaces into the module cache (read only).
build_traefik() {
  local out="$1" mod="${SRC_CACHE}/traefik-${TRAEFIK_VERSION}" m=github.com/traefik/traefik/v3 dir
  wrapper_module "${mod}" traefikwrapper
  dir="$(cd / && go mod download -json "${m}@${TRAEFIK_VERSION}" | jq -r .Dir)"
  cat >"${mod}/tools.go" <<'GO'
//go:build tools

// Package traefikwrapper only pins the Traefik command that build-binaries.sh builds.
package traefikwrapper

import _ "github.com/traefik/traefik/v3/cmd/traefik"
GO
  (cd "${mod}" && go mod edit -require "${m}@${TRAEFIK_VERSION}")
  local old new version
  while IFS=$'\t' read -r old new version; do
    if [[ -z "${version}" ]]; then
      new="${dir}/${new#./}"
      (cd "${mod}" && go mod edit -replace "${old}=${new}")
    else
      (cd "${mod}" && go mod edit -replace "${old}=${new}@${version}")
    fi
  done < <(go mod edit -json "${dir}/go.mod" | jq -r '.Replace[] | [.Old.Path, .New.Path, (.New.Version // "")] | @tsv')
  (cd "${mod}" && go mod tidy && go build -trimpath -buildvcs=false \
    -ldflags "${STRIP} -X ${m}/pkg/version.Version=${TRAEFIK_VERSION}" -o "${out}/traefik" "${m}/cmd/traefik")
}

build_coredns() { go_install "$1" "github.com/coredns/coredns@$(component_version coredns)"; }

# etcd's main module has replace directives (go install refuses it): a wrapper module whose
# main calls etcdmain, like etcd's own main.go.
build_etcd() {
  local out="$1" version mod
  version="$(component_version etcd)"
  mod="${SRC_CACHE}/etcd-${version}"
  wrapper_module "${mod}" etcdwrapper
  cat >"${mod}/main.go" <<'GO'
// Command etcd: the etcd server, built from go.etcd.io/etcd/server/v3 (see build-binaries.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "${mod}" && go get "go.etcd.io/etcd/server/v3@${version}" && go mod tidy \
    && go build -trimpath -buildvcs=false -ldflags="${STRIP}" -o "${out}/etcd" .)
}

# k8s.io/kubernetes refers to its staging modules (k8s.io/api, ...) through replace directives
# to ./staging, so it cannot be `go install`ed. A wrapper module requires it and replaces each
# k8s.io/* staging module with its published v0.MINOR.PATCH release. The version ldflags are
# what Kubernetes' own build sets: without them kubeadm reads its version as v0.0.0.
build_kubernetes() {
  local out="$1" mod staging mods ldflags cmd
  mod="${SRC_CACHE}/kubernetes-${KUBERNETES_VERSION}"
  staging="v0.${KUBERNETES_VERSION#v1.}"
  wrapper_module "${mod}" k8swrapper
  if ! grep -q "k8s.io/kubernetes ${KUBERNETES_VERSION}" "${mod}/go.mod"; then
    (cd "${mod}" && go mod edit -require "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
      && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null)
    local kdir
    kdir="$(cd "${mod}" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | jq -r .Dir)"
    # Every module k8s.io/kubernetes itself replaces with ./staging/... gets its release.
    mods="$(awk '/=> .\/staging\// {print $1}' "${kdir}/go.mod")"
    [[ -n "${mods}" ]] || die "no staging replace directives found in ${kdir}/go.mod"
    local m
    for m in ${mods}; do
      (cd "${mod}" && go mod edit -replace "${m}=${m}@${staging}")
    done
    cat >"${mod}/tools.go" <<'GO'
//go:build tools

// Package k8swrapper only pins the Kubernetes commands that build-binaries.sh builds.
package k8swrapper

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    (cd "${mod}" && go mod tidy)
  fi
  local v="${KUBERNETES_VERSION#v}" pkg
  ldflags="${STRIP}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=${v%%.*}"
    ldflags+=" -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"${v}") -X ${pkg}.gitTreeState=clean"
    ldflags+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "${out}"
  # One command at a time: on two cores, parallel links only fight for memory and CPU.
  for cmd in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    [[ -x "${out}/${cmd}" ]] && continue
    run_timed "go build ${cmd} ${KUBERNETES_VERSION}" \
      bash -c "cd '${mod}' && go build -trimpath -buildvcs=false -ldflags '${ldflags}' -o '${out}/${cmd}.tmp' k8s.io/kubernetes/cmd/${cmd} && mv '${out}/${cmd}.tmp' '${out}/${cmd}'"
  done
}

build_component() {
  local c="$1" dir
  dir="$(component_dir "${c}")"
  if [[ -f "${dir}/.done" ]]; then
    log "cached: ${c} $(basename "${dir}")"
    return 0
  fi
  command -v jq >/dev/null || apt_install jq
  command -v go >/dev/null || die "go is not installed (Debian: apt-get install golang; or https://go.dev/dl via the module proxy's toolchain)"
  mkdir -p "${dir}"
  run_timed "build ${c} $(basename "${dir}")" "build_${c}" "${dir}"
  touch "${dir}/.done"
}

main() {
  local selected=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --print-dir) component_dir "${2:?--print-dir needs a component}"; exit 0 ;;
      -*) usage >&2; exit 2 ;;
      *) selected+=("$1") ;;
    esac
    shift
  done
  [[ ${#selected[@]} -eq 0 ]] && selected=("${COMPONENTS[@]}")
  local c
  for c in "${selected[@]}"; do build_component "${c}"; done
}

main "$@"
