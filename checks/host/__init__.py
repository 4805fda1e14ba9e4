"""host layer: read-only probe of this host's NVIDIA GPUs (see checks/__init__.py).

Imports only the stdlib and nvidia-ml-py, so ``python -m checks.host`` runs on a bare GPU host.
"""

from __future__ import annotations

from checks.host.imex import Finding, ImexVerdict, create_channel0, imex_verdict
from checks.host.imex_param import ParamAttempt, try_create_channel0_param
from checks.host.nvml import probe
from checks.host.oracle import Mismatch, compare_with_oracle
from checks.host.report import Daemon, Fabric, GpuPair, Health, HostGpu, HostReport, Imex, MigProfile, NvLink
from checks.host.summary import render

__all__ = [
    "Daemon",
    "Fabric",
    "Finding",
    "GpuPair",
    "Health",
    "HostGpu",
    "HostReport",
    "Imex",
    "ImexVerdict",
    "MigProfile",
    "Mismatch",
    "NvLink",
    "ParamAttempt",
    "compare_with_oracle",
    "create_channel0",
    "imex_verdict",
    "probe",
    "render",
    "try_create_channel0_param",
]
