#!/usr/bin/env bash
# Validates the deployment files against their published schemas: the
# Kubernetes manifests with kubernetes-validate (strict: unknown fields fail;
# the Prometheus Operator's ServiceMonitor and PrometheusRule have no schema in
# it and are only warned about, tests/deploy.rs checks them), the compose file
# with check-jsonschema's copy of the Compose specification. Both tools are
# pinned and installed once into target/pytools.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/pytools"
if [ ! -x "$tools/bin/kubernetes-validate" ] || [ ! -x "$tools/bin/check-jsonschema" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
  fi
  echo "installing kubernetes-validate 1.37.0 and check-jsonschema 0.39.0 into $tools" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$tools" \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0
fi
export PYTHONPATH="$tools"
"$tools/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 deploy/kubernetes/*.yaml
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
