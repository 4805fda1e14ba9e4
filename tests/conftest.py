"""Shared fixtures: an embedded twin per test session (gpu_1x_h100_sxm5) and a factory for other instances."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from checks.twin.lambda_twin import Twin, TwinOptions
from kubetwin.kubelet.kubelet import KubeletConfig

# Tests shorten the crash-loop back-off (10 s → 0.2 s) so restart behaviour is observable quickly.
FAST_KUBELET = KubeletConfig(backoff_initial_s=0.2, backoff_max_s=2.0, prepare_backoff_initial_s=0.1,
                             prepare_backoff_max_s=1.0)


@pytest.fixture(scope="session")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    """A running twin of gpu_1x_h100_sxm5 shared by the whole session (tests use their own namespaces)."""
    t = Twin("gpu_1x_h100_sxm5", run_dir=tmp_path_factory.mktemp("twin"), options=TwinOptions(kubelet=FAST_KUBELET))
    with t:
        yield t


@pytest.fixture
def twin_factory(tmp_path: Path) -> Iterator[Callable[..., Twin]]:
    """Start twins of other instance types; each is stopped at the end of the test."""
    made: list[Twin] = []

    def make(instance: str, **kw: object) -> Twin:
        opts = kw.pop("options", None) or TwinOptions(kubelet=FAST_KUBELET)
        t = Twin(instance, run_dir=tmp_path / f"twin-{len(made)}", options=opts, **kw)  # type: ignore[arg-type]
        made.append(t)
        return t.start()

    yield make
    for t in made:
        t.stop()
