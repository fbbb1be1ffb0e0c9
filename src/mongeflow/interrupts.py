"""Ctrl-C for the command line: exit status 130 within about two seconds, one line on
stderr, no traceback, and, once training has started, the last checkpoint kept.

Python runs a signal handler only between two bytecodes of the main thread: while that
thread is inside XLA (compiling, or waiting for a compiled chunk of steps) a Ctrl-C waits,
and a ``KeyboardInterrupt`` raised inside a garbage-collector callback is printed and
dropped. So :func:`handling` also has the C-level handler write to a socket
(:func:`signal.set_wakeup_fd`), which a watchdog thread reads; it needs no bytecode of the
main thread. The phases:

* before training (imports, reading the settings, building the problem, compiling the
  first chunk), nothing would be lost: Ctrl-C prints ``mongeflow: interrupted`` and exits at
  once (:func:`os._exit`, from the handler or the watchdog, whichever runs first);
* during training (:func:`training`, or the :class:`TrainingCallback` of a fit, from its
  first chunk on), Ctrl-C raises ``KeyboardInterrupt`` so that :func:`~mongeflow.fit.fit`
  saves the state through its callbacks (but not inside a garbage-collector callback,
  which would drop it), and sets a flag that the callback checks after each chunk (should
  the exception have been dropped or not raised). The watchdog gives the process
  :data:`GRACE_S` to exit by itself, then prints the line and exits (the checkpoint on disk
  is replaced atomically, so it is the previous one or the new one);
* a second Ctrl-C exits at once.

Exiting through :func:`os._exit` skips the interpreter's finalisation, which could crash
while XLA's threads still run. Nothing here imports JAX: the command line installs it before
loading anything heavy.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

EXIT_CODE = 130  # 128 + SIGINT, as a shell reports it
GRACE_S = 1.0  # from a Ctrl-C during training to the watchdog's exit
SAVED_GRACE_S = 0.3  # more, when the state was saved by then: the process is on its way out


class _State:
    def __init__(self) -> None:
        self.installed = False
        self.training = False
        self.note: str | None = None  # what the exit line adds after "interrupted"
        self.requested = threading.Event()  # a Ctrl-C was received
        self.saved = threading.Event()  # the state was saved after it
        self.signals = 0  # seen by the Python-level handler
        self.exiting = threading.Lock()


_state = _State()


def requested() -> bool:
    """Whether a Ctrl-C was received while :func:`handling` was installed."""
    return _state.requested.is_set()


def exit_now(code: int = EXIT_CODE, line: str | None = None) -> None:
    """Flush stdout and stderr, print ``line`` (if any) on stderr and end the process at once
    with ``code``, without the interpreter's finalisation."""
    if not _state.exiting.acquire(blocking=False):  # another thread is ending it
        while True:
            time.sleep(1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or being written by the main thread
            stream.flush()
    if line:
        with contextlib.suppress(OSError):
            os.write(2, f"{line}\n".encode())
    os._exit(code)


def resume_note(run_dir: str | os.PathLike) -> str:
    """What the exit line says about a run directory: how to continue."""
    return f"continue with `mongeflow fit --resume --out {run_dir}` (from its last checkpoint)"


def _line() -> str:
    return "mongeflow: interrupted" + (f": {_state.note}" if _state.note else "")


def _in_gc_callback(frame) -> bool:
    """Whether ``frame`` runs inside a garbage-collector callback (JAX has one), where an
    exception is printed ("Exception ignored in ...") and dropped."""
    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum, frame) -> None:
    _state.signals += 1
    _state.requested.set()
    if not _state.training or _state.signals > 1:
        exit_now(EXIT_CODE, _line())
    if not _in_gc_callback(frame):  # else the flag stops the fit after the chunk
        raise KeyboardInterrupt


def _watch(sock: socket.socket, stop: threading.Event) -> None:
    """The watchdog thread: each byte read is the number of a signal the C handler caught."""
    seen, deadline = 0, None
    while True:
        sock.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
        try:
            data = sock.recv(64)
        except TimeoutError:  # the grace period is over
            if _state.saved.is_set():
                time.sleep(SAVED_GRACE_S)
            exit_now(EXIT_CODE, _line())
        except OSError:
            return
        if stop.is_set() or not data:
            return
        seen += data.count(signal.SIGINT)
        if not seen:
            continue
        if not _state.training or seen > 1:
            exit_now(EXIT_CODE, _line())
        if deadline is None:
            deadline = time.monotonic() + GRACE_S


@contextlib.contextmanager
def handling(enabled: bool = True) -> Iterator[None]:
    """Take over Ctrl-C (SIGINT) for the block, in the phase "before training" (see the
    module's text); the previous handler comes back after it.

    For a process's main program: after a Ctrl-C the process ends, by :func:`os._exit` if
    it does not end by itself. Does nothing when not ``enabled``, when already installed, or
    outside the main thread.
    """
    global _state
    main_thread = threading.current_thread() is threading.main_thread()
    if not enabled or _state.installed or not main_thread:
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    stop = threading.Event()
    previous_handler = signal.getsignal(signal.SIGINT)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, _on_sigint)
    watchdog = threading.Thread(
        target=_watch, args=(reader, stop), name="mongeflow-interrupts", daemon=True
    )
    watchdog.start()
    _state.installed = True
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        signal.set_wakeup_fd(previous_fd)
        stop.set()
        with contextlib.suppress(OSError):
            writer.send(b"\0")
        watchdog.join(timeout=1)
        reader.close()
        writer.close()
        _state = _State()


@contextlib.contextmanager
def training(run_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """The phase "during training" for the block (see the module's text): a Ctrl-C raises
    ``KeyboardInterrupt``, and the process has :data:`GRACE_S` to save and end by itself.
    With ``run_dir``, the exit line says how to continue (:func:`resume_note`), in this
    phase and after it. Without :func:`handling`, nothing changes."""
    _enter_training(run_dir)
    try:
        yield
    finally:
        _leave_training()


def _enter_training(run_dir: str | os.PathLike | None) -> None:
    if run_dir is not None:
        _state.note = resume_note(run_dir)
    _state.training = _state.installed


def _leave_training() -> None:
    if _state.training and _state.requested.is_set():
        _state.saved.set()
    _state.training = False


class TrainingCallback:
    """A :class:`~mongeflow.fit.Callback` (by its methods) that puts a fit in the phase
    "during training" from the end of its first compiled chunk (before it, nothing would
    be lost) to its end, and raises ``KeyboardInterrupt`` after a chunk when a Ctrl-C was
    received, should the exception have been dropped. Put it after the callback that
    saves checkpoints. ``run_dir``: as for :func:`training`. Without :func:`handling`,
    it does nothing."""

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.run_dir = run_dir

    def on_start(self, run, state):
        return state

    def on_chunk(self, run, state) -> None:
        if not _state.training:
            _enter_training(self.run_dir)
        if _state.requested.is_set():
            raise KeyboardInterrupt

    def on_end(self, run, state, interrupted: bool) -> None:
        _leave_training()
