"""The checks as the suite itself sees them: collected by pytest, never listed by hand.

The planner must not drift from the suite: a check added tomorrow (with its ``needs``, ``driver`` and
``roadmap`` markers) has to appear in the matrix, the cost plan and the Prow jobs without anyone editing a
list. So the inventory runs pytest's own collection of ``checks.suite`` with the suite's plugin (``-p
checks.suite.plugin``, the way ``dra-lab check`` does) in ``--dry-run`` mode — nothing is executed, no
cluster is touched, no results are written — and records, for every collected item, the markers the
plugin decides from. Loading the suite through pytest (a plugin *name*, not an import) keeps the planner
out of the suite's import graph: the lab, which must never import the suite, may import the planner.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass(frozen=True)
class CheckInfo:
    """One collected check and what selection depends on."""

    nodeid: str
    """pytest node id as ``dra-lab check`` prints it (``checks/suite/test_x.py::test_y[param]``)."""
    markers: frozenset[str]
    """Every marker name on the item (module, class and function level): what ``-m`` matches."""
    needs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The merged ``@pytest.mark.needs(...)`` keyword arguments (closest marker wins, as in the plugin)."""
    driver_config: str = "default"
    """Key of the driver configuration the check runs under (one helm install per distinct key and run)."""
    roadmap: tuple[int, ...] = ()
    """Roadmap item numbers the check carries out (``@pytest.mark.roadmap(N, ...)``; roadmap.md)."""

    @property
    def name(self) -> str:
        """``test_x.py::test_y[param]``: the node id without its folder, stable across checkouts/installs."""
        return self.nodeid.rsplit("/", 1)[-1]

    @property
    def function(self) -> str:
        """The test function name with its parameter id, what ``-k`` and humans use."""
        return self.nodeid.rsplit("::", 1)[-1]


class _Recorder:
    """pytest plugin object: records the collected items before the suite's dry-run hook empties the list."""

    def __init__(self) -> None:
        self.checks: list[CheckInfo] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            merged: dict[str, Any] = {}
            for mark in reversed(list(item.iter_markers("needs"))):
                merged.update(mark.kwargs)
            drv = item.get_closest_marker("driver")
            key = str(getattr(drv.args[0], "key", "default")) if drv is not None and drv.args else "default"
            roadmap = sorted({int(a) for m in item.iter_markers("roadmap") for a in m.args})
            self.checks.append(CheckInfo(item.nodeid, frozenset(m.name for m in item.iter_markers()),
                                         merged, key, tuple(roadmap)))


@functools.cache
def collect_checks() -> tuple[CheckInfo, ...]:
    """Every check of the suite, in the suite's run order (grouped by driver configuration)."""
    rec = _Recorder()
    sink = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="dra-lab-plan-") as tmp, contextlib.redirect_stdout(sink):
        code = pytest.main(["-p", "checks.suite.plugin", "--pyargs", "checks.suite", "-p", "no:cacheprovider",
                            "--dry-run", "--output-dir", tmp, "-qq", "--collect-only"], plugins=[rec])
    if int(code) not in (0, 5) or not rec.checks:
        tail = sink.getvalue().strip().splitlines()[-3:]
        raise RuntimeError(f"collecting the check suite failed (pytest exit {int(code)}): {' | '.join(tail)}")
    return tuple(rec.checks)
