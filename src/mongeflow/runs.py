"""Checkpoints of a fit: written between chunks and on Ctrl-C, read back to resume."""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import numpy as np

from mongeflow.fit import Callback, FitState, Run
from mongeflow.settings import record


def run_record(run: Run) -> dict:
    """What must not change between a fit and its resumption."""
    return {
        "problem": run.problem.name,
        "dim": run.problem.dim,
        "scheme": record(run.scheme),
        "divergence": record(run.divergence),
        "batch_size": run.batch_size,
        "seeds": list(run.seeds),
    }


def differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: saved -> now`` for every entry of two nested records that differs."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class Checkpoint(Callback):
    """A :func:`~mongeflow.fit.fit` callback writing ``state.eqx`` and ``checkpoint.json``
    into ``path`` every ``every`` steps (default: at each history record), at the end and on
    Ctrl-C; with ``resume=True`` the fit starts from the state found there.

    A resumed fit continues exactly as an uninterrupted one would (same map, bit for bit);
    ``steps`` is the total, so a finished fit can also be extended. Resuming with another
    scheme, divergence, batch size or seeds is refused, the differences listed.
    """

    def __init__(self, path, every: int | None = None, resume: bool = False):
        self.path = Path(path)
        self.every = every
        self.resume = resume
        self.saved_at = 0

    def on_start(self, run: Run, state: FitState) -> FitState:
        if self.resume:
            state = self.load(run, state)
        self.saved_at = state.step
        return state

    def on_chunk(self, run: Run, state: FitState) -> None:
        every = self.every or run.log_every
        if state.step - self.saved_at >= every or state.step == run.steps:
            self.save(run, state)

    def on_end(self, run: Run, state: FitState, interrupted: bool) -> None:
        if state.step > self.saved_at or not (self.path / "checkpoint.json").is_file():
            self.save(run, state)

    def save(self, run: Run, state: FitState) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "state.eqx.tmp"
        eqx.tree_serialise_leaves(tmp, (state.potentials, state.states, state.alive))
        tmp.replace(self.path / "state.eqx")  # atomic: a crash mid-write keeps the last one
        meta = {
            "step": int(state.step),
            "run": run_record(run),
            "stopped_at": [int(v) for v in state.stopped_at],
            "history": {k: np.asarray(v).tolist() for k, v in state.history.items()},
        }
        (self.path / "checkpoint.json").write_text(json.dumps(meta))
        self.saved_at = state.step

    def load(self, run: Run, template: FitState) -> FitState:
        meta_file, leaves = self.path / "checkpoint.json", self.path / "state.eqx"
        if not meta_file.is_file() or not leaves.is_file():
            raise ValueError(
                f"{str(self.path)!r} holds no checkpoint (checkpoint.json and state.eqx)"
            )
        meta = json.loads(meta_file.read_text())
        changed = differences(meta["run"], run_record(run))
        if changed:
            raise ValueError(
                f"the checkpoint in {str(self.path)!r} was made with other settings: "
                + "; ".join(changed)
            )
        try:
            potentials, states, alive = eqx.tree_deserialise_leaves(
                leaves, (template.potentials, template.states, template.alive)
            )
        except Exception as err:
            raise ValueError(
                f"the checkpoint in {str(self.path)!r} does not match this map: {err}"
            ) from None
        history = {k: [np.asarray(r) for r in v] for k, v in meta["history"].items()}
        history["step"] = [int(v) for v in meta["history"]["step"]]
        step = int(meta["step"])
        if step > run.steps:
            raise ValueError(f"the checkpoint is at step {step}, beyond steps={run.steps}")
        return FitState(
            potentials, states, alive, step, np.asarray(meta["stopped_at"]), history
        )
