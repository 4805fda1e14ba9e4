"""The twin's model of the NVIDIA DRA driver: virtual GPUs, our Helm chart, and (phase 2) emulated binaries.

:func:`chart_path` points at ``chart/dra-driver-nvidia-gpu`` — our own chart with the upstream chart's
name, version, values interface and object names (reference nvidia-dra-driver.md §1-§2), shipped as
package data so an installed ``dra-lab`` can ``helm install`` it on a twin.
"""

from __future__ import annotations

from pathlib import Path

CHART_DIR_NAME = "dra-driver-nvidia-gpu"


def chart_path() -> Path:
    """Directory of our driver chart (pass it to ``helm install <release> <path>``)."""
    return Path(__file__).resolve().parent / "chart" / CHART_DIR_NAME


__all__ = ["CHART_DIR_NAME", "chart_path"]
