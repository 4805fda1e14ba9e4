"""What a check works with: a :class:`~checks.scenarios.workspace.Workspace` of its own plus the suite's
settings and the data it records for ``results.json``.

A check never talks to a cluster directly; it asks its :class:`CheckContext`, which reaches the cluster only
through :mod:`checks.kube` — the same code path for a real Lambda cluster and for the twin, and the same
operations the notebooks run (:mod:`checks.scenarios`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checks.kube.client import ClusterClient
from checks.scenarios.workspace import Workspace
from checks.suite.settings import SuiteSettings


@dataclass
class CheckContext(Workspace):
    """One check's handle on the cluster: its namespace, the suite settings, its record."""

    settings: SuiteSettings = field(kw_only=True)
    """Suite settings (timeouts, stress sizes, run id)."""
    record: dict[str, Any] = field(default_factory=dict)
    """Data the check wants in results.json (timings, UUIDs, measurements)."""

    @classmethod
    def for_check(cls, cluster: ClusterClient, settings: SuiteSettings, namespace: str,
                  labels: dict[str, str]) -> CheckContext:
        """The context of one check whose namespace the plugin created."""
        return cls(cluster, namespace, labels, settings.run_id, settings.timeout_scale, settings=settings)
