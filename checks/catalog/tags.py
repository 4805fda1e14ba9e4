"""Test-selection tags the upstream Lambda CI computes per GPU type, reproduced.

Source: ``upstream-e2e-tests.md`` §4.2 and ``nvidia-dra-driver.md`` §14.4 (``hack/ci/lambda/e2e-test.sh``).
Upstream matches shell globs against the Lambda type name:

* always ``!version-specific``;
* ``!multi-gpu`` when fewer than 2 GPUs;
* ``!gpu-busgrind`` on ``*v100*``, ``*a10`` (suffix: A100 is unaffected), ``*gh200*``;
* ``!dynmig`` on ``*a100*`` with fewer than 2 GPUs; allowed on ``*h100*``/``*gh200*``/``*b200*``;
  added for everything else;
* ComputeDomains enabled only on ``*gb200*``, ``*gb300*``, ``*b200*``.

With :class:`LiveFacts` read from a cluster, the GPU count and the product names replace the params
(the globs are then applied to the lower-cased product names, which contain the same family strings).
One addition beyond upstream, only when live facts say so: an Ampere GPU whose MIG mode is off gets
``!dynmig``, because the driver offers no DynamicMIG partitions on Ampere unless MIG is already on
(``nvidia-dra-driver.md`` §4.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from checks.catalog.schema import Instance, gpu_models

NO_BUSGRIND = ("*v100*", "*a10", "*gh200*")
DYNMIG_OK = ("*h100*", "*gh200*", "*b200*")
DYNMIG_NEEDS_TWO = ("*a100*",)
COMPUTE_DOMAINS = ("*gb200*", "*gb300*", "*b200*")


@dataclass(frozen=True)
class LiveFacts:
    """Facts read from a live cluster; each one given overrides the params file."""

    gpu_count: int | None = None
    """GPUs on the node under test."""
    product_names: tuple[str, ...] | None = None
    """``productName`` attributes of the GPUs (e.g. ``NVIDIA H100 80GB HBM3``)."""
    mig_enabled: bool | None = None
    """Whether MIG mode is on (on any GPU of the node)."""


def _subjects(instance: Instance, live: LiveFacts | None) -> list[str]:
    if live is not None and live.product_names:
        return ["_".join(name.lower().split()) for name in live.product_names]
    return [instance.instance_type.lower()]


def _any(subjects: list[str], patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(s, p) for s in subjects for p in patterns)


def _count(instance: Instance, live: LiveFacts | None) -> int:
    if live is not None and live.gpu_count is not None:
        return live.gpu_count
    return instance.gpu.count


def _architectures(instance: Instance, live: LiveFacts | None) -> set[str]:
    if live is not None and live.product_names:
        models = gpu_models()
        return {models[n].architecture if n in models else "unknown" for n in live.product_names}
    return {instance.gpu.architecture}


def selection_tags(instance: Instance, live: LiveFacts | None = None) -> list[str]:
    """Bats-style filter tags, in upstream's order, for running the suite on ``instance``."""
    subjects = _subjects(instance, live)
    count = _count(instance, live)
    tags = ["!version-specific"]
    if count < 2:
        tags.append("!multi-gpu")
    if _any(subjects, NO_BUSGRIND):
        tags.append("!gpu-busgrind")
    # A100 needs a second GPU (the plugin's NVML session blocks the MIG toggle on the only one).
    dynmig = count >= 2 if _any(subjects, DYNMIG_NEEDS_TWO) else _any(subjects, DYNMIG_OK)
    if dynmig and live is not None and live.mig_enabled is False and "Ampere" in _architectures(instance, live):
        dynmig = False
    if not dynmig:
        tags.append("!dynmig")
    return tags


def compute_domains_enabled(instance: Instance, live: LiveFacts | None = None) -> bool:
    """Whether upstream's Lambda CI would enable ComputeDomains (``DISABLE_COMPUTE_DOMAINS=false``)."""
    return _any(_subjects(instance, live), COMPUTE_DOMAINS)


def filter_expression(tags: list[str]) -> str:
    """Tags joined as upstream passes them in ``TEST_FILTER_TAGS``."""
    return ",".join(tags)
