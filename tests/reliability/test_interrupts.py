"""Ctrl-C at any moment of ``mongeflow fit``: exit status 130 within two seconds, one line
on stderr and no traceback; once training has started, the last checkpoint is kept and
``--resume`` continues from it.

Each test runs the command for real, in a subprocess, and sends it SIGINT.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a process")

LIMIT_S = 2.0  # from the signal to the exit


def start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "MONGEFLOW_NO_CACHE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def launch(out: Path, *extra: str) -> subprocess.Popen:
    """``mongeflow fit`` on a long 2-D Gaussian problem, as the console script runs it."""
    argv = ["fit", "--problem", "gaussian", "--dim", "2", "--steps", "200000", "--quiet"]
    return start("-m", "mongeflow", *argv, "--out", str(out), *extra)


def interrupt(proc: subprocess.Popen) -> tuple[int, float, str]:
    """SIGINT to ``proc``: its exit status, the seconds it took to exit, its stderr."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running 30 s after SIGINT; stderr:\n{err}")
    return proc.returncode, time.monotonic() - sent, err


def check_clean_exit(code: int, took: float, err: str) -> None:
    assert code == 130, f"exit status {code}; stderr:\n{err}"
    assert took < LIMIT_S, f"exited {took:.2f} s after SIGINT; stderr:\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("mongeflow: interrupted"), err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float, newer_than: float = 0.0):
    """Until ``path`` exists (modified after ``newer_than``), ``proc`` ends or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and path.stat().st_mtime > newer_than:
            return True
        time.sleep(0.05)
    return False


def test_the_command_line_loads_jax_only_after_taking_over_ctrl_c():
    code = "import sys, mongeflow.cli; print(sorted({'jax', 'equinox'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        == "[]\n"
    )


@pytest.mark.parametrize("delay", [0.5, 1.0, 2.0, 5.0])
def test_an_early_interrupt_exits_at_once(tmp_path, delay):
    """While Python starts, JAX loads, the settings are read and the first chunk compiles."""
    out = tmp_path / "run"
    proc = launch(out)
    time.sleep(delay)
    assert proc.poll() is None, proc.communicate()
    check_clean_exit(*interrupt(proc))


@pytest.mark.slow
def test_an_interrupt_during_training_keeps_the_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    checkpoint = out / "checkpoint.bin"
    often = ("--log-every", "200", "--checkpoint-every", "200")  # a short first chunk
    proc = launch(out, *often)
    if not wait_for(checkpoint, proc, timeout=120):
        proc.kill()
        pytest.fail(f"no checkpoint written; stderr:\n{proc.communicate()[1]}")
    time.sleep(0.5)  # into the next chunk
    code, took, err = interrupt(proc)
    check_clean_exit(code, took, err)
    assert checkpoint.is_file()
    saved = checkpoint.stat().st_mtime

    # --resume loads the checkpoint and trains on (a newer checkpoint), then stops again
    proc = launch(out, "--resume", *often)
    if not wait_for(checkpoint, proc, timeout=120, newer_than=saved):
        proc.kill()
        pytest.fail(f"the resumed run wrote no checkpoint; stderr:\n{proc.communicate()[1]}")
    check_clean_exit(*interrupt(proc))


# The watchdog, on a stand-in for training whose main thread drops the KeyboardInterrupt
# (as a garbage-collector callback does) and goes on.
TRAINING = """
import time
from mongeflow import interrupts
with interrupts.handling(), interrupts.training("RUN"):
    ready = False
    while True:
        try:
            if not ready:
                ready = True
                print("training", flush=True)
            time.sleep(10)
        except KeyboardInterrupt:
            pass
"""


# Ctrl-C while a garbage-collector callback runs (JAX has one): an exception raised there
# would be printed ("Exception ignored in ...") and dropped, so none is; the flag stops it.
IN_GC = """
import gc, time
from mongeflow import interrupts
gc.callbacks.append(lambda phase, info: time.sleep(0.2))
with interrupts.handling(), interrupts.training("RUN"):
    try:  # (the signal may come as soon as the line is out)
        print("training", flush=True)
        while not interrupts.requested():
            gc.collect()
    except KeyboardInterrupt:  # the signal came between two collections
        pass
    interrupts.exit_now(130, "mongeflow: interrupted")
"""


def started(proc: subprocess.Popen) -> subprocess.Popen:
    assert proc.stdout.readline() == "training\n", proc.communicate()
    return proc


def test_a_dropped_interrupt_during_training_still_exits():
    code, took, err = interrupt(started(start("-c", TRAINING)))
    check_clean_exit(code, took, err)
    assert took > 0.9, "the process has time to save its state and end by itself"
    assert "mongeflow fit --resume --out RUN" in err.splitlines()[-1]


def test_an_interrupt_inside_a_gc_callback_is_not_dropped():
    check_clean_exit(*interrupt(started(start("-c", IN_GC))))


def test_a_second_interrupt_exits_at_once():
    proc = started(start("-c", TRAINING))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    code, took, err = interrupt(proc)
    check_clean_exit(code, took, err)
    assert took < 0.5


# The main thread inside a long compiled computation, where no Python handler can run.
IN_XLA = """
import jax
from mongeflow import interrupts
step = lambda i, a: a * 1.0000001 + 1e-9
f = jax.jit(lambda x: jax.lax.fori_loop(0, 2_000_000_000, step, x))  # minutes
x = jax.numpy.ones(())
with interrupts.handling(), interrupts.training("RUN"):
    run = f.lower(x).compile()
    told = False
    while True:
        try:  # (the signal may come as soon as the line is out)
            if not told:
                told = True
                print("training", flush=True)
            run(x).block_until_ready()
        except KeyboardInterrupt:  # raised before the computation started: into it again
            pass
"""


def test_an_interrupt_while_xla_runs_exits_after_the_grace_period():
    code, took, err = interrupt(started(start("-c", IN_XLA)))
    check_clean_exit(code, took, err)
    assert "mongeflow fit --resume --out RUN" in err.splitlines()[-1]


# A fit whose KeyboardInterrupt is dropped (as by a garbage-collector callback): the
# callback stops it after the next chunk, through fit's own path (FitInterrupted).
DROPPED_IN_FIT = """
import os, signal, time
import mongeflow as mf
from mongeflow import interrupts

class Drop(mf.Callback):
    def on_chunk(self, run, state):
        if state.step == 100:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                print("dropped", flush=True)

with interrupts.handling():
    callbacks = [interrupts.TrainingCallback("RUN"), Drop()]
    try:
        mf.fit("gaussian", "adam", dim=2, steps=10**6, log_every=100, callbacks=callbacks)
    except mf.FitInterrupted as err:
        print(f"stopped: {err}", flush=True)
        interrupts.exit_now(130)
"""


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_a_fit_whose_interrupt_was_dropped_stops_after_the_next_chunk():
    proc = start("-c", DROPPED_IN_FIT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    dropped, stopped = out.splitlines()
    assert dropped == "dropped", (out, err)
    assert stopped.startswith("stopped: interrupted after step "), (out, err)
    assert 100 < int(stopped.split()[-1]) <= 200, "the next chunk (capped in time) at most"
