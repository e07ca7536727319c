#!/usr/bin/env bash
# Install the Debian packages the test suite uses when they are missing: Chromium (browser
# tests), promtool (alert rules), wrk (bench smoke tests), setpriv (parent-death signal of
# every server the tests start), plus make, python3 and pip for uv. `make test` and
# `.ci/run` both call it; when everything is there it changes nothing and prints one line.
# Installing needs root (apt-get); anyone else gets the command to run instead.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
log() { printf '[tools] %s\n' "$*" >&2; }

# command -> Debian package providing it
declare -A wanted=(
  [chromium]=chromium     # browser tests (headless)
  [promtool]=prometheus   # alert/recording rule checks
  [make]=make
  [python3]=python3       # 3.11 on bookworm, as pyproject.toml requires
  [wrk]=wrk               # load generator of bench/run.py (bench_smoke tests)
  [setpriv]=util-linux    # parent-death signal of every server the tests start
  [curl]=curl             # README "Try it" (tests/test_try_it.py)
  [debootstrap]=debootstrap  # the local Python base image (scripts/images/base.py)
  [containerd]=containerd # one-node cluster (docs/cluster.md): CRI runtime, ctr
  [runc]=runc             # one-node cluster: OCI runtime under containerd
  [buildah]=buildah       # one-node cluster: FROM-scratch images without a registry
  [iptables]=iptables     # one-node cluster: kube-proxy (iptables mode), pod isolation
  [busybox]=busybox-static  # one-node cluster tests: static busybox image
  [/usr/lib/cni/bridge]=containernetworking-plugins  # one-node cluster: CNI plugins
  [nft]=nftables          # one-node cluster: cleanup of nf_tables tables
)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1 \
  && ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)  # only to install uv
fi

if ((${#missing[@]} == 0)); then
  log "present: ${!wanted[*]}"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "missing: ${missing[*]}; as root run: apt-get install --no-install-recommends ${missing[*]}"
  exit 1
fi

log "installing ${missing[*]} (apt-get; takes a minute or two)"
# Installing `prometheus` must not start a Prometheus server on this machine: policy-rc.d
# exiting 101 forbids invoke-rc.d / deb-systemd-invoke to start services
# (init-system-helpers, README.policy-rc.d).
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  ours=1
  trap 'rm -f "$policy"' EXIT
fi
started=$SECONDS
apt-get -o DPkg::Lock::Timeout=600 update -qq
log "package lists updated ($((SECONDS - started)) s); installing"
# apt's per-package chatter goes to a log, shown only when the install fails.
apt_log="$(mktemp)"
if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  "${missing[@]}" >"$apt_log" 2>&1; then
  tail -n 40 "$apt_log" >&2
  log "apt-get install failed (full log: $apt_log)"
  exit 1
fi
rm -f "$apt_log"
if [ -n "$ours" ]; then
  rm -f "$policy"
  trap - EXIT
fi
# The package also enables prometheus.service for the next boot; the tests want only promtool.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable prometheus.service >/dev/null 2>&1 || true
  systemctl stop prometheus.service >/dev/null 2>&1 || true
fi
log "installed in $((SECONDS - started)) s"
