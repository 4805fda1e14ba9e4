"""The node's own ``nvidia-smi`` on a twin: MIG management of the node's emulated GPUs (static MIG, roadmap item 7).

Installed (by :mod:`checks.twin.nvidia.mig_state`) as ``/usr/bin/nvidia-smi`` in the node's emulated host root,
so a privileged pod mounting the host's driver root runs it the way a real node's is run, and it changes the
node's MIG state file (``/var/lib/nvidia-twin/mig-state.json``, the stand-in for the GPUs' MIG configuration)
that the emulated GPU plugin reads when it starts. This file is copied verbatim into the host root and run by
the host's ``/usr/bin/python3`` inside containers, so it uses the standard library only.

Commands (real syntax). Verified against a real H200 (driver 580.159.04, MIG disabled; ``notes/device-h200.md`` and
the issue-13 notes): ``mig -lgip``/``-lgipp`` layout, "No MIG-enabled devices found." (rc 0) for ``-lgi``, ``-lci``,
``-dci``, ``-dgi`` and ``-cgi`` while MIG is off, "No devices were found" (rc 6), the ``--query-gpu`` CSV and its
invalid-field error, ``Option "-x" is not recognized.``, ``--version``. Texts that need MIG mode on (GI/CI
create/destroy lines, ``-lgi`` tables) follow NVIDIA's usual wording and are not verified (docs/twin-fidelity.md):
``-L``; ``--query-gpu=index,name,uuid,pci.bus_id,mig.mode.current,mig.mode.pending --format=csv[,noheader]``;
``[-i N] -mig 0|1``; ``mig [-i N] -lgip | -lgipp | -lgi | -lci | -cgi P[:start][,P…] [-C] | -cci | -dci [-gi
ID] [-ci ID] | -dgi [-gi ID]``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

STATE_REL = "var/lib/nvidia-twin/mig-state.json"
"""Path of the node's MIG state below the driver root."""
_NS = uuid.UUID("3c2b1a09-8f7e-5d6c-9b4a-1e2d3c4b5a69")

Gpu = dict[str, Any]


class SmiError(Exception):
    """Printed to stdout (nvidia-smi prints its errors there) with an exit code."""

    def __init__(self, text: str, code: int = 6) -> None:
        super().__init__(text)
        self.code = code


@contextlib.contextmanager
def locked_state(path: str) -> Iterator[dict[str, Any]]:
    """Read-modify-write the state file under an exclusive lock."""
    with open(path, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        state = json.load(fh)
        yield state
        fh.seek(0)
        fh.truncate()
        json.dump(state, fh, indent=1, sort_keys=True)


def mig_uuid(gpu: Gpu, profile: str, start: int) -> str:
    return "MIG-" + str(uuid.uuid5(_NS, f"{gpu['uuid']}/{profile}@{start}"))


# -- rendering ---------------------------------------------------------------------------------------------------
_BAR = "+" + "-" * 79 + "+"


def _profile(gpu: Gpu, key: str) -> dict[str, Any]:
    for p in gpu["profiles"]:
        if key in (p["name"], f"MIG {p['name']}", str(p["id"])):
            return dict(p)
    raise SmiError(f"Unable to create a GPU instance on GPU {gpu['index']:>2} using profile {key}: Not Found\n"
                   "Failed to create GPU instances: Not Found", 2)


def _used(gpu: Gpu) -> set[int]:
    out: set[int] = set()
    for gi in gpu["gis"]:
        out |= set(range(gi["start"], gi["start"] + gi["size"]))
    return out


def _free_starts(gpu: Gpu, p: dict[str, Any]) -> list[int]:
    used = _used(gpu)
    if p.get("me") and any(_profile(gpu, str(g["profile"])).get("me") for g in gpu["gis"]):
        return []
    return [s for s in p["starts"] if not used & set(range(s, s + p["size"]))]


def _free_count(gpu: Gpu, p: dict[str, Any]) -> int:
    """How many more GIs of ``p`` fit (greedy over its placements, as NVML's remaining capacity)."""
    used = set(_used(gpu))
    n = 0
    for s in p["starts"]:
        slots = set(range(s, s + p["size"]))
        if not used & slots:
            used |= slots
            n += 1
    if p.get("me") and any(_profile(gpu, str(g["profile"])).get("me") for g in gpu["gis"]):
        return 0
    return min(n, int(p["max"]))


def render_lgip(gpus: list[Gpu]) -> str:
    lines = [_BAR, "| GPU instance profiles:" + " " * 56 + "|",
             "| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |",
             "|                                Free/Total   GiB              CE    JPEG  OFA  |",
             "|" + "=" * 79 + "|"]
    for g in gpus:
        for p in g["profiles"]:
            inst = f"{_free_count(g, p) if g['mig_current'] else p['max']}/{p['max']}"
            mem = f"{p['memory_mib'] / 1024:.2f}"
            lines.append(f"|{g['index']:>4}  MIG {p['name']:<15}{p['id']:>3}     {inst:<11}{mem:<11}{'No':<7}"
                         f"{p['sms']:<7}{p['dec']:<6}{p['enc']:<4}|")
            lines.append(f"|{'':63}{p['ce']:<6}{p['jpeg']:<6}{p['ofa']:<4}|")
            lines.append(_BAR)
    return "\n".join(lines) + "\n"


def render_lgipp(gpus: list[Gpu]) -> str:
    out = []
    for g in gpus:
        for p in g["profiles"]:
            word = "Placements" if len(p["starts"]) > 1 else "Placement "
            out.append(f"GPU {g['index']:>2} Profile ID {p['id']:>2} {word}: "
                       f"{{{','.join(str(s) for s in p['starts'])}}}:{p['size']}")
    return "\n".join(out) + "\n"


def render_lgi(gpus: list[Gpu]) -> str:
    rows = [(g, gi) for g in gpus for gi in sorted(g["gis"], key=lambda x: x["id"])]
    if not rows:
        raise SmiError("No GPU instances found: Not Found", 6)
    bar = "+" + "-" * 55 + "+"
    lines = [bar, "| GPU instances:" + " " * 40 + "|",
             "| GPU   Name             Profile  Instance   Placement  |",
             "|                          ID       ID       Start:Size |",
             "|" + "=" * 55 + "|"]
    for g, gi in rows:
        p = _profile(g, str(gi["profile"]))
        place = f"{gi['start']}:{gi['size']}"
        lines.append(f"|{g['index']:>4}  MIG {p['name']:<14}{p['id']:>4}{gi['id']:>9}{place:>13}     |")
        lines.append(bar)
    return "\n".join(lines) + "\n"


def render_lci(gpus: list[Gpu]) -> str:
    rows = [(g, gi, ci) for g in gpus for gi in sorted(g["gis"], key=lambda x: x["id"]) for ci in gi["cis"]]
    if not rows:
        raise SmiError("No compute instances found: Not Found", 6)
    bar = "+" + "-" * 68 + "+"
    lines = [bar, "| Compute instances:" + " " * 49 + "|",
             "| GPU     GPU       Name             Profile   Instance   Placement  |",
             "|       Instance                       ID        ID       Start:Size |",
             "|         ID                                                         |",
             "|" + "=" * 68 + "|"]
    for g, gi, ci in rows:
        p = _profile(g, str(gi["profile"]))
        cname = f"MIG {p['name']}"
        place = f"0:{p['compute']}"
        lines.append(f"|{g['index']:>4}{gi['id']:>8}       {cname:<20}{0:>3}{ci:>10}{place:>12}     |")
        lines.append(bar)
    return "\n".join(lines) + "\n"


def render_list(gpus: list[Gpu]) -> str:
    out = []
    for g in gpus:
        out.append(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})")
        if g["mig_current"]:
            for n, gi in enumerate(sorted(g["gis"], key=lambda x: x["start"])):
                if gi["cis"]:
                    p = _profile(g, str(gi["profile"]))
                    out.append(f"  MIG {p['name']:<11} Device {n:>2}: (UUID: {gi['uuid']})")
    return "\n".join(out) + "\n"


_QUERY: dict[str, Callable[[Gpu], str]] = {
    "index": lambda g: str(g["index"]), "name": lambda g: g["name"], "uuid": lambda g: g["uuid"],
    "pci.bus_id": lambda g: g["bus_id"],
    "mig.mode.current": lambda g: ("Enabled" if g["mig_current"] else "Disabled") if g["mig_capable"] else "[N/A]",
    "mig.mode.pending": lambda g: ("Enabled" if g["mig_pending"] else "Disabled") if g["mig_capable"] else "[N/A]",
}


def render_query(gpus: list[Gpu], fields: list[str], noheader: bool) -> str:
    for f in fields:
        if f not in _QUERY:
            raise SmiError(f'Field "{f}" is not a valid field to query.\n', 2)
    lines = [] if noheader else [", ".join(fields)]
    lines += [", ".join(_QUERY[f](g) for f in fields) for g in gpus]
    return "\n".join(lines) + "\n"


# -- changes -----------------------------------------------------------------------------------------------------
def set_mig_mode(gpus: list[Gpu], on: bool) -> str:
    out = []
    for g in gpus:
        if not g["mig_capable"]:
            out.append(f"Unable to {'enable' if on else 'disable'} MIG Mode for GPU {g['bus_id']}: Not Supported")
            continue
        if not on and g["gis"]:
            raise SmiError(f"Unable to disable MIG Mode for GPU {g['bus_id']}: In use by another client\n"
                           "Terminating early due to previous errors.", 6)
        g["mig_pending"] = on
        if g.get("needs_reset"):
            out.append(f"Warning: MIG mode is in pending {'enable' if on else 'disable'} state for GPU "
                       f"{g['bus_id']}:Not Supported\nReboot the system or try nvidia-smi --gpu-reset to make MIG "
                       f"mode effective on GPU {g['bus_id']}")
        else:
            g["mig_current"] = on
            out.append(f"{'Enabled' if on else 'Disabled'} MIG Mode for GPU {g['bus_id']}")
    return "\n".join(out) + "\nAll done.\n"


def _require_mig(gpus: list[Gpu]) -> list[Gpu]:
    enabled = [g for g in gpus if g["mig_current"]]
    if not enabled:
        raise SmiError("No MIG-enabled devices found.", 0)
    return enabled


def create_gis(gpus: list[Gpu], spec: str, with_ci: bool) -> str:
    out = []
    for g in _require_mig(gpus):
        for item in spec.split(","):
            key, _, start_text = item.strip().partition(":")
            p = _profile(g, key)
            starts = _free_starts(g, p)
            if start_text:
                starts = [s for s in starts if s == int(start_text)]
            if not starts:
                raise SmiError(f"Unable to create a GPU instance on GPU {g['index']:>2} using profile {key}: "
                               "Insufficient Resources\nFailed to create GPU instances: Insufficient Resources", 2)
            gi_id = next(i for i in range(1, 64) if i not in {x["id"] for x in g["gis"]})
            gi = {"id": gi_id, "profile": p["id"], "start": starts[0], "size": p["size"], "cis": [],
                  "uuid": mig_uuid(g, p["name"], starts[0])}
            g["gis"].append(gi)
            out.append(f"Successfully created GPU instance ID {gi_id:>2} on GPU {g['index']:>2} using profile "
                       f"MIG {p['name']} (ID {p['id']:>2})")
            if with_ci:
                gi["cis"].append(0)
                out.append(f"Successfully created compute instance ID {0:>2} on GPU {g['index']:>2} GPU instance ID "
                           f"{gi_id:>2} using profile MIG {p['name']} (ID {0:>2})")
    return "\n".join(out) + "\n"


def _selected_gis(g: Gpu, gi_ids: list[int] | None) -> list[dict[str, Any]]:
    return [gi for gi in g["gis"] if gi_ids is None or gi["id"] in gi_ids]


def destroy_cis(gpus: list[Gpu], gi_ids: list[int] | None) -> str:
    out = []
    for g in _require_mig(gpus):
        for gi in _selected_gis(g, gi_ids):
            for ci in list(gi["cis"]):
                gi["cis"].remove(ci)
                out.append(f"Successfully destroyed compute instance ID {ci:>2} from GPU {g['index']:>2} GPU "
                           f"instance ID {gi['id']:>2}")
    if not out:
        raise SmiError("No compute instances found: Not Found", 6)
    return "\n".join(out) + "\n"


def destroy_gis(gpus: list[Gpu], gi_ids: list[int] | None) -> str:
    out = []
    for g in _require_mig(gpus):
        for gi in _selected_gis(g, gi_ids):
            if gi["cis"]:
                raise SmiError(f"Unable to destroy GPU instance ID {gi['id']:>2} from GPU {g['index']:>2}: In use "
                               "by another client\nFailed to destroy GPU instances: In use by another client", 19)
            g["gis"].remove(gi)
            out.append(f"Successfully destroyed GPU instance ID {gi['id']:>2} from GPU {g['index']:>2}")
    if not out:
        raise SmiError("No GPU instances found: Not Found", 6)
    return "\n".join(out) + "\n"


# -- command line ------------------------------------------------------------------------------------------------
_USAGE = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"


def _pop(args: list[str], *flags: str) -> str | None:
    for f in flags:
        for i, a in enumerate(args):
            if a == f and i + 1 < len(args):
                value = args[i + 1]
                del args[i:i + 2]
                return value
            if a.startswith(f + "="):
                del args[i]
                return a.split("=", 1)[1]
    return None


def _flag(args: list[str], *flags: str) -> bool:
    for f in flags:
        if f in args:
            args.remove(f)
            return True
    return False


def _select(state: dict[str, Any], ids: str | None) -> list[Gpu]:
    gpus: list[Gpu] = state["gpus"]
    if ids is None:
        return gpus
    out = []
    for part in ids.split(","):
        hit = [g for g in gpus if part.strip() in (str(g["index"]), g["uuid"], g["bus_id"])]
        if not hit:
            raise SmiError("No devices were found", 6)
        out += hit
    return out


def run(argv: list[str], state_path: str) -> tuple[int, str]:
    """Execute one command line against the state file; (exit code, output)."""
    args = list(argv)
    try:
        mig_cmd = bool(args) and args[0] == "mig"
        if mig_cmd:
            args = args[1:]
        ids = _pop(args, "-i", "--id")
        with locked_state(state_path) as state:
            gpus = _select(state, ids)
            if args == ["--version"] and gpus:
                drv = str(gpus[0].get("driver", ""))
                return 0, (f"NVIDIA-SMI version  : {drv}\nNVML version        : {'.'.join(drv.split('.')[:2])}\n"
                           f"DRIVER version      : {drv}\nCUDA Version        : {gpus[0].get('cuda', '')}\n")
            if mig_cmd:
                return 0, _mig(gpus, args)
            mode = _pop(args, "-mig", "--multi-instance-gpu")
            if mode is not None and not args:
                if mode not in ("0", "1"):
                    raise SmiError(_USAGE.rstrip(), 2)
                return 0, set_mig_mode(gpus, mode == "1")
            query = _pop(args, "--query-gpu")
            if query is not None:
                fmt = _pop(args, "--format") or ""
                if not fmt.startswith("csv") or args:
                    raise SmiError(_USAGE.rstrip(), 2)
                return 0, render_query(gpus, [f.strip() for f in query.split(",")], "noheader" in fmt)
            if args in (["-L"], ["--list-gpus"]):
                return 0, render_list(gpus)
            raise SmiError(_USAGE.rstrip(), 2)
    except SmiError as exc:
        return exc.code, str(exc) + "\n"


def _mig(gpus: list[Gpu], args: list[str]) -> str:
    gi_text = _pop(args, "-gi", "--gpu-instance-id")
    _pop(args, "-ci", "--compute-instance-id")
    gi_ids = [int(x) for x in gi_text.split(",")] if gi_text else None
    if args == ["-lgip"] or args == ["--list-gpu-instance-profiles"]:
        return render_lgip(gpus)
    if args == ["-lgipp"] or args == ["--list-gpu-instance-possible-placements"]:
        return render_lgipp(gpus)
    if args in (["-lgi"], ["--list-gpu-instances"]):
        return render_lgi(_require_mig(gpus))
    if args in (["-lci"], ["--list-compute-instances"]):
        return render_lci(_require_mig(gpus))
    if args in (["-dci"], ["--destroy-compute-instance"]):
        return destroy_cis(gpus, gi_ids)
    if args in (["-dgi"], ["--destroy-gpu-instance"]):
        return destroy_gis(gpus, gi_ids)
    spec = _pop(args, "-cgi", "--create-gpu-instance")
    if spec is not None:
        with_ci = _flag(args, "-C", "--default-compute-instance")
        if args:
            raise SmiError(_USAGE.rstrip(), 2)
        return create_gis(gpus, spec, with_ci)
    unknown = next((a for a in args if a.startswith("-")), None)
    if unknown is not None:
        raise SmiError(f'Option "{unknown}" is not recognized.', 2)  # observed on the H200 (580.159.04)
    raise SmiError(_USAGE.rstrip(), 2)


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code, text = run(sys.argv[1:], os.path.join(root, STATE_REL))
    sys.stdout.write(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
