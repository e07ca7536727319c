#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy at pinned versions; with `node`,
# `coredns`, `crictl`, `pause` or `cluster` also what the one-node cluster runs
# (scripts/kubetools/cluster.py, docs/cluster.md).
#
# Binaries land in $CONTROL_PLANE_CACHE (default: .cache/control-plane, git-ignored)
# under a directory named after the pinned version, so a pin change means a rebuild
# and nothing else does. A shared copy under ~/.cache/structured-api is reused when
# present, so a fresh clone on the same machine does not pay the cold build again.
#
# Why a throwaway module: k8s.io/kubernetes requires its staging modules at v0.0.0
# with `replace => ./staging/...`; replace lines of a dependency are ignored
# (kubernetes/kubernetes#79384, golang/go#44840), so we re-point every staging
# module at its published v0.X.Y tag.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/versions.env
source "$here/scripts/versions.env"

cache="${CONTROL_PLANE_CACHE:-$here/.cache/control-plane}"
shared="${STRUCTURED_API_SHARED_CACHE:-$HOME/.cache/structured-api/control-plane}"
mkdir -p "$cache" "$shared"

started=$SECONDS
log() {
  local s=$((SECONDS - started))
  printf '[control-plane %dm%02ds] %s\n' $((s / 60)) $((s % 60)) "$*" >&2
}

# step <what> <command...>: run one stage of a build, saying when it starts, that it is
# still working every 30 s (a cold `go build` of kube-apiserver is silent for minutes on
# 2 cores) and how long it took. The command's own output goes to stderr as before.
step() {
  local what="$1" t0=$SECONDS ticks=0 pid
  shift
  log "$what ..."
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    ticks=$((ticks + 1))
    if ((ticks % 30 == 0)); then log "$what: still working ($((SECONDS - t0)) s)"; fi
  done
  wait "$pid"
  log "$what: done in $((SECONDS - t0)) s"
}

# reuse <name> <version>: copy a binary from the shared cache when it is there.
reuse() {
  local name="$1" version="$2"
  local dst="$cache/$name-$version/$name" src="$shared/$name-$version/$name"
  if [ -x "$dst" ]; then
    log "$name $version: cached ($dst)"
    return 0
  fi
  if [ -x "$src" ]; then
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst"
    log "reused $name $version from $shared"
    return 0
  fi
  return 1
}

publish() {
  local name="$1" version="$2"
  mkdir -p "$shared/$name-$version"
  cp "$cache/$name-$version/$name" "$shared/$name-$version/$name.tmp"
  mv "$shared/$name-$version/$name.tmp" "$shared/$name-$version/$name"
}

# kube_module <dir>: make <dir> the throwaway module every Kubernetes binary is built in.
# Every `k8s.io/<m> => ./staging/...` line of k8s.io/kubernetes becomes k8s.io/<m>@<staging
# tag>. The module stays in the cache (keyed by the pin), so later binaries skip this step
# and share the Go build cache with the ones built before.
kube_module() {
  local dir="$1" v="$KUBE_VERSION" minor staging gomod
  [ -f "$dir/.ready" ] && return 0
  minor="$(echo "$v" | cut -d. -f2)"
  staging="v0.${minor}.$(echo "$v" | cut -d. -f3)"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    go mod init structured-api.io/throwaway-kube-apiserver >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
      go mod edit -replace="$m=$m@$staging"
    done
  )
  touch "$dir/.ready"
}

# build_kube <cmd>...: build k8s.io/kubernetes/cmd/<cmd> at $KUBE_VERSION for each <cmd> not
# cached yet, all in one throwaway module (kube-apiserver, kubelet, kube-proxy, ...).
build_kube() {
  local v="$KUBE_VERSION" todo=() name minor ld p pkgs
  for name in "$@"; do reuse "$name" "$v" || todo+=("$name"); done
  ((${#todo[@]})) || return 0
  local work="$cache/.module-kubernetes-$v"
  minor="$(echo "$v" | cut -d. -f2)"
  log "building ${todo[*]} $v in $work; a cold build takes a while"
  kube_module "$work"
  local targets=()
  for name in "${todo[@]}"; do targets+=("k8s.io/kubernetes/cmd/$name@$v"); done
  (cd "$work" && step "${todo[*]}: download modules" go get "${targets[@]}")
  pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
  ld="-s -w"
  for p in $pkgs; do
    ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for name in "${todo[@]}"; do
    local out="$cache/$name-$v"
    mkdir -p "$out"
    # nice: the two cores are shared with whatever else runs (tests, other builds).
    (cd "$work" && CGO_ENABLED=0 step "$name: compile (minutes when cold)" \
      nice -n 10 go build -trimpath -ldflags "$ld" -o "$out/$name.tmp" "k8s.io/kubernetes/cmd/$name")
    mv "$out/$name.tmp" "$out/$name"
    publish "$name" "$v"
  done
}

build_kube_apiserver() { build_kube kube-apiserver; }

# The four binaries of a node and its control loops (docs/cluster.md).
build_node() { build_kube kubelet kube-controller-manager kube-scheduler kube-proxy; }

# build_go_main <name> <version> <package> [main.go]: `go build` one main package published
# on the Go module proxy (or, with a main.go, a main of ours importing it), in a throwaway
# module of its own. `go get <package>` (not the module) records its dependencies' sums.
build_go_main() {
  local name="$1" v="$2" pkg="$3" main="${4:-}"
  reuse "$name" "$v" && return 0
  local work out="$cache/$name-$v"
  work="$(mktemp -d)"
  log "building $name $v in $work"
  (
    cd "$work"
    go mod init "structured-api.io/throwaway-$name" >/dev/null 2>&1
    if [ -n "$main" ]; then
      printf '%s\n' "$main" >main.go
      step "$name 1/2: download modules" go get "$pkg@$v"
      step "$name 1/2: module sums" go mod tidy
      pkg=.
    else
      step "$name 1/2: download modules" go get "$pkg@$v"
    fi
    mkdir -p "$out"
    CGO_ENABLED=0 step "$name 2/2: compile" \
      nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out/$name.tmp" "$pkg"
    mv "$out/$name.tmp" "$out/$name"
  )
  rm -rf "$work"
  publish "$name" "$v"
}

# CoreDNS's own main (coredns.go: coremain.Run) with only the plugins the cluster's
# Corefile uses (scripts/kubetools/cluster.py coredns_manifests) instead of core/plugin,
# which imports every plugin and with them cloud SDKs, the Datadog tracer and the
# OpenTelemetry collector: 20 min to compile on 2 busy cores. Changing this list needs
# `rm -r .cache/control-plane/coredns-* ~/.cache/structured-api/control-plane/coredns-*`.
COREDNS_MAIN='package main

import (
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }'

build_coredns() {
  build_go_main coredns "$COREDNS_VERSION" github.com/coredns/coredns/coremain "$COREDNS_MAIN"
}

build_crictl() {
  build_go_main crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
}

# The pod sandbox's pause process: no registry is reachable, so no pause image can be pulled.
# Its C source ships inside the k8s.io/kubernetes module zip; gcc -static like upstream's
# Makefile (build/pause/Makefile, CFLAGS), keyed by the Kubernetes pin.
build_pause() {
  local v="$KUBE_VERSION"
  reuse pause "$v" && return 0
  local dir tag out="$cache/pause-$v"
  dir="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  tag="$(sed -n 's/^TAG ?= //p' "$dir/build/pause/Makefile")"
  mkdir -p "$out"
  step "pause $tag: gcc -static" nice -n 10 gcc -Os -Wall -Werror -static \
    "-DVERSION=v$tag-structured-api" -o "$out/pause.tmp" "$dir/build/pause/linux/pause.c"
  mv "$out/pause.tmp" "$out/pause"
  publish pause "$v"
}

build_etcd() {
  local v="$ETCD_VERSION"
  reuse etcd "$v" && return 0
  local work out
  work="$(mktemp -d)"
  out="$cache/etcd-$v"
  log "building etcd $v in $work"
  (
    cd "$work"
    go mod init structured-api.io/throwaway-etcd >/dev/null 2>&1
    step "etcd 1/2: download modules" go get "go.etcd.io/etcd/server/v3@$v"
    mkdir -p "$out"
    CGO_ENABLED=0 step "etcd 2/2: compile (~1.5 min cold)" \
      go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$out/etcd.tmp" "$out/etcd"
  )
  rm -rf "$work"
  publish etcd "$v"
}

case "${1:-all}" in
  etcd) build_etcd ;;
  kube-apiserver) build_kube_apiserver ;;
  all) build_etcd; build_kube_apiserver ;;
  node) build_node ;;
  coredns) build_coredns ;;
  crictl) build_crictl ;;
  pause) build_pause ;;
  # Everything scripts/kubetools/cluster.py runs (docs/cluster.md).
  cluster) build_etcd; build_kube_apiserver; build_node; build_coredns; build_crictl; build_pause ;;
  path)
    echo "$cache/etcd-$ETCD_VERSION/etcd"
    echo "$cache/kube-apiserver-$KUBE_VERSION/kube-apiserver"
    ;;
  path-cluster)
    for n in kubelet kube-controller-manager kube-scheduler kube-proxy pause; do
      echo "$n=$cache/$n-$KUBE_VERSION/$n"
    done
    echo "coredns=$cache/coredns-$COREDNS_VERSION/coredns"
    echo "crictl=$cache/crictl-$CRICTL_VERSION/crictl"
    ;;
  *) echo "usage: $0 [all|etcd|kube-apiserver|node|coredns|crictl|pause|cluster|path|path-cluster]" >&2; exit 2 ;;
esac
