#!/usr/bin/env bash
# Prow entry point of the jobs `dra-lab plan prow` generates:
#
#   lambda-e2e.sh dra-lab check --instance TYPE [-m EXPR] [--disruptive] ...
#
# Runs in the job pod with the driver under test as the working directory (the PR checkout for presubmits, the
# driver's main branch for periodics) and kubernetes/test-infra at $GOPATH/src/k8s.io/test-infra (extra_refs).
# 1. provisions one Lambda instance of $GPU_TYPE with test-infra's experiment/lambda library (it also tears the
#    instance down on exit);
# 2. makes it a single-node kubeadm cluster (test-infra's setup-k8s-node.sh, CDI on, DRA gates from K8s 1.35);
# 3. builds the driver image from the working directory on the instance and imports it into containerd;
# 4. copies this project there and runs the given `dra-lab check` command line against that cluster with the
#    driver's own chart from the checkout, then collects outputs/ into $ARTIFACTS.
# The exit code is dra-lab's. Never prints the Lambda key or the kubeconfig.
set -o errexit -o nounset -o pipefail

if [ "${1:-}" != "dra-lab" ]; then
  echo "usage: $0 dra-lab check --instance TYPE [...]" >&2
  exit 2
fi
shift

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DRIVER_DIR="$(pwd)"
TESTINFRA_DIR="$(go env GOPATH)/src/k8s.io/test-infra"
ARTIFACTS="${ARTIFACTS:-/tmp/artifacts}"
REMOTE_DRIVER=/tmp/dra-driver-nvidia-gpu
REMOTE_LAB=/tmp/dra-lab

# shellcheck source=/dev/null
source "${TESTINFRA_DIR}/experiment/lambda/lib/lambda-common.sh"
lambda_init_and_launch

lambda_download_k8s /tmp/k8s-bins ${K8S_VERSION:+"${K8S_VERSION}"}
version="$(/tmp/k8s-bins/kubectl version --client -o json | sed -n 's/.*"gitVersion": *"\(v[^"]*\)".*/\1/p')"
minor="$(echo "${version}" | sed 's/^v1\.\([0-9]*\)\..*/\1/')"
gates=""
if [ "${minor:-0}" -ge 35 ]; then
  gates="DRAExtendedResource=true,DRAPartitionableDevices=true"
fi

lambda_rsync_to /tmp/k8s-bins/ "ubuntu@${LAMBDA_INSTANCE_IP}:/tmp/k8s-bins/"
lambda_rsync_to --exclude=.git --exclude=_output "${DRIVER_DIR}/" "ubuntu@${LAMBDA_INSTANCE_IP}:${REMOTE_DRIVER}/"
lambda_rsync_to --exclude=.git --exclude=.venv --exclude=outputs "${LAB_DIR}/" \
  "ubuntu@${LAMBDA_INSTANCE_IP}:${REMOTE_LAB}/"
lambda_remote env ENABLE_CDI=true ENABLE_DOCKER=true NODE_LABELS=nvidia.com/gpu.present=true \
  KUBEADM_FEATURE_GATES="${gates}" bash -s < "${TESTINFRA_DIR}/experiment/lambda/lib/setup-k8s-node.sh"

lambda_remote bash -s <<EOF
set -euo pipefail
cd ${REMOTE_DRIVER}
docker buildx use default 2>/dev/null || true
make -f deployments/container/Makefile build DOCKER_BUILD_OPTIONS="--load" CI=true
image=\$(make -f deployments/container/Makefile -s print-IMAGE)
docker save "\${image}" | sudo ctr -n k8s.io images import -
EOF

# The job's dra-lab command line, quoted for the remote shell, plus where the cluster and chart are.
args="$(printf '%q ' "$@")"
code=0
lambda_remote bash -s <<EOF || code=$?
set -euo pipefail
cd ${REMOTE_LAB}
bash scripts/setup.sh >/tmp/dra-lab-setup.log 2>&1 || { tail -20 /tmp/dra-lab-setup.log; exit 2; }
export CI=true KUBECONFIG=\$HOME/.kube/config
.venv/bin/dra-lab ${args} --kubeconfig "\$KUBECONFIG" --context "\$(kubectl config current-context)" \
  --chart ${REMOTE_DRIVER}/deployments/helm/dra-driver-nvidia-gpu --output /tmp/dra-lab-out
EOF

lambda_collect_artifacts /tmp/dra-lab-out/ "${ARTIFACTS}/dra-lab" || true
exit "${code}"
