"""`mongeflow fit` that saves the game's end, or starts from a saved one: the descent after
the game measured several ways from one game.

``BRANCH=save:FILE`` (with ``--finish-steps 0``): at the end, φ and ψ are written to FILE
(Equinox's leaf serialisation, read back by a template: data, not code).
``BRANCH=load:FILE``: the fit starts at step ``decay_steps`` with φ and ψ read from FILE (the
descent's own state fresh), so only the descent after the game runs. The data and every other
setting must be those of the saved run. ``MF_NEWTON=k`` sets ``SemiDual.finish_newton``.

    PYTHON=./branch-python BRANCH=save:/tmp/g8.eqx FLAGS="--finish-steps 0" bash ../cli/run.sh 8
    PYTHON=./branch-python BRANCH=load:/tmp/g8.eqx FLAGS="--finish-steps 2000" bash ../cli/run.sh 8

(``branch-python`` runs this file for ``-m mongeflow fit`` and Python otherwise.)
"""

import os
import sys

import equinox as eqx
import jax.numpy as jnp

from mongeflow import runs
from mongeflow.cli import main
from mongeflow.loop import Callback
from mongeflow.schemes import SemiDual

MODE, PATH = os.environ["BRANCH"].split(":", 1)
if os.environ.get("MF_NEWTON"):
    SemiDual.finish_newton = int(os.environ["MF_NEWTON"])


class Save(Callback):
    def on_end(self, run, state, interrupted):
        eqx.tree_serialise_leaves(PATH, (state.potentials, state.states.dual))


class Load(Callback):
    def on_start(self, run, state):
        template = (state.potentials, state.states.dual)
        potentials, dual = eqx.tree_deserialise_leaves(PATH, template)
        decay = run.scheme.decay_steps
        step = jnp.full_like(state.states.step, decay)
        states = state.states._replace(dual=dual, step=step)
        return state._replace(potentials=potentials, states=states, step=decay)


_callbacks = runs.callbacks


def callbacks(settings, out, *, resume, quiet):
    made = _callbacks(settings, out, resume=resume, quiet=quiet)
    return [Load(), *made] if MODE == "load" else [*made, Save()]


runs.callbacks = callbacks
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
