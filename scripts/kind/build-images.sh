#!/usr/bin/env bash
# Build, without any container registry, the images a kind cluster needs here:
#   rootfs   Debian root filesystems made by mmdebstrap (node and runtime), kept as tarballs
#   base     the kind base image: the node rootfs + kind's base files (from kind's Go module)
#   images   every image kubeadm and kind refer to, named as they refer to them, built on a
#            small Debian runtime image from the binaries of build-binaries.sh
#   node     the node image: base + Kubernetes binaries + /kind/version + /kind/manifests +
#            every image above imported into containerd's k8s.io namespace, then `docker commit`
#   ingress  the Traefik image for the production end-to-end tests (not preloaded)
# Image names and tags are read from the built kubeadm (`kubeadm config images list`), from the
# containerd config kind ships (sandbox image) and from kind's source (storage images).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=versions.env
source "${TOOLCHAIN_DIR}/versions.env"

BUILD_BINARIES="${TOOLCHAIN_DIR}/build-binaries.sh"
ROOTFS_CACHE="${CACHE_ROOT}/rootfs"
IMAGE_CACHE="${CACHE_ROOT}/images"
STEPS=(rootfs base images node ingress)
# Pod network of the static bridge CNI config; equal to podSubnet in kind-config.yaml.
POD_SUBNET="$(sed -n 's/^ *podSubnet: *//p' "${TOOLCHAIN_DIR}/kind-config.yaml")"
# kube-router's firewall lets traffic to Service IPs through to kube-proxy: it must know them.
SERVICE_SUBNET="$(sed -n 's/^ *serviceSubnet: *//p' "${TOOLCHAIN_DIR}/kind-config.yaml")"

# Packages of the node rootfs: kind's base image list (images/base/Dockerfile) without the NFS,
# iSCSI and fuse-overlayfs extras, plus Debian's containerd, runc and CNI plugins, which kind
# builds from source instead.
NODE_PACKAGES=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod
  libseccomp2 pigz bash ca-certificates curl jq procps containerd runc containernetworking-plugins)
# Packages of the runtime image under every component image: what kube-proxy needs (iptables,
# nftables, conntrack, ipset), a pause process (catatonit) and a shell with coreutils for
# local-path-provisioner's helper pods.
RUNTIME_PACKAGES=(iptables nftables conntrack ipset catatonit ca-certificates)

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--print-node-image] [STEP...]

Steps (default: all, in order): ${STEPS[*]}
Rootfs tarballs and a saved copy of the node image live in ${CACHE_ROOT};
images are tagged in the local Docker engine and rebuilt only when missing.
--print-node-image  print the node image name for these versions and exit
--print-image-names print the names of the base, runtime and node images and exit
USAGE
}

bin_dir() { "${BUILD_BINARIES}" --print-dir "$1"; }

kind_source_dir() {
  (cd / && go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" | jq -r .Dir)
}

# Short hashes that key the cache: the rootfs tarballs change with the hooks, the package lists
# and the versions; the images also with this script.
rootfs_hash() {
  { cat "${TOOLCHAIN_DIR}/rootfs-hooks.sh"
    echo "${DEBIAN_SUITE} ${KIND_VERSION} ${POD_SUBNET} / ${NODE_PACKAGES[*]} / ${RUNTIME_PACKAGES[*]}"
  } | sha256sum | cut -c1-12
}
recipe_hash() {
  cat "${BASH_SOURCE[0]}" "${TOOLCHAIN_DIR}/rootfs-hooks.sh" "${TOOLCHAIN_DIR}/versions.env" \
    | sha256sum | cut -c1-12
}

NODE_ROOTFS() { echo "${ROOTFS_CACHE}/kind-node-${DEBIAN_SUITE}-$(rootfs_hash).tar"; }
RUNTIME_ROOTFS() { echo "${ROOTFS_CACHE}/runtime-${DEBIAN_SUITE}-$(rootfs_hash).tar"; }
BASE_IMAGE() { echo "backstage-gitops/kind-base:${DEBIAN_SUITE}-${KIND_VERSION}-$(rootfs_hash)"; }
RUNTIME_IMAGE() { echo "backstage-gitops/runtime:${DEBIAN_SUITE}-$(rootfs_hash)"; }
NODE_IMAGE() { echo "backstage-gitops/kind-node:${KUBERNETES_VERSION}-$(recipe_hash)"; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# --- rootfs ---------------------------------------------------------------------------------

# mmdebstrap_to TARBALL HOOK_ARGS PACKAGE...: a minbase Debian rootfs with PACKAGE..., customised
# by `rootfs-hooks.sh HOOK_ARGS` (ROOTFS is inserted after the hook name), written atomically.
mmdebstrap_to() {
  local out="$1" hook="$2"; shift 2
  [[ -s "${out}" ]] && { log "cached: $(basename "${out}")"; return 0; }
  apt_install mmdebstrap jq
  mkdir -p "$(dirname "${out}")"
  local include name args
  include="$(IFS=,; echo "$*")"
  name="${hook%% *}"
  args="${hook#"${name}"}"
  as_root rm -f "${out}.tmp"
  as_root mmdebstrap --variant=minbase --format=tar --include="${include}" \
    --aptopt='Apt::Install-Recommends "false"' \
    --customize-hook="'${TOOLCHAIN_DIR}/rootfs-hooks.sh' ${name} \"\$1\"${args}" \
    "${DEBIAN_SUITE}" "${out}.tmp" "${DEBIAN_MIRROR}" >&2
  as_root chown "$(id -u):$(id -g)" "${out}.tmp"
  [[ -s "${out}.tmp" ]] || die "mmdebstrap wrote an empty ${out}.tmp"
  mv "${out}.tmp" "${out}"
}

step_rootfs() {
  KIND_SRC="$(kind_source_dir)"
  run_timed "rootfs node (${DEBIAN_SUITE})" mmdebstrap_to "$(NODE_ROOTFS)" \
    "node '${KIND_SRC}' '${POD_SUBNET}'" "${NODE_PACKAGES[@]}"
  run_timed "rootfs runtime (${DEBIAN_SUITE})" mmdebstrap_to "$(RUNTIME_ROOTFS)" runtime "${RUNTIME_PACKAGES[@]}"
}

# --- base -----------------------------------------------------------------------------------

step_base() {
  local image
  image="$(BASE_IMAGE)"
  if image_exists "${image}"; then log "cached: ${image}"; return 0; fi
  [[ -s "$(NODE_ROOTFS)" ]] || step_rootfs
  run_timed "docker import ${image}-rootfs" docker import "$(NODE_ROOTFS)" "${image}-rootfs" >/dev/null
  # `docker import` cannot set STOPSIGNAL; a one-line build adds the image config kind's has.
  local ctx
  ctx="$(mktemp -d)"
  cat >"${ctx}/Dockerfile" <<DOCKERFILE
FROM ${image}-rootfs
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
DOCKERFILE
  run_timed "docker build ${image}" docker build --quiet -t "${image}" "${ctx}" >/dev/null
  rm -rf "${ctx}"
  docker rmi "${image}-rootfs" >/dev/null
}

# --- images ---------------------------------------------------------------------------------

# kind_constant FILE NAME: the value of the Go string constant NAME in kind's nodeimage package.
kind_constant() {
  sed -n "s/^const $2 = \"\\(.*\\)\"\$/\\1/p" "${KIND_SRC}/pkg/build/nodeimage/$1"
}

# kind_manifest FILE NAME: the raw-string constant NAME (a manifest) with its image constants
# substituted, as kind writes it into the node image.
kind_manifest() {
  local file="${KIND_SRC}/pkg/build/nodeimage/$1"
  sed -n "/^const $2 = \`/,/^\`/p" "${file}" | sed '1d;$d' \
    | sed "s|\` + storageProvisionerImage + \`|$(kind_constant "$1" storageProvisionerImage)|g; s|\` + storageHelperImage + \`|$(kind_constant "$1" storageHelperImage)|g"
}

# sandbox_image: the pause image named in the containerd config kind ships; kind preloads that
# one instead of kubeadm's pause tag.
sandbox_image() {
  sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "${KIND_SRC}/images/base/files/etc/containerd/config.toml"
}

# image_from_binaries IMAGE ENTRYPOINT_JSON BIN...: IMAGE = runtime image + BIN... in /usr/local/bin.
image_from_binaries() {
  local image="$1" entrypoint="$2"; shift 2
  # Upstream names carry no hash of how we built them: a label records the runtime image used.
  if [[ "$(docker image inspect -f '{{index .Config.Labels "backstage-gitops.runtime"}}' "${image}" 2>/dev/null)" \
    == "$(RUNTIME_IMAGE)" ]]; then
    log "cached: ${image}"
    return 0
  fi
  local ctx b
  ctx="$(mktemp -d)"
  for b in "$@"; do cp "${b}" "${ctx}/"; done
  {
    echo "FROM $(RUNTIME_IMAGE)"
    echo "LABEL backstage-gitops.runtime=$(RUNTIME_IMAGE)"
    for b in "$@"; do echo "COPY $(basename "${b}") /usr/local/bin/"; done
    [[ -n "${entrypoint}" ]] && echo "ENTRYPOINT ${entrypoint}"
  } >"${ctx}/Dockerfile"
  run_timed "docker build ${image}" docker build --quiet --network host -t "${image}" "${ctx}" >/dev/null
  rm -rf "${ctx}"
}

# images_list: every image the node image preloads, one per line (IMAGE<TAB>HOW).
images_list() {
  local k8s etcd coredns kubeadm
  k8s="$(bin_dir kubernetes)"
  etcd="$(bin_dir etcd)"
  coredns="$(bin_dir coredns)"
  kubeadm="${k8s}/kubeadm"
  [[ -x "${kubeadm}" ]] || die "kubeadm missing at ${kubeadm}; run build-binaries.sh first"
  local image name
  while read -r image; do
    name="${image%:*}"
    name="${name##*/}"
    case "${name}" in
      kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy)
        printf '%s\t%s\n' "${image}" "${k8s}/${name}" ;;
      etcd) printf '%s\t%s\n' "${image}" "${etcd}/etcd" ;;
      coredns) printf '%s\t%s\n' "${image}" "${coredns}/coredns" ;;
      pause) ;;  # replaced by the containerd sandbox image, as kind does
      *) die "kubeadm lists an image this script does not know how to build: ${image}" ;;
    esac
  done < <("${kubeadm}" config images list --kubernetes-version "${KUBERNETES_VERSION}")
  printf '%s\t%s\n' "$(sandbox_image)" pause
  printf '%s\t%s\n' "$(kind_constant const_storage.go storageProvisionerImage)" \
    "$(bin_dir local-path-provisioner)/local-path-provisioner"
  printf '%s\t%s\n' "$(kind_constant const_storage.go storageHelperImage)" helper
  printf '%s\t%s\n' "$(sealed_secrets_image)" "$(bin_dir sealed-secrets)/controller"
  printf '%s\t%s\n' "$(kube_router_image)" "$(bin_dir kube-router)/kube-router"
}

kube_router_image() { echo "docker.io/cloudnativelabs/kube-router:${KUBE_ROUTER_VERSION}"; }

# The sealed-secrets controller image, named as upstream publishes it.
sealed_secrets_image() { echo "docker.io/bitnami/sealed-secrets-controller:${SEALED_SECRETS_VERSION}"; }

step_images() {
  KIND_SRC="$(kind_source_dir)"
  local runtime
  runtime="$(RUNTIME_IMAGE)"
  if ! image_exists "${runtime}"; then
    [[ -s "$(RUNTIME_ROOTFS)" ]] || step_rootfs
    run_timed "docker import ${runtime}" docker import "$(RUNTIME_ROOTFS)" "${runtime}" >/dev/null
  fi
  local image how
  while IFS=$'\t' read -r image how; do
    case "${how}" in
      pause) image_from_binaries "${image}" '["/usr/bin/catatonit", "-P"]' ;;
      helper) image_from_binaries "${image}" '' ;;
      */coredns) image_from_binaries "${image}" '["/usr/local/bin/coredns"]' "${how}" ;;
      */controller) image_from_binaries "${image}" '["/usr/local/bin/controller"]' "${how}" ;;
      */kube-router) image_from_binaries "${image}" '["/usr/local/bin/kube-router"]' "${how}" ;;
      *) image_from_binaries "${image}" '' "${how}" ;;
    esac
  done < <(images_list)
}

# --- ingress --------------------------------------------------------------------------------

# The Ingress controller image for the production end-to-end tests, named as Docker Hub's
# official image; tests load it into their cluster with `kind load docker-image`.
traefik_image() { echo "docker.io/library/traefik:${TRAEFIK_VERSION}"; }

step_ingress() {
  image_exists "$(RUNTIME_IMAGE)" || step_images
  image_from_binaries "$(traefik_image)" '["/usr/local/bin/traefik"]' "$(bin_dir traefik)/traefik"
}

# --- node -----------------------------------------------------------------------------------

step_node() {
  local node
  node="$(NODE_IMAGE)"
  if image_exists "${node}"; then log "cached: ${node}"; return 0; fi
  local saved
  saved="${IMAGE_CACHE}/$(echo "${node}" | tr '/:' '__').tar"
  if [[ -s "${saved}" ]]; then
    run_timed "docker load ${saved}" docker load -i "${saved}" >/dev/null
    return 0
  fi
  KIND_SRC="$(kind_source_dir)"
  image_exists "$(BASE_IMAGE)" || step_base
  local images=() image how
  while IFS=$'\t' read -r image how; do
    image_exists "${image}" || step_images
    images+=("${image}")
  done < <(images_list)
  run_timed "assemble ${node}" assemble_node "${node}" "${images[@]}"
  mkdir -p "${IMAGE_CACHE}"
  run_timed "docker save ${node} to the cache" docker save -o "${saved}.tmp" "${node}"
  mv "${saved}.tmp" "${saved}"
}

# assemble_node NODE IMAGE...: the steps of `kind build node-image`, with local inputs only.
assemble_node() {
  local node="$1"; shift
  local id="kind-build-$$-${RANDOM}" k8s manifests
  k8s="$(bin_dir kubernetes)"
  docker run -d --entrypoint=sleep --name="${id}" --security-opt seccomp=unconfined \
    "$(BASE_IMAGE)" infinity >/dev/null
  # shellcheck disable=SC2064
  trap "docker rm -f -v '${id}' >/dev/null 2>&1 || true" RETURN
  local b
  for b in kubeadm kubelet kubectl; do
    docker cp "${k8s}/${b}" "${id}:/usr/bin/${b}"
  done
  docker cp "$(bin_dir crictl)/crictl" "${id}:/usr/local/bin/crictl"
  docker exec "${id}" chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl /usr/local/bin/crictl
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which these machines lack: runc
  # then fails every pod that asks for a negative score (static pods ask for -998). kind's own
  # setting for rootless nodes makes containerd clamp the score to its own instead.
  docker exec "${id}" sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
    /etc/containerd/config.toml
  docker exec "${id}" sh -c "mkdir -p /kind/manifests && printf '%s' '${KUBERNETES_VERSION}' > /kind/version"
  manifests="$(mktemp -d)"
  kind_manifest const_storage.go defaultStorageManifest >"${manifests}/default-storage.yaml"
  default_cni_manifest >"${manifests}/default-cni.yaml"
  docker cp "${manifests}/." "${id}:/kind/manifests/"
  rm -rf "${manifests}"
  docker exec "${id}" bash -c 'nohup containerd >/dev/null 2>&1 &
    for i in 0 1 2 3 4 5; do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done; ctr version >/dev/null'
  log "importing ${#} images into containerd (k8s.io namespace)"
  docker save "$@" | docker exec -i "${id}" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  docker exec "${id}" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  docker exec "${id}" pkill containerd || true
  docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
    "${id}" "${node}" >/dev/null
}

# kind applies /kind/manifests/default-cni.yaml unless the cluster config disables the default
# CNI. Pod networking is the static bridge config in the node image; this manifest adds
# NetworkPolicy enforcement: kube-router with only its firewall (iptables + ipset) running.
default_cni_manifest() {
  cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-router
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kube-router
rules:
  - apiGroups: [""]
    resources: [namespaces, pods, services, nodes, endpoints]
    verbs: [list, get, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [list, get, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, get, watch]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, update]
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kube-router
subjects:
  - kind: ServiceAccount
    name: kube-router
    namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-router
  namespace: kube-system
  labels:
    k8s-app: kube-router
spec:
  selector:
    matchLabels:
      k8s-app: kube-router
  template:
    metadata:
      labels:
        k8s-app: kube-router
    spec:
      serviceAccountName: kube-router
      priorityClassName: system-node-critical
      hostNetwork: true
      tolerations:
        - operator: Exists
      containers:
        - name: kube-router
          image: $(kube_router_image)
          imagePullPolicy: IfNotPresent
          args:
            - --run-router=false
            - --run-firewall=true
            - --run-service-proxy=false
            - --enable-cni=false
            - --enable-ipv4=true
            - --enable-ipv6=false
            - --health-port=20244
            - --service-cluster-ip-range=${SERVICE_SUBNET}
          env:
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
          securityContext:
            privileged: true
          livenessProbe:
            httpGet:
              path: /healthz
              port: 20244
            initialDelaySeconds: 10
            periodSeconds: 5
          volumeMounts:
            - name: xtables-lock
              mountPath: /run/xtables.lock
      volumes:
        - name: xtables-lock
          hostPath:
            path: /run/xtables.lock
            type: FileOrCreate
YAML
}

main() {
  local selected=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --print-node-image) NODE_IMAGE; exit 0 ;;
      --print-image-names) BASE_IMAGE; RUNTIME_IMAGE; NODE_IMAGE; exit 0 ;;
      --print-ingress-image) traefik_image; exit 0 ;;
      -*) usage >&2; exit 2 ;;
      *) selected+=("$1") ;;
    esac
    shift
  done
  [[ ${#selected[@]} -eq 0 ]] && selected=("${STEPS[@]}")
  docker info >/dev/null 2>&1 || die "Docker does not answer; run scripts/docker-up.sh first"
  local s
  for s in "${selected[@]}"; do
    case "${s}" in
      rootfs|base|images|node|ingress) "step_${s}" ;;
      *) usage >&2; die "unknown step '${s}'" ;;
    esac
  done
}

main "$@"
