"""Which actions the training data holds, overall and per bin of each true-state dim (the action taken in that
state), so a user sees which actions a dream never saw in which situations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..spec import ActionSpec
from .store import Episode


def action_coverage(episodes: Sequence[Episode], spec: ActionSpec, state_names: Sequence[str] = (), bins: int = 8):
    """Action counts in `episodes`, overall and per bin of each true-state dim (action taken in that state)."""
    acts = [e.act[1:] for e in episodes if len(e) > 1]
    if not acts:
        return None
    a = np.concatenate(acts)
    out: dict[str, Any] = {"kind": spec.kind, "steps": int(len(a))}
    if spec.discrete:
        labels = a.astype(np.int64)
        names = list(spec.names or map(str, range(spec.n)))
        out |= {"names": names, "counts": np.bincount(labels, minlength=spec.n).tolist()}
    else:
        # Box: each dim split into thirds of its range (low / middle / high), counted like discrete choices.
        low, high = np.asarray(spec.low), np.asarray(spec.high)
        third = np.clip(((a - low) / np.maximum(high - low, 1e-8) * 3).astype(int), 0, 2)  # (N, n)
        labels = third[:, 0]
        dim0 = spec.names[0] if spec.names else "action dim 0"
        out |= {"names": [f"{dim0} {t}" for t in ("low", "mid", "high")], "counts": np.bincount(labels, minlength=3)}
        out["counts"] = out["counts"].tolist()
        dim_names = [spec.names[d] if d < len(spec.names) else f"dim {d}" for d in range(spec.n)]
        out["dims"] = [
            {"name": name, "thirds": np.bincount(third[:, d], minlength=3).tolist()} for d, name in enumerate(dim_names)
        ]
    states = [e.state[:-1] for e in episodes if len(e) > 1 and e.state is not None]
    if len(states) == len(acts):
        s = np.concatenate(states)  # the state in which each action was taken
        names = list(state_names) if len(state_names) == s.shape[1] else [f"state {i}" for i in range(s.shape[1])]
        dims = []
        for d in range(s.shape[1]):
            edges = np.linspace(s[:, d].min(), s[:, d].max() + 1e-6, bins + 1)
            idx = np.clip(np.digitize(s[:, d], edges) - 1, 0, bins - 1)
            grid = np.zeros((len(out["names"]), bins), np.int64)
            np.add.at(grid, (labels, idx), 1)
            dims.append({"name": names[d], "edges": [round(float(x), 4) for x in edges], "counts": grid.tolist()})
        out["state"] = dims
    return out
