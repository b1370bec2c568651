#!/usr/bin/env bash
# Stand-in base images for machines that reach Debian's package mirror and the Python package index but
# no container registry (this project's CI): the pinned base images are made from Debian's packages with
# debootstrap and tagged with the exact names the Dockerfiles and compose files pin, so those build and
# run unchanged. On a machine that reaches a registry, skip this: `docker build` pulls the real bases.
#
#   deploy/dev/stand-in-bases.sh            # make the missing ones (a few minutes each; then cached)
#   deploy/dev/stand-in-bases.sh --force    # make them again
#
# Each image is Debian bookworm (the release the official python:*-bookworm images are built on) with only
# what its users need:
#   python:3.11.11-slim-bookworm   python3 (3.11), venv, ca-certificates (Dockerfile.edge, Dockerfile.hub)
#   redis:7.4.1-alpine             redis-server; `redis-server` as in the official image's entrypoint
#   eclipse-mosquitto:2.0.20       mosquitto; reads /mosquitto/config/mosquitto.conf as the official one
# Debian's package versions differ from the pinned tags (Python 3.11.2, Redis 7.0, Mosquitto 2.0.11):
# the names are stand-ins, the programs are the real ones.
#
# The mirror is the one this machine's apt uses; CA certificates added to this machine
# (/usr/local/share/ca-certificates) are added to the images too, so TLS to the package index works
# wherever it works on the host.
set -euo pipefail

force=false
[ "${1:-}" = "--force" ] && force=true
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "needs a running Docker engine (dockerd)" >&2; exit 2; }

SUITE=bookworm
cache="${HGR_STANDIN_CACHE:-/var/cache/hgr-standin}"
mkdir -p "$cache"

# The first Debian mirror in apt's sources (deb822 or one-line form).
mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || { echo "no Debian mirror in /etc/apt/sources*" >&2; exit 2; }
  echo "$uri"
}

# rootfs NAME PACKAGES SETUP: a minbase bookworm tree with PACKAGES, then the shell command SETUP run in
# it; cached as $cache/NAME.tar.
rootfs() {
  local name=$1 packages=$2 setup=$3 tarball="$cache/$1.tar" dir
  if [ -f "$tarball" ] && ! $force; then return; fi
  dir=$(mktemp -d)
  debootstrap --variant=minbase --include="$packages" "$SUITE" "$dir" "$(mirror)"
  if [ -x "$dir/usr/sbin/update-ca-certificates" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null
  then
    cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    chroot "$dir" update-ca-certificates
  fi
  [ -z "$setup" ] || chroot "$dir" /bin/sh -ec "$setup"
  # As the official Debian images: no package lists, downloaded packages, docs or caches, and apt set to
  # remove what it downloads after each install (so a Dockerfile's apt-get layer holds only the files
  # it installs, and the sizes measured here are the sizes on a real base).
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
  cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  tar -C "$dir" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$dir"
}

# image TAG ROOTFS-NAME PACKAGES SETUP CHANGES...: import the tree under TAG unless it is there already.
image() {
  local tag=$1 name=$2 packages=$3 setup=$4; shift 4
  if docker image inspect "$tag" >/dev/null 2>&1 && ! $force; then echo "have $tag"; return; fi
  local changes=()
  rootfs "$name" "$packages" "$setup"
  for change in "$@"; do changes+=(--change "$change"); done
  docker import "${changes[@]}" "$cache/$name.tar" "$tag" >/dev/null
  echo "made $tag (stand-in from Debian $SUITE: $packages)"
}

image python:3.11.11-slim-bookworm python python3,python3-venv,python-is-python3,ca-certificates '' \
  'ENV LANG=C.UTF-8' 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["python3"]'
image redis:7.4.1-alpine redis redis-server 'mkdir -p /data && chown redis:redis /data' \
  'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]'
image eclipse-mosquitto:2.0.20 mosquitto mosquitto \
  'mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log && chown -R mosquitto:mosquitto /mosquitto' \
  'EXPOSE 1883' 'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]'
