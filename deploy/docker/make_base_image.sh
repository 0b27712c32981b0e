#!/usr/bin/env bash
# Makes the Debian bookworm base image `tunewire-base:bookworm` (Python 3.11) without a
# registry: debootstrap from the machine's own Debian mirror, then `docker import`.
# Skips all work when the image exists (pass --force to rebuild). Needs root, docker, debootstrap.
#   bash deploy/docker/make_base_image.sh [--force] [IMAGE]
set -euo pipefail
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
image="${1:-tunewire-base:bookworm}"
docker="${DOCKER:-docker}"

if [ "$force" = 0 ] && "$docker" image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image exists; skipping debootstrap"
  exit 0
fi

# The mirror this machine's apt uses (deb822 or one-line format), never a hard-coded one.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/tunewire-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror into $rootfs"
# python3-venv brings ensurepip's pip/setuptools wheels; no compiler, no pip cache.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -30 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"
# Package caches and documentation are dead weight in every image built on top.
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image"
"$docker" image ls "$image"
