"""Lambda Cloud instance catalog: one typed params file per instance type, and the CI tags derived from it.

Where params live (``default_params_dir``):

1. ``$DRA_LAB_PARAMS`` when set (a directory of ``<type>.yaml`` files);
2. the checkout's ``params/`` when running from a source tree — this is the **canonical** copy people edit;
3. ``checks/catalog/params/`` inside the installed package, a byte-identical copy shipped so an installed
   ``dra-lab`` works without a checkout. ``tests/test_catalog.py`` fails when the two copies differ
   (fix: ``cp params/*.yaml checks/catalog/params/``). Copies, not symlinks, because wheels and some
   filesystems drop symlinks.

Public API: :class:`Instance` (pydantic model), :func:`load_instance`, :func:`all_instances`,
:func:`default_params_dir`, :func:`validate_params_file`, :func:`selection_tags`, :class:`LiveFacts`,
:func:`compute_domains_enabled`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from checks.catalog.schema import Ci, Gpu, GpuModel, Host, Instance, Interconnect, condense, gpu_models
from checks.catalog.tags import LiveFacts, compute_domains_enabled, filter_expression, selection_tags
from checks.errors import UsageError

ENV_PARAMS = "DRA_LAB_PARAMS"
_PACKAGE_PARAMS = Path(__file__).resolve().parent / "params"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "ENV_PARAMS",
    "Ci",
    "Gpu",
    "GpuModel",
    "Host",
    "Instance",
    "Interconnect",
    "LiveFacts",
    "all_instances",
    "compute_domains_enabled",
    "default_params_dir",
    "filter_expression",
    "gpu_models",
    "load_instance",
    "packaged_params_dir",
    "selection_tags",
    "validate_params_file",
]


def packaged_params_dir() -> Path:
    """The copy of the params shipped inside the package."""
    return _PACKAGE_PARAMS


def default_params_dir() -> Path:
    """``$DRA_LAB_PARAMS``, else the checkout's ``params/``, else the packaged copy (see module doc)."""
    env = os.environ.get(ENV_PARAMS)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise UsageError(f"{path} is not a directory", where=f"${ENV_PARAMS}")
        return path
    checkout = _CHECKOUT_ROOT / "params"
    if checkout.is_dir() and (_CHECKOUT_ROOT / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE_PARAMS


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def validate_params_file(path: str | Path) -> Instance:
    """Read and validate one params file; UsageError with one line (file, field, reason) if it is bad.

    Beyond the schema, the file name must be ``<instance_type>.yaml`` so that ``load_instance`` can find a
    type without reading every file.
    """
    path = Path(path)
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read params file ({exc.strerror})", where=where) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{line}invalid YAML ({problem})", where=where) from None
    if not isinstance(data, dict):
        raise UsageError(f"expected a mapping at top level, got {type(data).__name__}", where=where)
    try:
        instance = Instance.model_validate(data)
    except ValidationError as exc:
        raise UsageError(condense(exc), where=where) from None
    if path.stem != instance.instance_type:
        raise UsageError(
            f"instance_type: {instance.instance_type!r} does not match the file name {path.name!r}", where=where
        )
    return instance


def _files(params_dir: Path) -> list[Path]:
    if not params_dir.is_dir():
        raise UsageError(f"{params_dir} is not a directory", where="params dir")
    return sorted(params_dir.glob("*.yaml"))


def all_instances(params_dir: Path | None = None) -> list[Instance]:
    """Every instance type in ``params_dir``, validated, sorted by GPU count then name.

    Also rejects a name or alias claimed by two files, since names must resolve to one type.
    """
    directory = params_dir or default_params_dir()
    instances = [validate_params_file(p) for p in _files(directory)]
    seen: dict[str, str] = {}
    for inst in instances:
        for name in inst.names:
            if name in seen and seen[name] != inst.instance_type:
                raise UsageError(
                    f"aliases: {name!r} is claimed by both {seen[name]} and {inst.instance_type}",
                    where=_display(directory / f"{inst.instance_type}.yaml"),
                )
            seen[name] = inst.instance_type
    return sorted(instances, key=lambda i: (i.gpu.count, i.instance_type))


def load_instance(name_or_alias: str, params_dir: Path | None = None) -> Instance:
    """The instance type called ``name_or_alias`` (type name or alias); UsageError listing choices if unknown."""
    directory = params_dir or default_params_dir()
    direct = directory / f"{name_or_alias}.yaml"
    if "/" not in name_or_alias and direct.is_file():
        return validate_params_file(direct)
    instances = all_instances(directory)
    for inst in instances:
        if name_or_alias in inst.names:
            return inst
    choices = ", ".join(i.instance_type for i in instances)
    raise UsageError(f"unknown instance type {name_or_alias!r} (known: {choices})", where="instance type")
