"""Wall time of the command line's quick answers: ``--help``, a schema error, an error that needs the architecture.

Each command runs in a fresh interpreter (as a user types it), ``--repeats`` times; the median wall
time is printed with the heavy modules that were imported (checked in the same process, after the
command returned). Goals (issue 10): ``--help`` and a schema error under 2 s, an error that needs the
architecture (an unknown layer) under 5 s, none of them importing Ray.

    python experiments/bench_cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "--help": ["--help"],
    "schema error (search.sampler=annealing)": ["spaces/nin.yaml", "--set", "search.sampler=annealing"],
    "unknown layer (groups.0.layers=conv9z)": ["spaces/nin.yaml", "--set", "groups.0.layers=conv9z"],
}

_PROBE = (
    "import sys, json\n"
    "from search.run import main\n"
    "try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
    "print(json.dumps({{'rc': rc, 'imported': [m for m in ('torch', 'ray', 'optuna') if m in sys.modules]}}), file=sys.stderr)\n"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} runs each, fresh interpreter")
    for label, argv in CASES.items():
        times, info = [], {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            info = json.loads(out.stderr.strip().splitlines()[-1])
        print(f"{label:42s} median {statistics.median(times):5.2f} s (min {min(times):.2f})  exit {info['rc']}  "
              f"imported: {', '.join(info['imported']) or 'none of torch/ray/optuna'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
