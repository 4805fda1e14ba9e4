"""IMEX channel device nodes inside a twin container: what the CD plugin's CDI spec injects (reference §11.4).

A real runtime creates ``/dev/nvidia-caps-imex-channels/channel<N>`` (char device, major of
``nvidia-caps-imex-channels``, minor N, mode 0666) from the claim's CDI edits. Twin containers are host processes
whose ``/dev`` holds only the node's emulated host files (no real char devices), so the node is not created
there; instead the tools installer puts an ``ls`` first on the container's PATH that lists the injected channels
exactly as ``ls`` would (the upstream workloads run ``ls -la /dev/nvidia-caps-imex-channels``) and hands every
other ``ls`` to the real one. A container without channels gets no shim, so ``ls`` fails on the missing
directory as on a node without IMEX channels.
Other ways to look at the nodes (``test -e``, ``stat``) are not emulated (docs/twin-fidelity.md).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checks.driver import computedomains as cd
from kubetwin.kubelet.seam import PreparedDevice, register_tools_installer


@dataclass(frozen=True)
class ImexChannels:
    """The channel nodes a prepared channel device injects (a :class:`PreparedDevice` ``view``)."""

    major: int
    """Major of ``nvidia-caps-imex-channels``."""
    channels: tuple[int, ...]
    """Minors: ``(0,)`` for allocationMode Single, ``0..2047`` for All."""


_SHIM = """#!/bin/sh
# twin: lists the IMEX channel device nodes the compute-domain plugin injected (CDI), else the real ls
d=$(dirname "$0")
dir=__DIR__
long=0; all=0; target=""; other=0
for a in "$@"; do
  case "$a" in
    --) ;;
    -*) case "$a" in *l*) long=1;; esac; case "$a" in *a*) all=1;; esac ;;
    "$dir"|"$dir"/) [ -z "$target" ] && target=dir || other=1 ;;
    "$dir"/channel*) [ -z "$target" ] && target="${a#"$dir"/}" || other=1 ;;
    *) other=1 ;;
  esac
done
if [ -n "$target" ] && [ "$other" = 0 ]; then
  if [ "$target" = dir ]; then
    if [ "$long" = 1 ]; then
      echo "total 0"
      [ "$all" = 1 ] && cat "$d/.imex/dots"
      cat "$d/.imex/long"
    else
      cat "$d/.imex/short"
    fi
    exit 0
  fi
  line=$(grep " $target\\$" "$d/.imex/long")
  if [ -n "$line" ]; then
    if [ "$long" = 1 ]; then echo "${line%channel*}$dir/$target"; else echo "$dir/$target"; fi
    exit 0
  fi
  echo "ls: cannot access '$dir/$target': No such file or directory" >&2
  exit 2
fi
PATH=${PATH#"$d:"} exec ls "$@"
"""


def install_channels(tools_dir: Path, devices: Sequence[PreparedDevice]) -> None:
    """Tools installer: with injected channels, the ``ls`` shim and its listing files; nothing otherwise."""
    # ls sorts by name: channel0, channel1, channel10, …
    minors = sorted({c for d in devices if isinstance(d.view, ImexChannels) for c in d.view.channels},
                    key=lambda m: f"channel{m}")
    if not minors:
        return
    major = next(d.view.major for d in devices if isinstance(d.view, ImexChannels))
    stamp = dt.datetime.now(dt.UTC).strftime("%b %e %H:%M")
    data = tools_dir / ".imex"
    data.mkdir(exist_ok=True)
    (data / "long").write_text("".join(cd.channel_ls_line(major, c, stamp) + "\n" for c in minors))
    (data / "short").write_text("".join(f"channel{c}\n" for c in minors))
    (data / "dots").write_text(f"drwxr-xr-x 2 root root {40 + 20 * len(minors)} {stamp} .\n"
                               f"drwxr-xr-x 7 root root 540 {stamp} ..\n")
    script = tools_dir / "ls"
    script.write_text(_SHIM.replace("__DIR__", cd.CHANNEL_DIR))
    os.chmod(script, 0o755)


def register() -> None:
    """Install the channel view into every container that gets channel devices (idempotent)."""
    register_tools_installer("imex-channels", install_channels)


__all__ = ["ImexChannels", "install_channels", "register"]
