"""dra-lab: a validation lab for the NVIDIA DRA driver for GPUs on Lambda Cloud instances.

Layers, top to bottom (imports only go downwards; `lint-imports` enforces it):

- ``cli``      — the ``dra-lab`` command.
- ``lab``      — papermill notebooks and reports.
- ``runner``   — targets (a real kubeconfig or an embedded twin) and the suite runner.
- ``suite``    — the pytest checks; reaches clusters only through ``kube``.
- ``twin``     — the embedded cluster: API server, controllers, scheduler, kubelet, NVIDIA driver model.
- ``kube``     — cluster access: client, watch-based waits, retries, kubectl/helm, artifacts.
- ``driver``   — what the NVIDIA DRA driver is: names, labels, values, feature gates, configs, slices.
- ``mig`` · ``host`` · ``catalog`` — MIG geometry oracle, host GPU probe, Lambda instance catalog.
- ``errors``   — the one error type that turns into a one-line message and exit code 2.
"""

__version__ = "0.1.0"
