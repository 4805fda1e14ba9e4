"""Run ids, labels and per-check namespace names: shapes that the API server will accept, and uniqueness."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.errors import UsageError
from checks.kube.labels import (
    CHECK_LABEL,
    RUN_ID_LABEL,
    check_label_value,
    labels_for,
    namespace_name,
    new_run_id,
    run_selector,
)

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
RUN = "r20261126-175800-ab12"


def test_run_id_is_utc_timestamp_plus_token() -> None:
    local = datetime(2026, 11, 26, 18, 58, 0, tzinfo=timezone(timedelta(hours=1)))
    assert new_run_id(now=lambda: local, token=lambda: "ab12") == RUN


def test_run_ids_sort_by_time_and_are_dns_safe() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [new_run_id(now=lambda i=i: t0 + timedelta(seconds=61 * i)) for i in range(5)]
    assert ids == sorted(ids)
    assert all(DNS1123.match(i) and len(i) == 21 for i in ids)
    assert len({new_run_id() for _ in range(50)}) > 1  # the random token separates runs started together


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_namespace_names_are_valid_dns_labels_for_any_check_name(check: str) -> None:
    name = namespace_name(RUN, check)
    assert len(name) <= 63 and DNS1123.match(name)
    assert name.endswith(f"-{RUN}")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=60, max_size=120),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=5))
def test_long_check_names_that_differ_only_at_the_end_stay_distinct(prefix: str, tail: str) -> None:
    a, b = prefix + tail, prefix + tail + "x"
    assert namespace_name(RUN, a) != namespace_name(RUN, b)
    assert check_label_value(a + "y" * 40) != check_label_value(b + "y" * 40)


def test_short_check_names_are_readable() -> None:
    assert namespace_name(RUN, "test_gpu_basic[shared-claim]") == f"test-gpu-basic-shared-claim-{RUN}"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=150))
def test_check_label_values_are_valid(check: str) -> None:
    value = labels_for(RUN, check)[CHECK_LABEL]
    assert len(value) <= 63 and LABEL_VALUE.match(value) and value


def test_labels_and_selectors() -> None:
    assert labels_for(RUN) == {RUN_ID_LABEL: RUN}
    assert run_selector(RUN) == f"{RUN_ID_LABEL}={RUN}"
    assert run_selector(None) == RUN_ID_LABEL  # existence: every run


@pytest.mark.parametrize("bad", ["", "r2026", "R20261126-175800-ab12", "r20261126-175800-AB12",
                                 "x,dra-lab.io/run-id", "r20261126-175800-ab12,a=b"])
def test_malformed_run_ids_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        run_selector(bad)
    with pytest.raises(UsageError):
        namespace_name(bad, "c")
