#!/usr/bin/env bash
# Run the NVIDIA DRA driver's own (upstream) bats suite, unmodified, against a dra-lab twin.
#
# What it does, so a driver maintainer can do the same by hand (README: "Run your own bats suite against a
# twin"):
#   1. starts `dra-lab twin up --instance INSTANCE --kubeconfig OUT/kubeconfig` in the background;
#   2. makes /bats-libraries (the absolute path the upstream bats files load from) point at bats-support and
#      bats-assert from an npm install and at dra-lab's own bats-file stand-in (scripts/bats-file/) —
#      creating /bats-libraries needs root once; without root, create it yourself (see --help);
#   3. puts a `helm` wrapper first on PATH: upstream setup_suite.bash registers the NGC helm repo
#      (`helm repo add nvidia ...` + `helm repo update`), which needs the internet; the wrapper turns exactly
#      that registration into a no-op and runs the real helm for everything else — no upstream file is edited;
#   4. runs bats from the upstream checkout's root (as upstream CI does) with the Lambda CI's TEST_*
#      variables (local chart, driver root /, the no-op `nvmm` of tests/bats/lib/lambda);
#   5. prints per-file pass counts from bats' JUnit report and stops the twin.
#
# The upstream checkout is only read (its chart is installed from its path); nothing of it is copied here.
set -euo pipefail
{  # the whole script is one compound command: bash parses it before running, so editing it mid-run is safe

usage() {
  cat <<'USAGE'
usage: scripts/upstream-bats.sh [options] [BATS_FILE ...]

  --instance NAME     Lambda instance type of the twin (default gpu_8x_a100)
  --upstream DIR      upstream dra-driver-nvidia-gpu checkout, ideally a git clone (test_basics' first test
                      runs `make print-VERSION_W_COMMIT`, which needs git) (default $UPSTREAM or
                      /work/upstream-git/dra-driver-nvidia-gpu)
  --node-modules DIR  npm install of bats, bats-support and bats-assert
                      (`npm install bats bats-support bats-assert`; default $BATS_NODE_MODULES or
                      /work/upstream/node_modules)
  --out DIR           where the kubeconfig, twin log, bats TAP output and JUnit report go
                      (default /tmp/dra-lab-bats-INSTANCE)
  --kube-version V    Kubernetes minor the twin reports (default 1.36)
  --all-basics        also run test_basics' "GPU Operator installed" (not portable: Lambda VMs and twins
                      have no GPU Operator); left out by default
  --mig-enabled GPUS  MIG mode at twin boot: all, none (default) or indexes like 0,1 — Ampere needs it on before
                      DynamicMIG partitions a GPU; run test_gpu_dynmig in its own lane with it, as upstream's
                      tests-gpu-dynmig target does
  --feature-gates G   DRA gates over the Kubernetes version's defaults, e.g. Lambda CI's on 1.35:
                      DRAExtendedResource=true,DRAPartitionableDevices=true
  --filter-tags TAGS  bats --filter-tags (e.g. '!version-specific'); on a twin with fewer than 2 GPUs
                      '!multi-gpu' is added, as upstream Lambda CI does
  -h, --help          this text

BATS_FILE defaults to the GPU files of issue 11, in the upstream Makefile's order:
  test_basics test_gpu_basic test_gpu_extres test_gpu_sharing test_gpu_robustness test_gpu_stress
  test_gpu_dynmig
(names with or without tests/bats/ and .bats). They run in ONE bats invocation because upstream
setup_suite.bash refuses to start while a driver release is installed (the files share one twin).

Without root: create the libraries directory once yourself, e.g.
  sudo mkdir -p /bats-libraries && sudo ln -sfn NODE_MODULES/bats-support /bats-libraries/bats-support \
    && sudo ln -sfn NODE_MODULES/bats-assert /bats-libraries/bats-assert \
    && sudo ln -sfn DRA_LAB/scripts/bats-file /bats-libraries/bats-file
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
instance=gpu_8x_a100
upstream=${UPSTREAM:-/work/upstream-git/dra-driver-nvidia-gpu}
node_modules=${BATS_NODE_MODULES:-/work/upstream/node_modules}
out=""
kube_version=1.36
all_basics=false
filter_tags=""
mig=none
gates=""
files=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --instance) instance=$2; shift 2 ;;
    --upstream) upstream=$2; shift 2 ;;
    --node-modules) node_modules=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kube-version) kube_version=$2; shift 2 ;;
    --all-basics) all_basics=true; shift ;;
    --filter-tags) filter_tags=$2; shift 2 ;;
    --mig-enabled) mig=$2; shift 2 ;;
    --feature-gates) gates=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[[ ${#files[@]} -gt 0 ]] || files=(test_basics test_gpu_basic test_gpu_extres test_gpu_sharing test_gpu_robustness
                                    test_gpu_stress test_gpu_dynmig)
out=${out:-/tmp/dra-lab-bats-${instance}}
upstream=$(cd "$upstream" && pwd)
chart="$upstream/deployments/helm/dra-driver-nvidia-gpu"
[[ -f "$chart/Chart.yaml" ]] || { echo "error: no chart at $chart (is --upstream a driver checkout?)" >&2; exit 2; }
bats_bin="$node_modules/bats/bin/bats"
[[ -x "$bats_bin" ]] || { echo "error: no bats at $bats_bin (see --node-modules)" >&2; exit 2; }
paths=()
for f in "${files[@]}"; do
  f=${f#tests/bats/}; f=${f%.bats}
  [[ -f "$upstream/tests/bats/$f.bats" ]] || { echo "error: no $upstream/tests/bats/$f.bats" >&2; exit 2; }
  paths+=("tests/bats/$f.bats")
done

# -- /bats-libraries --------------------------------------------------------------------------------------
link_lib() {  # <name> <target>
  local want=$2 have
  have=$(readlink -f "/bats-libraries/$1" 2>/dev/null || true)
  [[ "$have" == "$(readlink -f "$want")" ]] && return 0
  if [[ -e "/bats-libraries/$1" && ! -L "/bats-libraries/$1" ]]; then
    echo "note: /bats-libraries/$1 exists and is not ours; using it as it is" >&2; return 0
  fi
  mkdir -p /bats-libraries 2>/dev/null && ln -sfn "$want" "/bats-libraries/$1" 2>/dev/null || {
    echo "error: cannot create /bats-libraries/$1 (needs root once; see --help)" >&2; exit 2; }
}
link_lib bats-support "$node_modules/bats-support"
link_lib bats-assert "$node_modules/bats-assert"
link_lib bats-file "$here/scripts/bats-file"

# -- tools: the real kubectl and helm dra-lab uses, with the helm wrapper in front ------------------------
mkdir -p "$out/bin" "$out/tmp"
rm -f "$out/report.xml" "$out/bats.tap"
dra_lab="$here/.venv/bin/dra-lab"
[[ -x "$dra_lab" ]] || dra_lab=$(command -v dra-lab) || { echo "error: dra-lab not installed" >&2; exit 2; }
tool_path() { "$dra_lab" tools | awk -v t="$1" '$1 == t { print $3 }'; }
real_kubectl=$(tool_path kubectl); real_helm=$(tool_path helm)
[[ -x "$real_kubectl" && -x "$real_helm" ]] || { echo "error: run '$dra_lab tools install' first" >&2; exit 2; }
ln -sfn "$real_kubectl" "$out/bin/kubectl"
cat > "$out/bin/helm" <<HELM
#!/usr/bin/env bash
# Written by dra-lab scripts/upstream-bats.sh: the upstream suite's NGC repo registration needs the internet,
# so 'helm repo add nvidia <url>' and a following 'helm repo update' with no repositories are no-ops here.
if [[ "\${1:-}" == repo && "\${2:-}" == add && "\${3:-}" == nvidia ]]; then
  echo "dra-lab: skipped 'helm repo add nvidia' (no internet; releases are installed from the local chart)" >&2
  exit 0
fi
if [[ "\${1:-}" == repo && "\${2:-}" == update ]]; then
  out=\$("$real_helm" "\$@" 2>&1) && { printf '%s\\n' "\$out"; exit 0; }
  if [[ "\$out" == *"no repositories found"* ]]; then
    echo "dra-lab: skipped 'helm repo update' (no repositories registered)" >&2
    exit 0
  fi
  printf '%s\\n' "\$out" >&2
  exit 1
fi
exec "$real_helm" "\$@"
HELM
chmod +x "$out/bin/helm"

# -- the twin ---------------------------------------------------------------------------------------------
twin_pid=""
stop_twin() {
  if [[ -n "$twin_pid" ]] && kill -0 "$twin_pid" 2>/dev/null; then
    kill -TERM "$twin_pid" 2>/dev/null || true
    wait "$twin_pid" 2>/dev/null || true
  fi
}
trap stop_twin EXIT
rm -f "$out/kubeconfig"
"$dra_lab" twin up --instance "$instance" --kube-version "$kube_version" --mig-enabled "$mig" --feature-gates "$gates" \
  --kubeconfig "$out/kubeconfig" \
  > "$out/twin.log" 2>&1 &
twin_pid=$!
for _ in $(seq 1 600); do  # up to 120 s for the twin to start serving (it prints once it does)
  grep -q "serving at" "$out/twin.log" 2>/dev/null && break
  kill -0 "$twin_pid" 2>/dev/null || { echo "error: the twin exited:" >&2; cat "$out/twin.log" >&2; exit 1; }
  sleep 0.2
done
grep -q "serving at" "$out/twin.log" || { echo "error: the twin did not start in 120 s" >&2; exit 1; }
head -1 "$out/twin.log"

# -- bats -------------------------------------------------------------------------------------------------
version=$(tr -d '[:space:]' < "$upstream/VERSION")
export KUBECONFIG="$out/kubeconfig"
export PATH="$out/bin:$PATH"
export TMPDIR="$out/tmp"
export USER=${USER:-$(id -un)}
export TEST_CHART_LOCAL=true
export TEST_CHART_REPO="deployments/helm/dra-driver-nvidia-gpu"   # relative to the checkout root, as upstream
export TEST_CHART_VERSION="${version#v}"
export TEST_CHART_LASTSTABLE_REPO=${TEST_CHART_LASTSTABLE_REPO:-oci://registry.k8s.io/dra-driver-nvidia/charts/dra-driver-nvidia-gpu}
export TEST_CHART_LASTSTABLE_VERSION=${TEST_CHART_LASTSTABLE_VERSION:-0.4.0}
export TEST_CRD_UPGRADE_TARGET_GIT_REF=${TEST_CRD_UPGRADE_TARGET_GIT_REF:-main}
export TEST_NVIDIA_DRIVER_ROOT=/                                  # Lambda VMs: host driver, no GPU Operator
export TEST_EXPECTED_IMAGE_SPEC_SUBSTRING="$version"
export TEST_GPU_STRESS_PODS_N=${TEST_GPU_STRESS_PODS_N:-12}        # the Makefile's values outside CI
export TEST_GPU_STRESS_ITERATIONS=${TEST_GPU_STRESS_ITERATIONS:-2}
export TEST_GPU_STRESS_DELAY=${TEST_GPU_STRESS_DELAY:-1}
export NVMM_PATH=${NVMM_PATH:-"$upstream/tests/bats/lib/lambda"}  # default: Lambda CI's no-op nvmm; dra-lab's real one: scripts/nvmm
filter=()
$all_basics || filter=(--negative-filter '^basics: GPU Operator installed$')
# Upstream Lambda CI's own rule (hack/ci/lambda/e2e-test.sh): hosts with fewer than 2 GPUs skip `multi-gpu` tests.
gpus=$("$out/bin/kubectl" get nodes -o jsonpath='{.items[0].metadata.labels.nvidia\.com/gpu\.count}')
tags=$filter_tags
if [[ "${gpus:-0}" -lt 2 ]]; then tags=${tags:+$tags,}'!multi-gpu'; fi
[[ -z "$tags" ]] || filter+=(--filter-tags "$tags")
echo "bats: ${paths[*]} (upstream $upstream, chart $TEST_CHART_VERSION, twin $instance, filters: ${filter[*]})"
arch=$("$out/bin/kubectl" get nodes -o jsonpath='{.items[0].metadata.labels.nvidia\.com/gpu\.product}')
if [[ "$mig" == none && "$arch" == *A100* && " ${paths[*]} " == *test_gpu_dynmig* ]]; then
  echo "note: A100s boot with MIG mode off, so DynamicMIG announces no MIG devices here; run test_gpu_dynmig in" \
       "its own lane: $0 --instance $instance --mig-enabled all test_gpu_dynmig"
fi
rc=0
(cd "$upstream" && "$bats_bin" --print-output-on-failure --timing "${filter[@]}" \
   --report-formatter junit --output "$out" "${paths[@]}") > "$out/bats.tap" 2>&1 || rc=$?
stop_twin

# -- per-file counts --------------------------------------------------------------------------------------
counts=()
for p in "${paths[@]}"; do
  counts+=("$(basename "$p")=$(cd "$upstream" && "$bats_bin" --count "${filter[@]}" "$p")")
done
python3 - "$out/report.xml" "$instance" "${counts[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET

path, instance = sys.argv[1], sys.argv[2]
expected = dict(arg.split("=", 1) for arg in sys.argv[3:])  # file -> number of @test it has (after filters)
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError) as exc:
    print(f"no JUnit report ({exc}); see bats.tap")
    sys.exit(0)
suites = {s.get("name"): list(s.iter("testcase")) for s in root.iter("testsuite")}
tot = [0, 0, 0]
for name, want in expected.items():
    cases = [c for c in suites.get(name, []) if c.get("name") != "setup_file failed"]
    failed = [str(c.get("name")) for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [str(c.get("name")) for c in cases if c.find("skipped") is not None]
    passed = len(cases) - len(failed) - len(skipped)
    total = int(want)
    not_run = total - len(cases)  # a failed setup_file runs none of the file's tests
    tot = [tot[0] + passed, tot[1] + total - passed - len(skipped), tot[2] + len(skipped)]
    print(f"{instance} {name}: {passed}/{total} passed"
          + (f", failed: {'; '.join(failed)}" if failed else "")
          + (f", skipped: {'; '.join(skipped)}" if skipped else "")
          + (f", not run: {not_run} (setup_file failed)" if not_run else ""))
print(f"{instance} total: {tot[0]} passed, {tot[1]} failed, {tot[2]} skipped")
PY
echo "details: $out/bats.tap (TAP), $out/report.xml (JUnit), $out/twin.log"
exit "$rc"
}
