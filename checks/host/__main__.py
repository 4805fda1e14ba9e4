"""``python -m checks.host [--json] [--out FILE] [--xid-wait S]``: the probe without click, for bare GPU hosts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from checks.host import probe, render


def main(argv: list[str] | None = None) -> int:
    """Probe, then print the summary or JSON; ``--out`` also writes the JSON to a file."""
    parser = argparse.ArgumentParser(prog="python -m checks.host", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument("--xid-wait", type=float, default=1.0, help="seconds to listen for XID events")
    args = parser.parse_args(argv)
    report = probe(xid_wait_s=args.xid_wait)
    text = report.to_json()
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
