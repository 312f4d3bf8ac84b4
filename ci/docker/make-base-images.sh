#!/usr/bin/env bash
# Builds, without any registry, the local base image the Dockerfile's build
# stage needs on a machine that cannot pull images:
#
#   leaklab/rust-builder:local  Debian bookworm (debootstrap --variant=minbase,
#                               plus gcc, make, libc6-dev, ca-certificates) with
#                               this machine's Rust toolchain copied in.
#
# The runtime stages need no base image: they are FROM scratch with the binary
# and the few shared libraries it links (see Dockerfile). Where a registry is
# reachable, skip this script: the Dockerfile defaults to rust:1.95-slim-bookworm.
#
# Usage: ci/docker/make-base-images.sh [IMAGE]   (root; apt and docker available)
set -euo pipefail

image=${1:-leaklab/rust-builder:local}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image exists"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap"
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

# Use the Debian mirror apt is already configured with on this machine.
mirror=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1 || true)
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in /etc/apt/sources.list{,.d}" >&2
  exit 1
fi

sysroot=$(rustc --print sysroot)
root=$(mktemp -d /tmp/leaklab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase --include=gcc,libc6-dev,make,ca-certificates bookworm "$root" "$mirror" >/dev/null

echo "copying the Rust toolchain from $sysroot ($(rustc --version))"
mkdir -p "$root/usr/local/rust"
cp -a "$sysroot/bin" "$sysroot/lib" "$root/usr/local/rust/"
[ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$root/usr/local/rust/"
# Trust what this machine trusts: where TLS to the registries passes through a
# local inspecting proxy, its CA is in the host's bundle and not in Debian's.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/usr/share/doc" "$root/usr/share/man"

echo "importing $image"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  - "$image" >/dev/null
docker image ls "$image"
