"""Keep every checkpoint a training run saves, for curves along one run (quality against CPU-minutes).

    wm train ... --out runs/pong --save-every 1000 &
    python scripts/keep_checkpoints.py runs/pong            # copies each save to runs/pong-steps/step-N/

`wm train` overwrites its checkpoint at each `--save-every`; this watches the run directory and copies each new
save (its checkpoint.json and the weight files it names, not the data) into RUN-steps/step-N, where
`wm eval` and `scripts/object_strips.py` read it like any run. It stops when the training process has written
its last save and gone quiet for `--idle` seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def copy_save(run: Path, out_root: Path) -> Path | None:
    """Copy the run's current checkpoint (if complete and not copied yet) to out_root/step-N."""
    try:
        meta = json.loads((run / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return None  # not written yet, or mid-write
    dest = out_root / f"step-{int(meta['step'])}"
    if dest.exists():
        return None
    files = [meta[k]["file"] for k in ("weights", "optimizer") if isinstance(meta.get(k), dict)]
    tmp = out_root / f".step-{int(meta['step'])}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in files:
        shutil.copy2(run / name, tmp / name)
    (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=1))
    if json.loads((run / "checkpoint.json").read_text()).get("step") != meta["step"]:
        shutil.rmtree(tmp)  # a newer save landed while copying: take that one next time
        return None
    tmp.rename(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--every", type=float, default=20.0, help="seconds between looks")
    p.add_argument("--idle", type=float, default=1800.0, help="stop after this long without a new save")
    args = p.parse_args(argv)
    out_root = args.run.with_name(args.run.name + "-steps")
    last = time.monotonic()
    while time.monotonic() - last < args.idle:
        if (dest := copy_save(args.run, out_root)) is not None:
            print(f"kept {dest}", flush=True)
            last = time.monotonic()
        time.sleep(args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
