#!/usr/bin/env bash
# Makes sure `kubernetes-validate` (PyPI; it carries the Kubernetes API's JSON schemas, so validating needs no
# cluster and no network) is installed in a virtual environment under the cache directory, and prints the path of
# its command. The tests validate deploy/k8s/ with it.
set -euo pipefail
venv=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/kubernetes-validate
version=1.37.0
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$version"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$version" >&2
fi
echo "$venv/bin/kubernetes-validate"
