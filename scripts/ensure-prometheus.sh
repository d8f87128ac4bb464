#!/usr/bin/env bash
# Makes sure a real Prometheus server binary is installed (Debian package
# `prometheus`) and prints its path. Tests start their own instance with a
# generated config on a free loopback port; this script only installs.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v prometheus
