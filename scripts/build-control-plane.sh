#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy at pinned versions; with `node`,
# `coredns`, `crictl`, `pause` or `cluster` also what the one-node cluster runs, with
# `traefik` its ingress controller and `prometheus` the server scraping it
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

# Traefik, the cluster's ingress controller (docs/cluster.md, "Ingress controller"), in a
# throwaway module: a dependency's replace lines do not apply to the module that requires
# it (golang/go#44840), so traefik's own go.mod replaces and excludes are copied, with
# three changes, each for a module the Go proxy this machine reaches does not serve
# (`go get` answers "reading https://proxy.golang.org/...: 403 Forbidden ... This module
# version is not available"):
# - `github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext` points into
#   traefik's repository at a module of its own, so it is in neither the module zip nor the
#   proxy. It is an extension point; the open-source build's is two empty structs
#   (ext.HTTP, ext.Router, embedded in pkg/config/dynamic/http_config.go): ours is the same.
# - `github.com/abbot/go-http-auth => github.com/containous/go-http-auth <2026 pseudo-version>`:
#   no version of the fork is served. The throwaway module carries a copy of the upstream
#   module's last commit plus the one method traefik's digest-auth middleware needs from
#   the fork, `RequireAuthStale` (a 401 challenge with `stale=true`, RFC 7616 section 3.3,
#   written here); the cluster does not use the auth middlewares.
# - lego's DNS-01 registry (`providers/dns`, imported by traefik's ACME provider) imports
#   all ~180 DNS provider SDKs, several of which are not served (akamai edgegrid v13,
#   huaweicloud, oci-go-sdk, sacloud, ucloud, yandex-cloud). The throwaway module carries a
#   copy of lego at traefik's pin whose registry knows no provider (DNS-01 challenges
#   fail with "unrecognized DNS provider"; HTTP-01 and TLS-ALPN-01 are untouched). Like
#   CoreDNS's trimmed plugin list, it also cuts the compile time a lot.
# The web UI is not built (the zip's embed directory holds a placeholder); the cluster
# does not enable the dashboard.
TRAEFIK_EXT_GO='package ext

// HTTP is embedded in dynamic.HTTPConfiguration; empty in the open-source build.
type HTTP struct{}

// Router is embedded in dynamic.Router; empty in the open-source build.
type Router struct{}'
TRAEFIK_LEGO_DNS='// Written by scripts/build-control-plane.sh (build_traefik): no DNS-01 provider.

package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName knows no provider in this build.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("unrecognized DNS provider: %s (no DNS-01 providers in this build)", name)
}'
TRAEFIK_HTTP_AUTH="github.com/abbot/go-http-auth@v0.4.1-0.20220112235402-e1cee1c72f2f"
TRAEFIK_HTTP_AUTH_STALE='// Written by scripts/build-control-plane.sh (build_traefik): the method traefik calls
// from its go-http-auth fork.

package auth

import (
	"fmt"
	"net/http"
	"time"
)

// RequireAuthStale answers like RequireAuth with stale=true: the nonce was known but
// outdated, so a client may retry with a new one without asking its user (RFC 7616 3.3).
func (da *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	nonce := RandomKey()
	da.mutex.Lock()
	da.clients[nonce] = &digestClient{nc: 0, lastSeen: time.Now().UnixNano()}
	da.mutex.Unlock()
	da.mutex.RLock()
	defer da.mutex.RUnlock()
	w.Header().Set(contentType, da.Headers.V().UnauthContentType)
	w.Header().Set(da.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm=MD5, qop="auth", stale=true`,
			da.Realm, nonce, da.Opaque))
	w.WriteHeader(da.Headers.V().UnauthCode)
	_, _ = w.Write([]byte(da.Headers.V().UnauthResponse))
}'

build_traefik() {
  local v="$TRAEFIK_VERSION" mod="github.com/traefik/traefik/v3"
  reuse traefik "$v" && return 0
  local work out="$cache/traefik-$v" gomod lego
  work="$cache/.module-traefik-$v"
  log "building traefik $v in $work; a cold build takes a while"
  rm -rf "$work" && mkdir -p "$work/ext"
  (
    cd "$work"
    go mod init structured-api.io/throwaway-traefik >/dev/null 2>&1
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.21\n' >ext/go.mod
    printf '%s\n' "$TRAEFIK_EXT_GO" >ext/ext.go
    gomod="$(go mod download -json "$mod@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    lego="$(go mod edit -json "$gomod" | python3 -c '
import json, sys
print(next(r["Path"] + "@" + r["Version"] for r in json.load(sys.stdin)["Require"] if r["Path"] == "github.com/go-acme/lego/v5"))')"
    cp -r "$(go mod download -json "$lego" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" lego
    chmod -R u+w lego
    rm -f lego/providers/dns/*.go
    printf '%s\n' "$TRAEFIK_LEGO_DNS" >lego/providers/dns/dns_providers.go
    cp -r "$(go mod download -json "$TRAEFIK_HTTP_AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" http-auth
    chmod -R u+w http-auth
    printf '%s\n' "$TRAEFIK_HTTP_AUTH_STALE" >http-auth/stale.go
    # Every replace and exclude of traefik's go.mod as `go mod edit` flags, plus ours.
    go mod edit -json "$gomod" | python3 -c '
import json, sys
m = json.load(sys.stdin)
def ref(x):
    return x["Path"] + ("@" + x["Version"] if x.get("Version") else "")
for r in m.get("Replace") or []:
    old, new = r["Old"], r["New"]
    if old["Path"] == "github.com/traefik/traefik/dynamic/ext":
        print("-replace=" + ref(old) + "=./ext")
    elif old["Path"] == "github.com/abbot/go-http-auth":
        print("-replace=" + ref(old) + "=./http-auth")
    elif new["Path"].startswith("."):
        sys.exit("unexpected local replace in traefik go.mod: " + old["Path"])
    else:
        print("-replace=" + ref(old) + "=" + ref(new))
for e in m.get("Exclude") or []:
    print("-exclude=" + ref(e))
print("-replace=github.com/go-acme/lego/v5=./lego")
' | xargs go mod edit
    step "traefik 1/2: download modules" go get "$mod/cmd/traefik@$v"
    mkdir -p "$out"
    local ld="-s -w -X $mod/pkg/version.Version=$v -X $mod/pkg/version.BuildDate=1970-01-01T00:00:00Z"
    CGO_ENABLED=0 step "traefik 2/2: compile (many minutes when cold)" \
      nice -n 10 go build -trimpath -ldflags "$ld" -o "$out/traefik.tmp" "$mod/cmd/traefik"
    mv "$out/traefik.tmp" "$out/traefik"
  )
  publish traefik "$v"
}

# Prometheus beside the cluster (scripts/kubetools/prometheus.py). Debian's server cannot
# discover anything in Kubernetes: its package removed the Kubernetes SD ("Kubernetes
# support has been completely removed, due to the insane amount of dependencies in their
# client library", /usr/share/doc/prometheus/NEWS.Debian.gz), and `kubernetes_sd_configs`
# fails with "field kubernetes_sd_configs not found in type config.ScrapeConfig". So the
# server is built from its Go module with upstream's own build tags (plugins/*.go):
# `remove_all_sd,enable_kubernetes_sd` keeps only the Kubernetes SD (static and file
# discovery are always there). The web UI's assets are built with npm and are not in the
# module zip: the HTTP API and `promtool query` work, the browser pages do not.
build_prometheus() {
  local v="$PROMETHEUS_VERSION" mod="github.com/prometheus/prometheus"
  reuse prometheus "$v" && return 0
  local work out="$cache/prometheus-$v" dir release
  work="$(mktemp -d)"
  log "building prometheus $v in $work"
  (
    cd "$work"
    go mod init structured-api.io/throwaway-prometheus >/dev/null 2>&1
    dir="$(go mod download -json "$mod@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    release="$(cat "$dir/VERSION")"
    step "prometheus 1/2: download modules" go get "$mod@$v"
    mkdir -p "$out"
    local ld="-s -w -X github.com/prometheus/common/version.Version=$release"
    ld="$ld -X github.com/prometheus/common/version.Revision=$v"
    ld="$ld -X github.com/prometheus/common/version.BuildDate=19700101-00:00:00"
    # -mod=mod: fetch only what the tagged build imports (`go get` of the package would
    # resolve every SD plugin's cloud SDK).
    CGO_ENABLED=0 step "prometheus 2/2: compile (minutes when cold)" \
      nice -n 10 go build -mod=mod -trimpath -tags remove_all_sd,enable_kubernetes_sd \
      -ldflags "$ld" -o "$out/prometheus.tmp" "$mod/cmd/prometheus"
    mv "$out/prometheus.tmp" "$out/prometheus"
  )
  rm -rf "$work"
  publish prometheus "$v"
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
  # The ingress controller of `make cluster` (scripts/devcluster.py).
  traefik) build_traefik ;;
  # Prometheus beside the cluster (scripts/kubetools/prometheus.py).
  prometheus) build_prometheus ;;
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
  path-traefik) echo "$cache/traefik-$TRAEFIK_VERSION/traefik" ;;
  path-prometheus) echo "$cache/prometheus-$PROMETHEUS_VERSION/prometheus" ;;
  *) echo "usage: $0 [all|etcd|kube-apiserver|node|coredns|crictl|pause|traefik|prometheus|cluster|path|path-cluster|path-traefik|path-prometheus]" >&2; exit 2 ;;
esac
