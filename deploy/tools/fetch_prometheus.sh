#!/usr/bin/env bash
# Unpack Debian's `prometheus` package (prometheus + promtool) into DEST without installing it:
# no service is registered or started, and nothing outside DEST changes. The tests use promtool
# to check the Prometheus config and alert rules, and the dashboard renderer runs a real
# Prometheus from here. Usage: deploy/tools/fetch_prometheus.sh [DEST] (default .cache/prometheus)
set -euo pipefail
dest="${1:-.cache/prometheus}"
if [ -x "$dest/usr/bin/promtool" ] && [ -x "$dest/usr/bin/prometheus" ]; then
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt-get download needs current package lists; refresh them once if the first try fails.
apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }
cd - >/dev/null
mkdir -p "$dest"
dpkg-deb -x "$work"/prometheus_*.deb "$dest"
"$dest/usr/bin/promtool" --version | head -1
