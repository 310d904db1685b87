#!/usr/bin/env bash
# End-to-end check on a real Kubernetes cluster: build the image, install the CRDs and the manifests
# in deploy/, apply the example EmpireConfig and wait until the operator reports Ready=True.
#
#   scripts/e2e-kind.sh                 create (or reuse) the kind cluster "empire-e2e" and use it
#   scripts/e2e-kind.sh --delete        ... and delete that kind cluster at the end
#   E2E_CONTEXT=my-ctx IMAGE=registry.example.com/empire:e2e scripts/e2e-kind.sh
#                                       use an existing kubeconfig context; IMAGE must be pullable by
#                                       that cluster (the script pushes it with `docker push`)
#
# Needs docker and kubectl (and kind unless E2E_CONTEXT is set). It cannot run in empire's CI:
# there is no cluster there; the operator's handlers are tested against a Kubernetes API mock instead.
# Without the Prometheus Operator CRDs (monitoring.coreos.com) the ServiceMonitor and the
# PrometheusRule are left out. The example policy's workloads (generator, api) do not exist in a
# bare cluster, so the EmpireConfig is Ready (its spec is the policy in force) while Degraded=True
# reports that the agent cannot read them: that is expected.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-empire-e2e}
IMAGE=${IMAGE:-empire:e2e}
CONTEXT=${E2E_CONTEXT:-}
TIMEOUT=${E2E_TIMEOUT:-300s}
DELETE=0
[ "${1:-}" = "--delete" ] && DELETE=1

say() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "e2e: '$1' is required" >&2; exit 2; }; }
need docker
need kubectl

if [ -z "$CONTEXT" ]; then
  need kind
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
  fi
  CONTEXT="kind-$CLUSTER"
fi
k() { kubectl --context "$CONTEXT" "$@"; }

cleanup() {
  status=$?
  if [ $status -ne 0 ]; then
    say "FAILED; what the cluster says"
    k -n empire get empireconfigs -o wide 2>/dev/null || true
    k -n empire describe empireconfig empire 2>/dev/null | tail -n 30 || true
    k -n empire logs deploy/empire -c operator --tail=50 2>/dev/null || true
    k -n empire logs deploy/empire -c agent --tail=20 2>/dev/null || true
  fi
  if [ $DELETE -eq 1 ] && [ -z "${E2E_CONTEXT:-}" ]; then kind delete cluster --name "$CLUSTER"; fi
  exit $status
}
trap cleanup EXIT

say "building $IMAGE"
docker build -t "$IMAGE" .
if [ -z "${E2E_CONTEXT:-}" ]; then
  kind load docker-image "$IMAGE" --name "$CLUSTER"
else
  docker push "$IMAGE"
fi

say "installing the CRDs"
k apply -k deploy/crds
k apply -k deploy/crds/kopf-peering
k wait --for condition=established --timeout=60s crd/empireconfigs.empire.io crd/kopfpeerings.kopf.dev

say "installing the manifests (kustomize)"
overlay=$(mktemp -d "${PWD}/.e2e-overlay.XXXXXX")
trap 'status=$?; rm -rf "$overlay"; (exit $status); cleanup' EXIT
name=${IMAGE%:*}; tag=${IMAGE##*:}
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources: [../deploy/overlays/default]"
  echo "images: [{name: empire, newName: \"$name\", newTag: \"$tag\"}]"
  if [ -z "$(k api-resources --api-group=monitoring.coreos.com -o name 2>/dev/null)" ]; then
    echo "# no Prometheus Operator in this cluster: leave its objects out"
    echo "patches:"
    for kind in ServiceMonitor PrometheusRule; do
      echo "  - patch: |-"
      echo "      \$patch: delete"
      echo "      apiVersion: monitoring.coreos.com/v1"
      echo "      kind: $kind"
      echo "      metadata: {name: empire, namespace: empire}"
    done
  fi
} > "$overlay/kustomization.yaml"
k apply -k "$overlay"
k -n empire rollout status deploy/empire --timeout="$TIMEOUT"

say "applying the example EmpireConfig"
k apply -f deploy/empireconfig.yaml
k -n empire wait --for=condition=Ready empireconfig/empire --timeout="$TIMEOUT"

say "done"
k -n empire get empireconfigs -o wide
k -n empire get events --field-selector involvedObject.kind=EmpireConfig
version=$(k -n empire get empireconfig empire -o jsonpath='{.status.appliedVersion}')
echo "policy version in force: $version"
