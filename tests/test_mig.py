"""MIG geometry oracle: facts, fit/why-not, device names, scheduler order, blockers, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from checks.cli import main
from checks.errors import UsageError
from checks.mig import (
    GpuGeometry,
    Placement,
    arrange,
    capacity_ok,
    device_name,
    fits,
    fragmentation_blocker,
    free_placements,
    gpu,
    known_gpus,
    parse_device_name,
    predict_sequence,
    render_slice_map,
    scheduler_order,
    validate_arrangement,
)

# The shared reference sits next to the checkout in the lab workspace; a bare clone has no copy.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mig-geometry.yaml"
MIG_GPUS = known_gpus()
IDS = [g.key for g in MIG_GPUS]


def by_class(geo: GpuGeometry, cls: str) -> str:
    return next(p.name for p in geo.profiles if p.profile_class == cls)


def test_knows_every_gpu_of_the_reference() -> None:
    assert IDS == [
        "A100-SXM4-40GB", "A100-SXM4-80GB", "H100-SXM5-80GB", "H100-PCIe-80GB",
        "GH200-96GB", "H200-SXM5-141GB", "B200-180GB",
    ]  # fmt: skip


def test_lookup_by_nvidia_smi_name_and_errors() -> None:
    assert gpu("NVIDIA H100 80GB HBM3").key == "H100-SXM5-80GB"
    assert gpu("A100-SXM4-40GB").key == "A100-SXM4-40GB"  # R450-era name without the NVIDIA prefix
    assert gpu("nvidia gh200 480gb").key == "GH200-96GB"
    with pytest.raises(UsageError, match="has no MIG"):
        gpu("Tesla V100-SXM2-16GB")
    with pytest.raises(UsageError, match="unknown GPU"):
        gpu("NVIDIA RTX 4090")
    with pytest.raises(UsageError, match="unknown MIG profile"):
        gpu("H100-SXM5-80GB").profile("1g.5gb")


def test_h100_table_is_the_hardware_capture() -> None:
    """Spot values from the real H100 probe (reference §3, observed/h100x1-probe.txt)."""
    h100 = gpu("NVIDIA H100 80GB HBM3")
    rows = {p.name: (p.nvml_id, p.compute_slices, p.memory_slices, p.memory_mib, p.sms, p.max_instances, p.starts)
            for p in h100.profiles}  # fmt: skip
    assert rows["1g.10gb"] == (19, 1, 1, 9984, 16, 7, (0, 1, 2, 3, 4, 5, 6))
    assert rows["1g.20gb"] == (15, 1, 2, 20096, 26, 4, (0, 2, 4, 6))
    assert rows["3g.40gb"] == (9, 3, 4, 40448, 60, 2, (0, 4))
    assert rows["7g.80gb"] == (0, 7, 8, 81152, 132, 1, (0,))
    assert h100.profile("7g.80gb").engines.ce == 8 and h100.profile("1g.10gb+me").engines.ofa == 1


def _captured_memory_mib(names: tuple[str, ...], profile: str) -> set[int]:
    """Memory sizes NVML reported for ``profile`` on a GPU named one of ``names`` in our real probe fixtures."""
    out: set[int] = set()
    for path in (Path(__file__).parent / "fixtures" / "probe").glob("*.json"):
        for g in json.loads(path.read_text())["gpus"]:
            if g["name"] in names:
                out |= {p["memory_mib"] for p in g["mig_profiles"] if p["name"] == profile}
    return out


def test_data_keeps_every_reference_number() -> None:
    """Our data file restructures the reference yaml; every number must survive the rewrite."""
    if not REFERENCE.is_file():
        pytest.skip(f"reference {REFERENCE} not present")
    ref = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
    for g in ref["gpus"]:
        geo = gpu(g["key"])
        assert geo.names == tuple(g["nvidia_smi_names"]) and geo.total_sms == g["total_sms_non_mig"]
        assert geo.pci_device_id == g["pci_device_id"]
        assert [p.name for p in geo.profiles] == [p["name"] for p in g["profiles"]]
        for rp in g["profiles"]:
            p = geo.profile(rp["name"])
            assert (p.nvml_id, p.nvml_profile_index, p.compute_slices, p.memory_slices, p.sms, p.max_instances) == (
                rp["nvml_id"], rp["nvml_profile_index"], rp["compute_slices"], rp["memory_slices"], rp["sms"],
                rp["max_instances"],
            )  # fmt: skip
            assert p.starts == tuple(rp["placements"]["starts"]) and rp["placements"]["size"] == p.memory_slices
            if rp["memory_mb"] is None and not p.memory_estimated:
                # The reference only estimated it; our data carries a real capture instead, which must be the
                # value NVML reported in one of our probe fixtures.
                assert p.memory_mib in _captured_memory_mib(geo.names, rp["name"]), rp["name"]
            else:
                assert p.memory_mib == (rp["memory_mb"] or rp["memory_mb_estimate"])
                assert p.memory_estimated == (rp["memory_mb"] is None)
            eng = rp["engines"]
            assert p.engines_known == (eng["ce"] is not None)
            assert (p.engines.ce, p.engines.dec, p.engines.enc, p.engines.jpeg, p.engines.ofa) == tuple(
                eng[k] or 0 for k in ("ce", "dec", "enc", "jpeg", "ofa")
            )
            assert p.media_extension == bool(rp.get("media_extension"))


# ---------------------------------------------------------------- fit / why not


def test_eight_1g_on_a100_40gb() -> None:
    geo = gpu("A100-SXM4-40GB")
    steps = predict_sequence(geo, 0, ["1g.5gb"] * 8)
    assert [s.placement.start for s in steps[:7] if s.placement] == [0, 1, 2, 3, 4, 5, 6]
    last = steps[7]
    assert last.placement is None and last.result.kind == "over_capacity"
    assert last.result.limit == "compute_slices"
    assert last.result.reason == "7 of 7 compute slices used"


@pytest.mark.parametrize("geo", MIG_GPUS, ids=IDS)
def test_1g_at_0_and_4_blocks_3g_by_fragmentation(geo: GpuGeometry) -> None:
    one, three, four = by_class(geo, "1g"), by_class(geo, "3g"), by_class(geo, "4g")
    occupied = [Placement(one, 0), Placement(one, 4)]
    for blocked in (three, four):
        result = fits(geo, blocked, occupied)
        assert result.kind == "fragmentation", result
        assert not result.fits and result.limit == ""
    # and a different arrangement of the same set fits: the definition of fragmentation
    assert arrange(geo, [one, one, three]) is not None


@pytest.mark.parametrize("geo", MIG_GPUS, ids=IDS)
def test_over_capacity_limits(geo: GpuGeometry) -> None:
    me = by_class(geo, "1g+me")
    assert fits(geo, me, [Placement(me, 0)]).limit == "max_instances"
    three = by_class(geo, "3g")
    # 3g@0 + 3g@4 use all 8 memory slices, 6 compute: a 1g is out of memory, not compute
    result = fits(geo, by_class(geo, "1g"), [Placement(three, 0), Placement(three, 4)])
    assert result.limit == "memory_slices" and result.reason.startswith("8 of 8 memory slices used")
    dbl = by_class(geo, "1g-dbl")
    result = fits(geo, by_class(geo, "7g"), [Placement(dbl, 6)])
    assert result.kind == "over_capacity" and result.limit == "compute_slices"
    assert result.reason == f"1 of 7 compute slices used, {by_class(geo, '7g')} needs 7"


def test_fits_reports_free_placements_in_scheduler_order() -> None:
    geo = gpu("H100-SXM5-80GB")
    result = fits(geo, "2g.20gb", [Placement("3g.40gb", 0)])
    assert result.fits and [p.start for p in result.placements] == [4]
    free = free_placements(geo, [Placement("7g.80gb", 0)])
    assert free == []
    free = free_placements(geo, [Placement("4g.40gb", 0)])
    assert {p.profile for p in free} == {"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb"}
    assert all(p.start >= 4 for p in free)


def test_validate_arrangement_rejects_bad_input() -> None:
    geo = gpu("H100-SXM5-80GB")
    with pytest.raises(UsageError, match="cannot start at memory slice 7"):
        validate_arrangement(geo, [Placement("1g.10gb", 7)])
    with pytest.raises(UsageError, match="overlaps"):
        validate_arrangement(geo, [Placement("3g.40gb", 0), Placement("1g.10gb", 2)])
    validate_arrangement(geo, [Placement("3g.40gb", 0), Placement("2g.20gb", 4), Placement("1g.10gb", 6)])


# ---------------------------------------------------------------- the 28 maximal sets (reference §2)

_MAXIMAL_TEXT = (
    "7x1g 1x1g-dbl+6x1g 1x2g+5x1g 1x2g+1x1g-dbl+4x1g 1x3g+4x1g 2x2g+3x1g 1x4g+3x1g 2x2g+1x1g-dbl+2x1g "
    "1x4g+1x1g-dbl+2x1g 1x3g+1x2g+2x1g 3x2g+1x1g 1x4g+1x2g+1x1g 3x2g+1x1g-dbl 1x4g+1x2g+1x1g-dbl 1x3g+2x2g "
    "1x4g+1x3g 1x7g 2x1g-dbl+4x1g 1x2g+2x1g-dbl+2x1g 1x3g+1x1g-dbl+2x1g 2x2g+2x1g-dbl 1x4g+2x1g-dbl "
    "1x3g+1x2g+1x1g-dbl 2x3g 3x1g-dbl+2x1g 1x2g+3x1g-dbl 1x3g+2x1g-dbl 4x1g-dbl"
)
MAXIMAL = tuple(_MAXIMAL_TEXT.split())


def expand(geo: GpuGeometry, combo: str) -> list[str]:
    out: list[str] = []
    for part in combo.split("+"):
        m = re.fullmatch(r"(\d+)x(.+)", part)
        assert m is not None
        out.extend([by_class(geo, m[2])] * int(m[1]))
    return out


def test_there_are_28_maximal_sets() -> None:
    assert len(MAXIMAL) == len(set(MAXIMAL)) == 28


@pytest.mark.parametrize("geo", MIG_GPUS, ids=IDS)
@pytest.mark.parametrize("combo", MAXIMAL)
def test_maximal_sets_fit_and_are_maximal(geo: GpuGeometry, combo: str) -> None:
    names = expand(geo, combo)
    assert capacity_ok(geo, names)
    placed = arrange(geo, names)
    assert placed is not None, combo
    validate_arrangement(geo, placed)
    # maximal: no further non-+me GI fits next to it (the +me profile is a 1g in disguise)
    leftovers = [p for p in free_placements(geo, placed) if not geo.profile(p.profile).media_extension]
    assert leftovers == [], (combo, leftovers)


# ---------------------------------------------------------------- device names and scheduler order


def test_device_names_follow_the_driver() -> None:
    assert device_name(0, "1g.10gb", 19, 3) == "gpu-0-mig-1g10gb-19-3"
    assert device_name(0, "1g.10gb+me", 20, 0) == "gpu-0-mig-1g10gb-me-20-0"
    assert device_name(7, "7g.80gb", 0, 0) == "gpu-7-mig-7g80gb-0-0"
    with pytest.raises(UsageError):
        parse_device_name("gpu-0")


@pytest.mark.parametrize("geo", MIG_GPUS, ids=IDS)
def test_device_name_round_trip(geo: GpuGeometry) -> None:
    for minor in (0, 3, 12):
        for p in geo.profiles:
            for start in p.starts:
                name = device_name(minor, p.name, p.nvml_id, start)
                parsed = parse_device_name(name)
                assert (parsed.minor, parsed.nvml_id, parsed.start) == (minor, p.nvml_id, start)
                assert parsed.name() == name and parsed.profile(geo) == p


def test_scheduler_order_for_1g_on_a100() -> None:
    geo = gpu("A100-SXM4-40GB")
    order = scheduler_order(geo, 0, "1g.5gb")
    assert order == [f"gpu-0-mig-1g5gb-19-{s}" for s in range(7)]
    assert [parse_device_name(n).start for n in order] == [0, 1, 2, 3, 4, 5, 6]


def test_scheduler_order_is_lexical_not_numeric() -> None:
    """Lexical device order equals numeric start order only for single-digit starts (§4.1); minor 10 vs 2
    sorts lexically too."""
    geo = gpu("H100-SXM5-80GB")
    assert scheduler_order(geo, 10, "3g.40gb") == ["gpu-10-mig-3g40gb-9-0", "gpu-10-mig-3g40gb-9-4"]
    names = sorted([device_name(2, "1g.10gb", 19, 0), device_name(10, "1g.10gb", 19, 0)])
    assert names == ["gpu-10-mig-1g10gb-19-0", "gpu-2-mig-1g10gb-19-0"]


def test_predict_sequence_continues_after_a_failure() -> None:
    geo = gpu("H100-SXM5-80GB")
    steps = predict_sequence(geo, 1, ["1g.10gb", "4g.40gb", "3g.40gb", "1g.10gb"])
    assert [s.device for s in steps] == [
        "gpu-1-mig-1g10gb-19-0", None, "gpu-1-mig-3g40gb-9-4", "gpu-1-mig-1g10gb-19-1",
    ]  # fmt: skip
    assert steps[1].result.kind == "fragmentation"


# ---------------------------------------------------------------- blockers


@pytest.mark.parametrize("geo", MIG_GPUS, ids=IDS)
def test_fragmentation_blocker(geo: GpuGeometry) -> None:
    for p in geo.profiles:
        blocker = fragmentation_blocker(geo, p.name)
        if p.profile_class == "7g":
            assert blocker is None
            continue
        assert blocker is not None, p.name
        validate_arrangement(geo, blocker)
        assert fits(geo, p.name, blocker).kind == "fragmentation"
        # minimal: removing any one GI lets the profile fit
        for i in range(len(blocker)):
            assert fits(geo, p.name, blocker[:i] + blocker[i + 1 :]).fits
    three = fragmentation_blocker(geo, by_class(geo, "3g"))
    assert three is not None and len(three) == 2
    four = fragmentation_blocker(geo, by_class(geo, "4g"))
    assert four is not None and len(four) == 1


# ---------------------------------------------------------------- rendering and CLI


def test_slice_map_merges_wide_gis() -> None:
    geo = gpu("A100-SXM4-40GB")
    text = render_slice_map(geo, [Placement("1g.5gb", 1), Placement("3g.20gb", 4)])
    head, row = text.splitlines()
    assert len(head) == len(row)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells == [".", "1g.5gb", ".", ".", "3g.20gb"]


def test_mig_cli_answer(capsys: pytest.CaptureFixture[str]) -> None:
    main(["mig", "A100-SXM4-40GB", "1g.5gbx8"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "7 fit; #8 over capacity (7 of 7 compute slices used)"
    assert out[2].count("1g.5gb") == 7


def test_mig_cli_json_with_at_and_instance_type(capsys: pytest.CaptureFixture[str]) -> None:
    main(["mig", "gpu_8x_h100_sxm5", "3g.40gb", "--at", "1g.10gb@0,1g.10gb@4", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["gpu"] == "H100-SXM5-80GB"
    assert doc["steps"][0]["kind"] == "fragmentation" and doc["steps"][0]["device"] is None


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["mig", "A10", "1g.5gb"], "has no MIG"),
        (["mig", "gpu_1x_a10", "1g.5gb"], "has no MIG"),
        (["mig", "A100-SXM4-40GB", "1g.10gbx2", "--at", "1g.5gb@7"], "cannot start at memory slice 7"),
        (["mig", "A100-SXM4-40GB", "1g.5gb", "--at", "1g.5gb"], "expected PROFILE@START"),
        (["mig", "A100-SXM4-40GB", "9g.99gb"], "unknown MIG profile"),
    ],
)
def test_mig_cli_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
