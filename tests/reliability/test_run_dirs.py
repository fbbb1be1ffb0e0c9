"""Run directories and saved maps are data, never code, and cannot be corrupted: each test
reproduces one way a run directory could run code, read outside itself, train on other
data, delete what is not a run, be written by two fits at once or be left inconsistent by a
kill or a full disk."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mongeflow as mf
from mongeflow import files as mf_files
from mongeflow.runs import Checkpoint
from tests.test_cli import run_here

V_FILE = "import jax.numpy as jnp\ndef V(z):\n    return 0.5 * jnp.sum(z**2)\n"
PAYLOAD = textwrap.dedent(
    """
    import pathlib
    pathlib.Path(__file__).with_name("PAYLOAD_RAN").write_text("yes")
    def V(z):
        return (z**2).sum()
    """
)
SMALL = ["--steps", "30", "--log-every", "10", "--eval-size", "200", "--quiet"]


@pytest.fixture(scope="module")
def v_run(tmp_path_factory):
    """A finished data run whose target is a potential V read from a Python file."""
    d = tmp_path_factory.mktemp("vrun")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(300, 2)) * 2 + 3)
    (d / "v.py").write_text(V_FILE)
    out = d / "run"
    r = run_here(
        "fit", "--source", str(d / "x.npy"), "--target", f"{d / 'v.py'}:V", "--out", str(out),
        "--scheme", "adam", *SMALL,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _phi(seed):
    import jax

    return mf.ICNN(2, jax.random.key(seed), widths=(8, 8))


def _copy(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


# --- a run directory is data, never code ---------------------------------------------------


def test_a_crafted_map_json_never_runs_its_payload(v_run, tmp_path):
    run = _copy(v_run, tmp_path)
    (run / "payload.py").write_text(PAYLOAD)
    meta = json.loads((run / "map.json").read_text())
    meta["target"].update(file="payload.py", sha256=None)
    (run / "map.json").write_text(json.dumps(meta))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 2)))
    r = run_here("apply", str(run), "--input", str(x), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    z = tmp_path / "z.npy"
    r = run_here("apply", str(run), "--inverse", "--input", str(x), "--output", str(z))
    assert r.returncode == 0, r.stderr
    # density and sample need V: refused, with the flag that names it explicitly
    r = run_here("density", str(run), "--input", str(x), "--output", str(tmp_path / "d.npy"))
    assert r.returncode == 2 and "--target payload.py:V" in r.stderr, r.stderr
    r = run_here("sample", str(run), "-n", "3", "--output", str(tmp_path / "s.npy"))
    assert r.returncode == 2 and "never makes mongeflow run code" in r.stderr, r.stderr
    with pytest.warns(mf.mapping.TargetNotLoaded, match="never imported"):
        m = mf.load(run)
    assert m.target is None
    assert not (run / "PAYLOAD_RAN").exists()


def test_the_target_given_explicitly_is_used_and_a_changed_file_is_said(v_run, tmp_path):
    run = _copy(v_run, tmp_path)
    v = v_run.parent / "v.py"
    m = mf.load(run, target=f"{v}:V")
    assert isinstance(m.target, mf.PotentialTarget)
    other = tmp_path / "w.py"
    other.write_text(V_FILE.replace("0.5", "0.25"))
    with pytest.warns(UserWarning, match="differs from the file the map was trained with"):
        mf.load(run, target=f"{other}:V")


def test_a_target_file_outside_the_map_folder_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    np.save(secret / "rows.npy", np.ones((5, 2)))
    (tmp_path / "elsewhere").mkdir()
    target = mf.EmpiricalTarget(np.zeros((6, 2), np.float32))
    m = mf.MongeMap(_phi(0), target=target, dim=2)
    path = mf.save(m, tmp_path / "elsewhere" / "map")
    meta = json.loads((path / "map.json").read_text())
    for name in ("../../secret/rows.npy", str(secret / "rows.npy")):
        meta["target"].update(file=name, sha256=None)
        (path / "map.json").write_text(json.dumps(meta))
        with pytest.raises(mf.InputError, match="outside"):
            mf.load(path)
    # a link inside the folder pointing out is refused too
    (path / "target.npy").unlink()
    os.symlink(secret / "rows.npy", path / "target.npy")
    meta["target"].update(file="target.npy")
    (path / "map.json").write_text(json.dumps(meta))
    with pytest.raises(mf.InputError, match="outside"):
        mf.load(path)


def test_a_map_eqx_from_another_save_is_refused(tmp_path):
    a = mf.save(mf.MongeMap(_phi(0), dim=2), tmp_path / "a")
    b = mf.save(mf.MongeMap(_phi(1), dim=2), tmp_path / "b")
    shutil.copy(b / "map.eqx", a / "map.eqx")  # as a save cut between its two files leaves it
    with pytest.raises(mf.InputError, match="different saves"):
        mf.load(a)


# --- resume reads the run's own data, or nothing --------------------------------------------


def test_resume_from_another_folder_uses_the_runs_data_or_refuses(v_run, tmp_path):
    run = _copy(v_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # files of the same names, other contents, in the folder resume is started from
    np.save(elsewhere / "x.npy", np.random.default_rng(1).normal(size=(300, 2)) - 2)
    (elsewhere / "v.py").write_text(PAYLOAD)
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        # V is code: resume needs --target, and takes the recorded absolute path
        r = run_here("fit", "--resume", "--out", str(run), "--steps", "40", "--quiet")
        assert r.returncode == 2 and "--target" in r.stderr, r.stderr
        r = run_here(
            "fit", "--resume", "--out", str(run), "--steps", "40", "--quiet", "--target", "v.py:V"
        )
        assert r.returncode == 2 and "other settings" in r.stderr, r.stderr
        v = v_run.parent / "v.py"
        r = run_here(
            "fit", "--resume", "--out", str(run), "--steps", "40", "--quiet", "--target", f"{v}:V"
        )
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        os.chdir(cwd)
    assert not (elsewhere / "PAYLOAD_RAN").exists()
    settings = json.loads((run / "run.json").read_text())["settings"]
    assert settings["source"] == str(v_run.parent / "x.npy")
    assert Checkpoint(run).meta()["step"] == 40


def test_resume_refuses_changed_data_and_lists_it(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(200, 2)))
    out = tmp_path / "run"
    r = run_here("fit", "--source", str(x), "--out", str(out), "--scheme", "adam", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    np.save(x, np.random.default_rng(1).normal(size=(200, 2)))
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    assert r.returncode == 2 and f"{x} has changed" in r.stderr, r.stderr
    x.unlink()
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    assert r.returncode == 2 and f"{x} is gone" in r.stderr, r.stderr


# --- --overwrite, bad settings, a run stopped before its first checkpoint -------------------


def test_overwrite_never_deletes_a_folder_that_holds_no_run(tmp_path):
    out = tmp_path / "mine"
    (out / "seeds").mkdir(parents=True)
    for name in ("metrics.json", "map.json", "map.eqx", "notes.txt"):
        (out / name).write_text("precious")
    for extra in (["--batch-size", "0"], []):
        r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out),
                     "--overwrite", *extra, *SMALL)  # fmt: skip
        assert r.returncode == 2 and "no mongeflow run" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "map.eqx", "map.json", "metrics.json", "notes.txt", "seeds"
    ]  # fmt: skip


@pytest.mark.slow  # 15 s cold on 2 cores; `pytest -m slow` runs it
def test_a_bad_setting_writes_nothing_and_an_unstarted_run_can_be_rerun(tmp_path):
    out = tmp_path / "run"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(100, 2)))
    r = run_here("fit", "--source", str(tmp_path / "x.npy"), "--out", str(out),
                 "--batch-size", "100000", *SMALL)  # fmt: skip
    assert r.returncode == 2 and "batch size" in r.stderr and not out.exists(), r.stderr
    # a run stopped before its first checkpoint (run.json only): rerun and resume both work
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in os.listdir(out):
        if name not in ("run.json", ".lock"):
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    r = run_here("fit", "--resume", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    for name in os.listdir(out):
        if name not in ("run.json", ".lock"):
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow  # 13 s cold on 2 cores; `pytest -m slow` runs it
def test_a_damaged_record_names_its_file(tmp_path):
    out = tmp_path / "run"
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    (out / "run.json").write_text("")
    r = run_here("fit", "--resume", "--out", str(out), "--quiet")
    assert r.returncode == 2 and str(out / "run.json") in r.stderr and "empty" in r.stderr
    assert "Traceback" not in r.stderr


# --- one writer at a time ---------------------------------------------------------------


def test_a_second_fit_into_a_folder_in_use_fails_at_once(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mongeflow.files import locked\n"
         f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
        assert r.returncode == 2 and "in use by another mongeflow process" in r.stderr, r.stderr
        assert f"pid {holder.pid}" in r.stderr
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(out)) == [".lock"]  # nothing was written


# --- kills at every write, a full disk ----------------------------------------------------


class Killed(BaseException):
    """What a kill does to the process at that instant (a BaseException: nothing catches it)."""


def _fit(path, steps, resume=False):
    common = dict(dim=2, log_every=5, final_eval_size=0, steps=steps)
    scheme = mf.Adam(learning_rate=0.01)
    return mf.fit("gaussian", scheme, callbacks=[Checkpoint(path, resume=resume)], **common)


def _leaves(p):
    import jax

    return [np.asarray(v) for v in jax.tree_util.tree_leaves(p)]


@pytest.mark.parametrize("where", ["serialise", "fsync", "replace"])
def test_a_kill_at_any_point_of_a_checkpoint_write_resumes_to_the_same_map(
    tmp_path, where, monkeypatch
):
    """Killed while the third checkpoint (step 15) is written: mid-file, before it is on
    disk, or at the rename. The previous checkpoint (step 10) is whole, and the resumed fit
    ends on the uninterrupted fit's map, bit for bit."""
    import equinox as eqx

    from mongeflow import runs

    whole = _fit(tmp_path / "whole", 20)
    path = tmp_path / "run"
    count = {"writes": 0}
    real_atomic = runs.atomic_write

    def counting(target, write):
        count["writes"] += 1
        return real_atomic(target, write)

    real = {
        "serialise": (eqx, "tree_serialise_leaves", eqx.tree_serialise_leaves),
        "fsync": (mf_files.os, "fsync", os.fsync),
        "replace": (mf_files.os, "replace", os.replace),
    }[where]

    def hook(*args, **kwargs):
        if count["writes"] == 3:
            if where == "serialise":
                args[0].write(b"\0" * 10)  # part of the arrays is out
            raise Killed
        return real[2](*args, **kwargs)

    monkeypatch.setattr(runs, "atomic_write", counting)
    monkeypatch.setattr(real[0], real[1], hook)
    with pytest.raises(Killed):
        _fit(path, 20)
    monkeypatch.undo()
    assert Checkpoint(path).meta()["step"] == 10  # the previous checkpoint, whole
    resumed = _fit(path, 20, resume=True)
    for a, b in zip(_leaves(whole.potentials), _leaves(resumed.potentials), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # 10 s cold on 2 cores; `pytest -m slow` runs it
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    # a constant rate: a run whose rate has decayed would also warn that more steps are idle
    constant = ["--decay-steps", "0"]
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL, *constant)
    assert r.returncode == 0, r.stderr[-2000:]
    before = (out / "checkpoint.bin").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mf_files.os, "fsync", full)
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    monkeypatch.undo()
    assert r.returncode == 2 and "the disk is full" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert (out / "checkpoint.bin").read_bytes() == before
    assert not [p for p in os.listdir(out) if p.startswith(mf_files.TEMPORARY_PREFIX)]


def test_a_full_tmpfs_is_one_line(tmp_path):
    """The same on a real full disk: a small tmpfs, where this process may mount one."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0  # fmt: skip
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mnt / "run"
        r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
        assert r.returncode == 2 and "the disk is full" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert not [p for p in os.listdir(out) if p.startswith(mf_files.TEMPORARY_PREFIX)]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_apply_says_when_output_rows_are_not_finite(tmp_path):
    # (x - m)/s overflows float32 for the second row
    path = mf.save(mf.MongeMap(_phi(0), shift=[0.0, 0.0], scale=1e-3), tmp_path / "m")
    x = np.array([[0.5, -0.5], [3e38, 3e38], [1.0, 2.0]])
    np.save(tmp_path / "x.npy", x)
    r = run_here("apply", str(path), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy"))  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    assert not np.isfinite(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert r.returncode == 3 and "1 of 3 output rows are not finite" in r.stderr, r.stderr


# --- crafted run.json, links planted in a run directory -----------------------------------


def _finished_run(tmp_path, name="run"):
    out = tmp_path / name
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _edit_settings(out, **changes):
    meta = json.loads((out / "run.json").read_text())
    meta["settings"].update(changes)
    (out / "run.json").write_text(json.dumps(meta))


def test_a_crafted_run_json_cannot_name_code_or_unhashed_files(tmp_path):
    out = _finished_run(tmp_path)
    # a module that is not Python source, behind a name that starts like FILE.py:NAME
    import py_compile

    tricky = tmp_path / "X.py:d"
    tricky.mkdir()
    (tmp_path / "evil.py").write_text(PAYLOAD)
    py_compile.compile(str(tmp_path / "evil.py"), cfile=str(tricky / "evil.pyc"))
    _edit_settings(out, source="gaussian", target=f"{tmp_path}/X.py:d/evil.pyc:V", inputs={})
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert not (tricky / "PAYLOAD_RAN").exists()
    # a file read by the run but missing from its hashes (a private file, say)
    private = tmp_path / "private.npy"
    np.save(private, np.ones((50, 2)))
    _edit_settings(out, source=str(private), target="gaussian", problem=None, inputs={})
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    assert r.returncode == 2 and "no recorded SHA-256" in r.stderr, r.stderr


@pytest.mark.parametrize("name", [".lock", "pushforward.png", "seeds"])
def test_a_link_planted_in_a_run_directory_is_never_written_through(tmp_path, name):
    out = _finished_run(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    target = victim if name == "seeds" else victim / "precious.txt"
    path = out / name
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.symlink(target, path)
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "40", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_overwrite_replaces_a_run_whose_record_is_damaged(tmp_path):
    out = _finished_run(tmp_path)
    (out / "run.json").write_text("{")
    r = run_here("fit", "--resume", "--out", str(out), "--quiet")
    assert r.returncode == 2 and "--overwrite" in r.stderr, r.stderr
    r = run_here("fit", "--problem", "gaussian", "--dim", "2", "--out", str(out), "--overwrite",
                 *SMALL)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
