#!/usr/bin/env bash
# Renders what the chart installs into files a reader (and `kubectl apply`) can use without helm:
#
#   charts/tributary/crds/   identical copies of the generated crds/*.yaml (helm installs a
#                            chart's crds/ before its templates)
#   manifests/install.yaml   the Namespace, the CRDs and every object of the chart with its
#                            default values, for `kubectl apply --server-side -f`
#
#   scripts/render-manifests.sh           copy the CRDs, lint the chart, write install.yaml
#   scripts/render-manifests.sh --print   print what install.yaml should hold; change nothing
#
# Run by `npm run generate` after the CRDs are generated; test/unit/chart.test.ts uses --print
# and fails when the committed files differ.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/charts/tributary"
NAMESPACE=tributary-system
RELEASE=tributary
# Rendered for the oldest Kubernetes the chart supports (Chart.yaml's kubeVersion), so the
# output does not depend on which version helm was built against (a helm built from its Go
# module without release ldflags assumes v1.20, which the chart refuses).
KUBE_VERSION=1.30.0

print_only=false
case "${1:-}" in
  "") ;;
  --print) print_only=true ;;
  *) echo "usage: scripts/render-manifests.sh [--print]" >&2; exit 2 ;;
esac

# helm comes from the test environment (built once from its Go module, then cached).
HELM=${TRIBUTARY_TESTENV_HELM:-$(bash "$ROOT/scripts/testenv" env | sed -n 's/^export TRIBUTARY_TESTENV_HELM=//p')}
if [ ! -x "$HELM" ]; then
  echo "render-manifests: helm is not built yet; building it with 'scripts/testenv up helm'" >&2
  bash "$ROOT/scripts/testenv" up helm
fi

render() {
  cat <<HEADER
# Tributary: CRDs, operator and RBAC in namespace $NAMESPACE, rendered from charts/tributary
# with its default values by scripts/render-manifests.sh (npm run generate); do not edit by hand.
#
#   kubectl apply --server-side -f manifests/install.yaml
#
# The operator pods meet the "restricted" Pod Security Standard, which the namespace enforces.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    app.kubernetes.io/part-of: tributary
    pod-security.kubernetes.io/enforce: restricted
HEADER
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --include-crds --kube-version "$KUBE_VERSION"
}

if $print_only; then
  render
  exit 0
fi

shopt -s nullglob
crds=("$ROOT"/crds/*.yaml)
[ ${#crds[@]} -gt 0 ] || { echo "render-manifests: no crds/*.yaml; run 'npm run generate' first" >&2; exit 1; }
# Replace, not merge: a CRD removed from crds/ must leave the chart too.
mkdir -p "$CHART/crds"
rm -f "$CHART"/crds/*.yaml
cp "${crds[@]}" "$CHART/crds/"

"$HELM" lint "$CHART" --strict --quiet --kube-version "$KUBE_VERSION" >&2

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
render >"$tmp"
mkdir -p "$ROOT/manifests"
# Written only once complete, so a failed render never leaves half a file.
cat "$tmp" >"$ROOT/manifests/install.yaml"
echo "render-manifests: wrote charts/tributary/crds/ and manifests/install.yaml" >&2
