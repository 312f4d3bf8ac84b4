#!/usr/bin/env bash
# Builds, without any registry, leaklab/prometheus:local: Prometheus from
# Debian's `prometheus` package, in an image made FROM nothing (docker import):
# the server binary, the C library it links, a data directory, and the
# scrape configuration compose mounts over /etc/prometheus/prometheus.yml.
#
# Where a registry is reachable, the official prom/prometheus image works the
# same way (set PROMETHEUS_IMAGE).
#
# Usage: ci/docker/make-prometheus-image.sh [IMAGE]   (root; apt and docker available)
set -euo pipefail

image=${1:-leaklab/prometheus:local}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image exists"
  exit 0
fi

work=$(mktemp -d /tmp/leaklab-prometheus.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "fetching Debian's prometheus package"
apt-get update -qq >/dev/null
apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }
dpkg-deb -x prometheus_*.deb pkg

root=$work/root
mkdir -p "$root/usr/bin" "$root/etc/prometheus" "$root/prometheus" "$root/tmp"
chmod 1777 "$root/tmp"
cp pkg/usr/bin/prometheus pkg/usr/bin/promtool "$root/usr/bin/"
# The shared libraries the binaries link (glibc and the loader), as ldd finds them here.
for lib in $(ldd pkg/usr/bin/prometheus pkg/usr/bin/promtool | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
  cp --parents -L "$lib" "$root/"
done
# Name resolution for compose's service names, and a default configuration
# (compose mounts the project's own over it).
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
cat > "$root/etc/prometheus/prometheus.yml" <<'YML'
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:9090"]
YML

echo "importing $image"
tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
  --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]' \
  --change 'EXPOSE 9090' \
  - "$image" >/dev/null
docker image ls "$image"
