"""The command line's compilation cache is private: JAX runs whatever program it finds in
that folder under a program's key, so a folder that someone else may write into is not
used (a warning, then the command runs without a cache)."""

import os

import jax
import pytest

from mongeflow import cli

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="no user ids to compare")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No cache set for JAX (the test session's is put back after: _compilation_cache
    changes the process's JAX settings), no cache variables, ``XDG_CACHE_HOME`` in
    ``tmp_path``."""
    saved = {
        name: getattr(jax.config, name)
        for name in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    }
    jax.config.update("jax_compilation_cache_dir", None)
    for var in ("MONGEFLOW_NO_CACHE", "MONGEFLOW_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    yield tmp_path
    for name, value in saved.items():
        jax.config.update(name, value)


def used() -> str | None:
    return jax.config.jax_compilation_cache_dir


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_new_cache_folder_and_its_parents_are_private(fresh, capsys):
    umask = os.umask(0)  # the mode is asked for, not left to the umask
    try:
        cli._compilation_cache()
    finally:
        os.umask(umask)
    folder = fresh / "xdg" / "mongeflow" / "jax"
    assert used() == str(folder)
    assert [mode(p) for p in (fresh / "xdg", folder.parent, folder)] == [0o700] * 3
    assert capsys.readouterr().err == ""


def test_mongeflow_cache_dir_chooses_the_folder(fresh, monkeypatch):
    monkeypatch.setenv("MONGEFLOW_CACHE_DIR", str(fresh / "mine" / "cache"))
    cli._compilation_cache()
    assert used() == str(fresh / "mine" / "cache")
    assert mode(fresh / "mine" / "cache") == 0o700


@pytest.mark.parametrize("permissions", [0o777, 0o770, 0o702], ids=oct)
def test_a_folder_others_may_write_into_is_not_used(fresh, monkeypatch, capsys, permissions):
    folder = fresh / "shared"
    folder.mkdir()
    folder.chmod(permissions)
    monkeypatch.setenv("MONGEFLOW_CACHE_DIR", str(folder))
    cli._compilation_cache()
    assert used() is None
    err = capsys.readouterr().err
    assert err.startswith("mongeflow: warning: ") and str(folder) in err
    assert f"mode {permissions:o}" in err and err.count("\n") == 1
    assert mode(folder) == permissions  # left as it is


def test_a_planted_entry_is_never_run(fresh, monkeypatch, capsys):
    """An entry copied into the default cache folder, made group-writable, by someone else:
    the folder is not given to JAX, so no entry in it is ever loaded."""
    folder = fresh / "xdg" / "mongeflow" / "jax"
    folder.mkdir(parents=True)
    folder.chmod(0o775)
    planted = folder / "jit_step-0123456789abcdef"
    planted.write_bytes(b"a program compiled for another run")
    cli._compilation_cache()
    assert used() is None
    assert "compilation cache not used" in capsys.readouterr().err
    assert planted.read_bytes() == b"a program compiled for another run"

    folder.chmod(0o700)  # once private again (by its owner's choice), it is used
    cli._compilation_cache()
    assert used() == str(folder)


def test_a_folder_owned_by_another_user_is_not_used(fresh, monkeypatch, capsys):
    folder = fresh / "theirs"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(folder).st_uid + 1)
    monkeypatch.setenv("MONGEFLOW_CACHE_DIR", str(folder))
    cli._compilation_cache()
    assert used() is None
    assert "owned by another user" in capsys.readouterr().err


def test_a_folder_that_cannot_be_made_is_not_used(fresh, monkeypatch, capsys):
    (fresh / "file").write_text("")
    monkeypatch.setenv("MONGEFLOW_CACHE_DIR", str(fresh / "file" / "cache"))
    cli._compilation_cache()
    assert used() is None
    assert capsys.readouterr().err.startswith("mongeflow: warning: compilation cache not used")


def test_no_cache_and_a_cache_jax_was_given_are_left_alone(fresh, monkeypatch, capsys):
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")
    cli._compilation_cache()
    assert used() is None and not (fresh / "xdg").exists()

    monkeypatch.delenv("MONGEFLOW_NO_CACHE")
    shared = fresh / "jax-cache"  # JAX_COMPILATION_CACHE_DIR, say: the user's choice
    jax.config.update("jax_compilation_cache_dir", str(shared))
    cli._compilation_cache()
    assert used() == str(shared) and not (fresh / "xdg").exists()
    assert capsys.readouterr().err == ""


def test_without_user_ids_the_folder_is_not_checked(fresh, monkeypatch):
    folder = fresh / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.delattr(os, "geteuid")
    monkeypatch.setenv("MONGEFLOW_CACHE_DIR", str(folder))
    cli._compilation_cache()
    assert used() == str(folder)
