"""The twin's model of the NVIDIA DRA driver: virtual GPUs, our Helm chart, and (phase 2) emulated binaries.

:func:`chart_path` points at ``chart/dra-driver-nvidia-gpu`` — our own chart with the upstream chart's
name, version, values interface and object names (reference nvidia-dra-driver.md §1-§2), shipped as
package data so an installed ``dra-lab`` can ``helm install`` it on a twin.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHART_DIR_NAME = "dra-driver-nvidia-gpu"
LAST_STABLE_VERSION = "0.4.0"
"""The release upstream's upgrade tests start from (``TEST_CHART_LASTSTABLE_VERSION``, reference §1.2)."""


def chart_path() -> Path:
    """Directory of our driver chart (pass it to ``helm install <release> <path>``)."""
    return Path(__file__).resolve().parent / "chart" / CHART_DIR_NAME


def chart_at_version(dest: Path, version: str = LAST_STABLE_VERSION) -> Path:
    """Our chart as release ``version`` (its ``version`` and ``appVersion``), copied under ``dest``.

    The image tag follows ``appVersion`` (``v0.4.0``), and the emulated binaries behave as that release where
    the real releases differ (:func:`checks.twin.nvidia.binaries.release_of`): the twin offers two driver versions,
    so upgrade/downgrade checks run offline against it exactly as against the published charts.
    """
    out = dest / f"{CHART_DIR_NAME}-{version}" / CHART_DIR_NAME
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(chart_path(), out)
    meta = out / "Chart.yaml"
    text = meta.read_text()
    text = re.sub(r'(?m)^version: .*$', f'version: "{version}"', text)
    text = re.sub(r'(?m)^appVersion: .*$', f'appVersion: "{version}"', text)
    meta.write_text(text)
    return out


__all__ = ["CHART_DIR_NAME", "LAST_STABLE_VERSION", "chart_at_version", "chart_path"]
