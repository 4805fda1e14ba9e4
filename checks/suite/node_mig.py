"""The node's own ``nvidia-smi``, from a privileged pod — static MIG without the GPU Operator (roadmap item 7).

Upstream's static-MIG tests exec into the GPU Operator's ``nvidia-mig-manager``; Lambda runs none. The roadmap's
way instead: a privileged pod pinned to the node that mounts the node's ``/dev`` and its driver root and runs the
node's ``nvidia-smi`` (``chroot`` into the driver root when it is a whole root filesystem, else its
``usr/bin/nvidia-smi``). The same pod shape is what ``scripts/nvmm/nvmm`` uses for the upstream bats files.

MIG mode is never disabled where that needs a GPU reset (A100: pending until reset, upstream issue #883), and a
single A100 is declared unsupported: enabling MIG there needs the reset too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from checks.catalog import Instance
from checks.kube import objects as K
from checks.scenarios import manifests as M
from checks.suite.context import CheckContext

POD = "node-smi"
PATH = "/nvmm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WRAPPER = r"""cat > /nvmm/bin/nvidia-smi <<'EOS'
#!/bin/sh
if [ -x /driver-root/bin/sh ] && [ -x /driver-root/usr/bin/nvidia-smi ]; then
  exec chroot /driver-root /usr/bin/nvidia-smi "$@"
fi
exec /driver-root/usr/bin/nvidia-smi "$@"
EOS
chmod 755 /nvmm/bin/nvidia-smi
echo node-smi ready
exec sleep infinity
"""
UNSUPPORTED_SINGLE_A100 = (
    "static MIG is not supported on a single A100: a MIG-mode change there stays pending until a GPU reset, which "
    "a Lambda VM cannot do while the driver holds its only GPU (upstream issue #883; roadmap item 7: H100/GH200/"
    "B200 single GPU, or 8×A100)")


def unsupported(instance: Instance) -> str | None:
    """Why static MIG cannot run on ``instance`` (None: it can)."""
    if instance.gpu.architecture == "Ampere" and instance.gpu.count == 1:
        return UNSUPPORTED_SINGLE_A100
    return None


def needs_reset(instance: Instance) -> bool:
    """Whether a MIG-mode change on this GPU needs a reset (never disable MIG there)."""
    return instance.gpu.architecture == "Ampere" or instance.ci.never_disable_mig


@dataclass
class NodeSmi:
    """``nvidia-smi`` of one node through a privileged pod in the check's namespace."""

    ctx: CheckContext
    node: str
    instance: Instance

    def start(self) -> NodeSmi:
        root = self.ctx.settings.driver_root
        pod = M.pod(POD, self.ctx.labels, [{
            "name": "smi", "image": "ubuntu:22.04", "securityContext": {"privileged": True},
            "command": ["sh", "-c", WRAPPER],
            "env": [{"name": "PATH", "value": PATH}],
            "volumeMounts": [{"name": "dev", "mountPath": "/dev"}, {"name": "driver-root", "mountPath": "/driver-root"},
                             {"name": "bin", "mountPath": "/nvmm/bin"}],
        }])
        pod["spec"].update({
            "nodeName": self.node, "terminationGracePeriodSeconds": 1, "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}},
                        {"name": "driver-root", "hostPath": {"path": root}},
                        {"name": "bin", "emptyDir": {}}]})
        self.ctx.apply(pod)
        self.ctx.pod_ready(POD, timeout=120)
        K.log_until(self.ctx.cluster, self.ctx.namespace, POD, "smi", lambda t: "node-smi ready" in t,
                    timeout=self.ctx.timeout(30))
        return self

    def run(self, *argv: str) -> tuple[int, str]:
        """Run a command in the pod; (exit code, stdout+stderr)."""
        res = self.ctx.cluster.kubectl("-n", self.ctx.namespace, "exec", POD, "-c", "smi", "--", *argv, check=False)
        return res.returncode, res.stdout + res.stderr

    def smi(self, *args: str) -> str:
        """``nvidia-smi args…``; AssertionError with the output when it fails."""
        code, out = self.run("nvidia-smi", *args)
        assert code == 0, f"nvidia-smi {' '.join(args)} exited {code}: {out}"
        return out

    def create_1g(self) -> str:
        """As upstream's ``mig_create_1g0_on_node``: the first ``1g.<n>gb`` profile of GPU 0, MIG mode on, one GI
        with its default compute instance. Returns the profile name."""
        table = self.smi("mig", "-lgip", "-i", "0")
        m = re.search(r"1g\.[1-9][0-9]*gb", table)
        assert m, f"no 1g profile in:\n{table}"
        query = ("-i", "0", "--query-gpu=index,mig.mode.current", "--format=csv,noheader")
        if "Enabled" not in self.smi(*query):
            self.smi("-i", "0", "-mig", "1")
            if "Enabled" not in self.smi(*query):
                pytest.skip(f"MIG mode on GPU 0 of {self.instance.instance_type} stays pending until a GPU reset; "
                            "enable it at boot (twin: --twin-mig 0)")
        self.smi("mig", "-cgi", m.group(0), "-C")
        return m.group(0)

    def teardown(self) -> None:
        """Destroy compute and GPU instances; disable MIG mode unless that needs a reset."""
        self.run("nvidia-smi", "mig", "-dci")
        self.run("nvidia-smi", "mig", "-dgi")
        if not needs_reset(self.instance):
            self.run("nvidia-smi", "-mig", "0")


__all__ = ["UNSUPPORTED_SINGLE_A100", "NodeSmi", "needs_reset", "unsupported"]
