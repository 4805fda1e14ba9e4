"""What the runtime assumes of images it does not pull: default argv (ENTRYPOINT/CMD) and reference normalisation.

The twin's kubelet runs containers as local processes, so an image's ENTRYPOINT/CMD is known only from this
table of documented approximations; long-running servers become "sleep forever".
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from kubetwin.kubelet.seam import image_repository

# image repository (no tag) -> default argv when the pod gives neither command nor args.
# Documented approximations of the images' ENTRYPOINT/CMD; long-running servers become "sleep forever".
IMAGE_DEFAULTS: dict[str, list[str]] = {
    "registry.k8s.io/pause": ["sleep", "infinity"],
    "docker.io/library/busybox": ["sh"],
    "docker.io/library/ubuntu": ["/bin/bash"],
    "docker.io/library/debian": ["bash"],
    "docker.io/library/alpine": ["/bin/sh"],
    "docker.io/library/python": ["python3"],
    "docker.io/library/nginx": ["sleep", "infinity"],
    "docker.io/nvidia/cuda": ["/bin/bash"],
    "nvcr.io/nvidia/cuda": ["/bin/bash"],
}


def normalize_image(image: str) -> str:
    """``busybox`` → ``docker.io/library/busybox:latest`` (what containerStatuses[].image shows)."""
    ref = image
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        ref = "docker.io/library/" + ref
    elif "." not in first and ":" not in first and first != "localhost":
        ref = "docker.io/" + ref
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in ref:
        ref += ":latest"
    return ref


def image_default_argv(image: str) -> list[str] | None:
    """The image's default argv when the pod gives neither command nor args (None: unknown image)."""
    return IMAGE_DEFAULTS.get(image_repository(normalize_image(image)))


def quote_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


__all__ = ["IMAGE_DEFAULTS", "image_default_argv", "normalize_image", "quote_argv"]
