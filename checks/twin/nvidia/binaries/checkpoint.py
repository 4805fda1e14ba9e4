"""The GPU plugin's checkpoint as a real file: ``<pluginsDir>/gpu.nvidia.com/checkpoint.json`` (reference §6.1).

Layout as the real plugin writes it (upstream ``checkpoint.go``/``checkpointv.go``, facts only): a top-level
``checksum`` (of the V1 view), ``v1`` ``{preparedClaims: {uid: {status, preparedDevices}}}`` with only the
``PrepareCompleted`` claims (kept so older binaries can read it), and ``v2`` ``{checksum, preparedClaims: {uid:
{checkpointState, status, preparedDevices, name, namespace}}, nodeBootID}``. Every write re-marshals both and sets
both checksums; every read verifies both. A checksum mismatch is the real plugin's ``CorruptCheckpointError``:
it logs :data:`checks.driver.logs.CHECKSUM_DIFF` with a unified diff of the on-disk JSON against what the
current binary re-marshals, and the plugin fails to start (``unable to get checkpoint: …``) — the container
crash-loops until the file is fixed or removed.

Start-up (``NewDeviceState``): no file → ``Create empty checkpoint``; a file without boot id (written by a
release before boot ids) → adopt the current one; a different boot id (the node rebooted) → ``Invalidating
checkpoint …`` and an empty one. The boot id comes from :func:`.host.boot_id` (on a twin the Node's
``status.nodeInfo.bootID``, which a twin reboot changes).

Twin difference: the checksum is FNV-32a over the marshalled JSON; the kubelet's checksum package hashes a Go
``%#v`` rendering of the same bytes, so the numbers differ from a real node's (the verification logic is the same).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.driver import logs

PREPARE_STARTED = "PrepareStarted"
PREPARE_COMPLETED = "PrepareCompleted"


class CorruptCheckpoint(Exception):
    """The file parsed but a checksum does not verify."""


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _marshal(obj: Any) -> bytes:
    """Go's ``json.Marshal``: compact, keys in struct order (we keep insertion order, which mirrors it)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _v1_of(v2: dict[str, Any]) -> dict[str, Any]:
    claims = {uid: {"status": c.get("status") or {}, "preparedDevices": c.get("preparedDevices")}
              for uid, c in (v2.get("preparedClaims") or {}).items()
              if c.get("checkpointState") == PREPARE_COMPLETED}
    return {"preparedClaims": claims} if claims else {}


def marshal(v2: dict[str, Any]) -> bytes:
    """The file content for ``v2`` (both versions, both checksums), as ``MarshalCheckpoint``."""
    # CheckpointV2's fields in struct order (checksum, preparedClaims, nodeBootID; both omitempty). Unknown keys a
    # hand-edited file carried are dropped, as Go's json.Unmarshal into the struct drops them.
    ordered: dict[str, Any] = {"checksum": 0}
    if v2.get("preparedClaims"):
        ordered["preparedClaims"] = v2["preparedClaims"]
    if v2.get("nodeBootID"):
        ordered["nodeBootID"] = v2["nodeBootID"]
    v2 = ordered
    v2["checksum"] = fnv32a(_marshal(v2))
    top: dict[str, Any] = {"checksum": 0, "v1": _v1_of(v2)}
    top["checksum"] = fnv32a(_marshal(top))
    top["v2"] = v2
    return _marshal(top)


def verify(doc: dict[str, Any]) -> bool:
    """Both checksums match the content (``VerifyChecksum``)."""
    top = {"checksum": 0, **({"v1": doc["v1"]} if "v1" in doc else {})}
    if fnv32a(_marshal(top)) != int(doc.get("checksum") or 0):
        return False
    v2 = doc.get("v2")
    if v2 is None:
        return True
    ck = int(v2.get("checksum") or 0)
    return fnv32a(_marshal({**v2, "checksum": 0})) == ck


def latest(doc: dict[str, Any]) -> dict[str, Any]:
    """``ToLatestVersion``: v2 as is, or v1 converted (every v1 claim is ``PrepareCompleted``)."""
    if doc.get("v2") is not None:
        v2 = dict(doc["v2"])
    elif doc.get("v1") is not None:
        v2 = {"preparedClaims": {uid: {"checkpointState": PREPARE_COMPLETED, **c}
                                 for uid, c in (doc["v1"].get("preparedClaims") or {}).items()}}
    else:
        v2 = {}
    v2.setdefault("preparedClaims", {})
    return v2


@dataclass
class CheckpointFile:
    """Read-verify-mutate-write access to one checkpoint file."""

    path: Path
    """The real file (through the container's view of the host path)."""
    log: Callable[[logs.LogLine], None]
    """Where the plugin's log lines go."""

    def read(self) -> dict[str, Any]:
        """The checkpoint as V2; :class:`CorruptCheckpoint` (after logging the diff) when it does not verify."""
        raw = self.path.read_bytes()
        doc = json.loads(raw)
        if not verify(doc):
            ondisk = json.dumps(json.loads(raw), indent=2).splitlines(keepends=True)
            remarshaled = json.dumps(json.loads(marshal(latest(doc))), indent=2).splitlines(keepends=True)
            diff = "".join(difflib.unified_diff(ondisk, remarshaled, "on-disk", "re-marshaled", n=3))
            self.log(logs.LogLine(0, f"{logs.CHECKSUM_DIFF}\n{diff}", "device_state.go", 777, "E"))
            raise CorruptCheckpoint("checkpoint is corrupted")
        return latest(doc)

    def write(self, v2: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(marshal(v2))
        tmp.replace(self.path)

    def open(self, boot_id: str) -> dict[str, Any]:
        """Start-up as ``NewDeviceState``: keep, adopt a boot id, or start empty; returns the V2 content."""
        if self.path.exists():
            cp = self.read()
            stored = str(cp.get("nodeBootID") or "")
            if not stored:
                cp["nodeBootID"] = boot_id
                self.write(cp)
                return cp
            if stored == boot_id:
                return cp
            self.log(logs.checkpoint_invalidated(stored, boot_id))
        self.log(logs.checkpoint_created())
        fresh: dict[str, Any] = {"preparedClaims": {}, "nodeBootID": boot_id}
        self.write(fresh)
        return fresh


__all__ = ["PREPARE_COMPLETED", "PREPARE_STARTED", "CheckpointFile", "CorruptCheckpoint", "latest", "marshal",
           "verify"]
