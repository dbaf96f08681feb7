#!/usr/bin/env bash
# Prepares what the Docker pack's tests use, on a machine with Debian's packages:
#   - Debian's docker.io (engine 20.10, API 1.41), busybox-static and docker-registry, if missing;
#   - a Docker daemon, started if none answers;
#   - the test image `alknet-test:latest`: a busybox root filesystem piped to `docker import`
#     (no registry needed);
#   - a local registry on 127.0.0.1:5000 for the `image/pull` tests, seeded with
#     127.0.0.1:5000/alknet-test:latest so a pull (docs/docker.md) has something to fetch.
# Then run the tests with ALKNET_REQUIRE_DOCKER=1 ALKNET_TEST_REGISTRY=127.0.0.1:5000 so that
# a missing piece fails them instead of skipping them. Needs root.
set -euo pipefail

log() { printf 'docker-test-env: %s\n' "$*"; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
# The image needs a static busybox: a dynamic one would find no libc in the container.
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v docker-registry >/dev/null || need+=(docker-registry)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's client speaks the engine's API version; a newer client elsewhere on PATH may not.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker

if ! "$DOCKER" version >/dev/null 2>&1; then
  log "starting dockerd"
  # No daemon answers, so a pid file is stale (a daemon killed with its machine session); dockerd
  # refuses to start while one names a live pid, and pids get reused.
  rm -f /var/run/docker.pid
  nohup dockerd >/tmp/alknet-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    "$DOCKER" version >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" version >/dev/null 2>&1 || { log "dockerd did not start:"; tail -n 30 /tmp/alknet-dockerd.log; exit 1; }
fi
log "daemon: $("$DOCKER" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

if ! "$DOCKER" image inspect alknet-test:latest >/dev/null 2>&1; then
  log "building alknet-test:latest from busybox"
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh ash cat echo sleep ls env true false tr wc head stty printf id kill ps grep seq; do
    ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  tar -C "$root" -c . | "$DOCKER" import -c 'ENV PATH=/bin' - alknet-test:latest >/dev/null
  rm -rf "$root"
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
  log "starting docker-registry on 127.0.0.1:5000"
  config=$(mktemp)
  cat >"$config" <<CONFIG
version: 0.1
storage:
  filesystem:
    rootdirectory: /tmp/alknet-registry
http:
  addr: 127.0.0.1:5000
CONFIG
  nohup docker-registry serve "$config" >/tmp/alknet-registry.log 2>&1 &
  for _ in $(seq 1 40); do
    (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
    sleep 0.25
  done
fi
# Seed the registry with an image whose layer this daemon does not hold, so that
# `docker/image/pull {"image": "127.0.0.1:5000/alknet-demo"}` (docs/docker.md) shows real
# download progress. The tests push and remove tags of their own; this one stays.
if ! docker pull -q 127.0.0.1:5000/alknet-demo:latest >/dev/null 2>&1; then
  log "seeding the registry with 127.0.0.1:5000/alknet-demo:latest"
  seed=$(mktemp -d)
  mkdir -p "$seed/root/data"
  head -c 4000000 /dev/urandom >"$seed/root/data/blob"
  tar -C "$seed/root" -c . | docker import - 127.0.0.1:5000/alknet-demo:latest >/dev/null
  docker push -q 127.0.0.1:5000/alknet-demo:latest >/dev/null
  rm -rf "$seed"
fi
# No local copy, so a pull downloads it.
docker rmi -f 127.0.0.1:5000/alknet-demo:latest >/dev/null 2>&1 || true
log "ready"
