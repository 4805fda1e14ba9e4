"""Secret hygiene for lab outputs: what must never appear in an executed notebook, and the scan for it.

Notebooks get a kubeconfig *path*; this module is the safety net that proves nothing leaked anyway (a cell
that prints a client's configuration, an exception that echoes a header). Secrets are the credential values
of the kubeconfig (token, client key, client certificate, password), the rest of its embedded data (CA),
and environment variables that look like credentials (``*TOKEN*``, ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

MIN_SECRET_LEN = 8
"""Shorter values are too likely to occur by chance (and too weak to matter)."""
PREFIX_LEN = 24
"""A leaked prefix this long counts too (outputs are sometimes truncated)."""
_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY", re.IGNORECASE)
_USER_FIELDS = ("token", "client-key-data", "client-certificate-data", "password")
_CLUSTER_FIELDS = ("certificate-authority-data",)


def kubeconfig_secrets(path: Path) -> list[str]:
    """Credential and embedded-data values of a kubeconfig (empty when unreadable)."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    out: list[str] = []
    if not isinstance(data, dict):
        return out
    for section, key, fields in (("users", "user", _USER_FIELDS), ("clusters", "cluster", _CLUSTER_FIELDS)):
        for entry in data.get(section) or []:
            body = (entry or {}).get(key) or {} if isinstance(entry, dict) else {}
            for f in fields:
                value = body.get(f) if isinstance(body, dict) else None
                if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
                    out.append(value)
    return out


def env_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they are credentials."""
    env = os.environ if env is None else env
    return [v for k, v in env.items() if _ENV_NAME.search(k) and len(v) >= MIN_SECRET_LEN]


def _needles(secrets: Iterable[str]) -> list[str]:
    out = set()
    for s in secrets:
        s = s.strip()
        if len(s) < MIN_SECRET_LEN:
            continue
        out.add(s)
        if len(s) > PREFIX_LEN:
            out.add(s[:PREFIX_LEN])
    return sorted(out, key=len, reverse=True)


def scan(folder: Path, secrets: Iterable[str]) -> list[Path]:
    """Files under ``folder`` that contain any secret (or a long prefix of one)."""
    needles = _needles(secrets)
    if not needles:
        return []
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles):
            hits.append(path)
    return hits


def redact(path: Path, secrets: Iterable[str], mark: str = "<redacted>") -> None:
    """Replace every secret (and prefix) in a text file so nothing is persisted even after a leak."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    for n in _needles(secrets):
        text = text.replace(n, mark)
    path.write_text(text)


__all__ = ["env_secrets", "kubeconfig_secrets", "redact", "scan"]
