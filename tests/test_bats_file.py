"""Our bats-file stand-in (scripts/bats-file/load.bash) under the real bats: assertions pass and fail as documented.

Needs an npm install of bats and bats-support (BATS_NODE_MODULES, default /work/upstream/node_modules); skipped
without one, since neither is a Python package.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = Path(os.environ.get("BATS_NODE_MODULES", "/work/upstream/node_modules"))

SUITE = """
setup() {
  load '%(support)s/load.bash'
  load '%(file)s/load.bash'
}

@test "passing assertions" {
  d=$(temp_make --prefix t-)
  echo "main.RunPlugin" > "$d/dump"
  assert_dir_exists "$d"
  assert_file_exists "$d/dump"
  assert_file_not_empty "$d/dump"
  assert_file_contains "$d/dump" 'main\\.Run[A-Z]'
  assert_file_not_exists "$d/nope"
  temp_del "$d"
  assert_not_exists "$d"
}

@test "a failing assertion says what it checked" {
  run assert_file_exists /no/such/file
  [ "$status" -eq 1 ]
  [[ "$output" == *"file does not exist"* ]]
  [[ "$output" == *"/no/such/file"* ]]
}
"""


def test_bats_file_stand_in(tmp_path: Path) -> None:
    bats = NODE_MODULES / "bats" / "bin" / "bats"
    if not bats.exists() or not (NODE_MODULES / "bats-support").is_dir():
        pytest.skip(f"no bats/bats-support under {NODE_MODULES}")
    suite = tmp_path / "t.bats"
    suite.write_text(SUITE % {"support": NODE_MODULES / "bats-support", "file": REPO / "scripts" / "bats-file"})
    r = subprocess.run([str(bats), "--tap", str(suite)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "1..2" and r.stdout.count("\nok ") == 2
