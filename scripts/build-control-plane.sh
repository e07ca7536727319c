#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy at pinned versions.
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

build_kube_apiserver() {
  local v="$KUBE_VERSION"
  reuse kube-apiserver "$v" && return 0
  local minor staging work out
  minor="$(echo "$v" | cut -d. -f2)"
  staging="v0.${minor}.$(echo "$v" | cut -d. -f3)"
  work="$(mktemp -d)"
  out="$cache/kube-apiserver-$v"
  log "building kube-apiserver $v (staging $staging) in $work; a cold build takes a while"
  (
    cd "$work"
    go mod init structured-api.io/throwaway-kube-apiserver >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    # Every `k8s.io/<m> => ./staging/...` line becomes k8s.io/<m>@<staging tag>.
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
      go mod edit -replace="$m=$m@$staging"
    done
    step "kube-apiserver 1/2: download modules" go get "k8s.io/kubernetes/cmd/kube-apiserver@$v"
    local pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
    local ld="-s -w"
    for p in $pkgs; do
      ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    mkdir -p "$out"
    CGO_ENABLED=0 step "kube-apiserver 2/2: compile (~6 min cold on 2 cores)" \
      go build -trimpath -ldflags "$ld" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
  )
  rm -rf "$work"
  publish kube-apiserver "$v"
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
  path)
    echo "$cache/etcd-$ETCD_VERSION/etcd"
    echo "$cache/kube-apiserver-$KUBE_VERSION/kube-apiserver"
    ;;
  *) echo "usage: $0 [all|etcd|kube-apiserver|path]" >&2; exit 2 ;;
esac
