"""Catalog: params files, schema errors, the CLI, and upstream Lambda CI selection tags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from checks.catalog import (
    LiveFacts,
    all_instances,
    compute_domains_enabled,
    default_params_dir,
    gpu_models,
    load_instance,
    packaged_params_dir,
    selection_tags,
    validate_params_file,
)
from checks.cli import main
from checks.errors import UsageError
from checks.mig import gpu

REPO = Path(__file__).resolve().parents[1]
EXPECTED_TYPES = {
    "gpu_1x_a10", "gpu_1x_a100_sxm4", "gpu_1x_gh200", "gpu_1x_h100_pcie", "gpu_1x_h100_sxm5",
    "gpu_1x_b200_sxm6", "gpu_8x_v100_n", "gpu_2x_h100_sxm5", "gpu_2x_b200_sxm6", "gpu_8x_a100",
    "gpu_4x_h100_sxm5", "gpu_8x_a100_80gb_sxm4", "gpu_4x_b200_sxm6", "gpu_8x_h100_sxm5", "gpu_8x_b200_sxm6",
}  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "params").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_params_file_validates(path: Path) -> None:
    inst = validate_params_file(path)
    assert inst.instance_type == path.stem


def test_catalog_has_the_15_types_and_the_alias() -> None:
    assert {i.instance_type for i in all_instances(REPO / "params")} == EXPECTED_TYPES
    assert load_instance("gpu_8x_a100_80gb").instance_type == "gpu_8x_a100_80gb_sxm4"
    assert load_instance("gpu_8x_a100_80gb_sxm4").aliases == ["gpu_8x_a100_80gb"]


def test_packaged_copy_is_identical_to_params() -> None:
    canonical = {p.name: p.read_bytes() for p in (REPO / "params").glob("*.yaml")}
    packaged = {p.name: p.read_bytes() for p in packaged_params_dir().glob("*.yaml")}
    assert packaged == canonical, "run: cp params/*.yaml checks/catalog/params/"


def test_default_params_dir_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRA_LAB_PARAMS", raising=False)
    assert default_params_dir() == REPO / "params"
    monkeypatch.setenv("DRA_LAB_PARAMS", str(tmp_path))
    assert default_params_dir() == tmp_path
    monkeypatch.setenv("DRA_LAB_PARAMS", str(tmp_path / "missing"))
    with pytest.raises(UsageError):
        default_params_dir()


def test_unknown_instance_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown instance type 'gpu_3x_nope'"):
        load_instance("gpu_3x_nope")


def test_params_agree_with_the_mig_oracle() -> None:
    """Every MIG geometry key resolves in checks.mig and names the same product as the params' model."""
    for inst in all_instances():
        if inst.gpu.mig_geometry is None:
            assert not inst.gpu.mig_capable
            continue
        geo = gpu(inst.gpu.mig_geometry)
        assert inst.gpu.model in geo.names
        assert geo.architecture == inst.gpu.architecture
        assert geo.compute_capability == inst.gpu.compute_capability
        assert geo.pci_device_id == inst.gpu.pci_device_id
    for model in gpu_models().values():
        if model.mig_geometry is not None:
            assert gpu(model.name).key == model.mig_geometry


# ---------------------------------------------------------------- corrupted copies


def _corrupt(tmp_path: Path, mutate: object) -> Path:
    directory = tmp_path / "params"
    shutil.copytree(REPO / "params", directory)
    path = directory / "gpu_8x_a100.yaml"
    data = yaml.safe_load(path.read_text())
    assert callable(mutate)
    mutate(data)
    path.write_text(yaml.safe_dump(data))
    return directory


def _set(keys: tuple[str, ...], value: object) -> object:
    def mutate(data: dict[str, object]) -> None:
        target: dict[str, object] = data
        for k in keys[:-1]:
            target = target[k]  # type: ignore[assignment]
        target[keys[-1]] = value

    return mutate


def _delete(*keys: str) -> object:
    def mutate(data: dict[str, object]) -> None:
        target: dict[str, object] = data
        for k in keys[:-1]:
            target = target[k]  # type: ignore[assignment]
        del target[keys[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (_set(("gpu", "colour"), "green"), "gpu.colour", "unknown key"),
        (_set(("gpu", "count"), "8"), "gpu.count", "wrong type: expected integer, got str '8'"),
        (_delete("host", "cpu_arch"), "host.cpu_arch", "missing field"),
        (_set(("gpu", "model"), "NVIDIA A100 Imaginary"), "gpu.model", "unknown GPU model 'NVIDIA A100 Imaginary'"),
        (_set(("host", "cpu_arch"), "x86_64"), "host.cpu_arch", "invalid value 'x86_64'"),
        (_set(("gpu", "mig_geometry"), "H100-SXM5-80GB"), "gpu", "mig_geometry is 'H100-SXM5-80GB'"),
    ],
    ids=["unknown-key", "wrong-type", "missing-field", "unknown-model", "bad-literal", "disagrees-with-model"],
)
def test_corrupted_copy_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: object, field: str, reason: str
) -> None:
    directory = _corrupt(tmp_path, mutate)
    with pytest.raises(SystemExit) as exc:
        main(["instances", "--params-dir", str(directory)])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "gpu_8x_a100.yaml" in lines[0]
    assert f"{field}: {reason}" in lines[0]
    assert "Traceback" not in err and "validation error" not in err


def test_file_name_must_match_instance_type(tmp_path: Path) -> None:
    target = tmp_path / "gpu_9x_other.yaml"
    shutil.copy(REPO / "params" / "gpu_8x_a100.yaml", target)
    with pytest.raises(UsageError, match="does not match the file name"):
        validate_params_file(target)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    target = tmp_path / "gpu_8x_a100.yaml"
    target.write_text("instance_type: gpu_8x_a100\ngpu: [unclosed\n")
    with pytest.raises(UsageError) as exc:
        validate_params_file(target)
    assert "invalid YAML" in exc.value.one_line() and "\n" not in exc.value.one_line()


def test_duplicate_alias_is_rejected(tmp_path: Path) -> None:
    directory = _corrupt(tmp_path, _set(("aliases",), ["gpu_8x_a100_80gb"]))
    with pytest.raises(UsageError, match="claimed by both"):
        all_instances(directory)


# ---------------------------------------------------------------- CLI


def test_instances_cli_lists_15_types(capsys: pytest.CaptureFixture[str]) -> None:
    main(["instances"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split()[:3] == ["type", "count", "GPU"]
    assert {line.split()[0] for line in out[1:]} == EXPECTED_TYPES


def test_instances_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["instances", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 15
    a10 = next(d for d in data if d["instance_type"] == "gpu_1x_a10")
    assert a10["selection_tags"] == ["!version-specific", "!multi-gpu", "!gpu-busgrind", "!dynmig"]
    assert a10["gpu"]["mig_geometry"] is None


# ---------------------------------------------------------------- upstream CI selection (upstream-e2e-tests.md §4.2)

UPSTREAM = {
    "gpu_1x_a10": ["!version-specific", "!multi-gpu", "!gpu-busgrind", "!dynmig"],
    "gpu_1x_gh200": ["!version-specific", "!multi-gpu", "!gpu-busgrind"],
    "gpu_1x_h100_pcie": ["!version-specific", "!multi-gpu"],
    "gpu_1x_h100_sxm5": ["!version-specific", "!multi-gpu"],
    "gpu_1x_a100_sxm4": ["!version-specific", "!multi-gpu", "!dynmig"],
    "gpu_8x_a100": ["!version-specific"],
    "gpu_8x_a100_80gb_sxm4": ["!version-specific"],
    "gpu_8x_v100_n": ["!version-specific", "!gpu-busgrind", "!dynmig"],
    "gpu_1x_b200_sxm6": ["!version-specific", "!multi-gpu"],
    "gpu_2x_b200_sxm6": ["!version-specific"],
    "gpu_4x_b200_sxm6": ["!version-specific"],
    "gpu_8x_b200_sxm6": ["!version-specific"],
    "gpu_2x_h100_sxm5": ["!version-specific"],
    "gpu_4x_h100_sxm5": ["!version-specific"],
    "gpu_8x_h100_sxm5": ["!version-specific"],
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_selection_tags_match_upstream(name: str) -> None:
    inst = load_instance(name)
    assert selection_tags(inst) == UPSTREAM[name]
    assert compute_domains_enabled(inst) == ("b200" in name)
    # the params' own CI facts and CD flag agree with what upstream computes
    assert inst.ci.busgrind == ("!gpu-busgrind" not in UPSTREAM[name])
    assert inst.ci.dynmig == ("!dynmig" not in UPSTREAM[name])
    assert inst.ci.never_disable_mig == ("a100" in name)
    assert inst.compute_domains == compute_domains_enabled(inst)


def test_live_facts_override_params() -> None:
    a100x8 = load_instance("gpu_8x_a100")
    # a node that only shows one of the eight GPUs behaves like a single-GPU A100
    assert selection_tags(a100x8, LiveFacts(gpu_count=1)) == ["!version-specific", "!multi-gpu", "!dynmig"]
    # product names from the cluster decide the family globs
    assert selection_tags(a100x8, LiveFacts(product_names=("NVIDIA A10",))) == [
        "!version-specific", "!gpu-busgrind", "!dynmig",
    ]  # fmt: skip
    assert compute_domains_enabled(a100x8, LiveFacts(product_names=("NVIDIA B200",)))
    # Ampere with MIG off offers no DynamicMIG partitions (driver §4.5): dra-lab adds !dynmig
    assert selection_tags(a100x8, LiveFacts(mig_enabled=False)) == ["!version-specific", "!dynmig"]
    assert selection_tags(a100x8, LiveFacts(mig_enabled=True)) == ["!version-specific"]
    h100 = load_instance("gpu_2x_h100_sxm5")
    assert selection_tags(h100, LiveFacts(mig_enabled=False)) == ["!version-specific"]
