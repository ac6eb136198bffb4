#!/usr/bin/env bash
# The real Prometheus the tests run: Debian's package, downloaded and unpacked into ~/.cache/tokentop/prometheus
# (not installed: no service starts). Once; later runs find it there.
set -euo pipefail
dest="$HOME/.cache/tokentop/prometheus"
if [ -x "$dest/usr/bin/prometheus" ]; then exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; })
mkdir -p "$dest"
dpkg-deb -x "$work"/prometheus_*.deb "$dest"
"$dest/usr/bin/prometheus" --version | head -1
