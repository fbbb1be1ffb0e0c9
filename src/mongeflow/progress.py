"""One progress bar (Rich) for fits and benchmarks: elapsed time, ETA and a status text."""

from __future__ import annotations

from mongeflow.fit import Callback, progress_line


class ProgressBar:
    """A transient Rich progress bar with a free-text status column; a no-op when disabled.

    Use as a context manager; :meth:`advance` moves it by ``n`` units and sets the status.
    """

    def __init__(
        self, enabled: bool, total: int, label: str, status: str = "compiling…", completed: int = 0
    ):
        self.enabled = enabled
        self.total = total
        self.label = label
        self.status = status
        self.completed = completed

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(
                self.label, total=self.total, completed=self.completed, info=self.status
            )
        return self

    def advance(self, n: int, info: str = "", label: str | None = None):
        if not self.enabled:
            return
        fields = {"info": info}
        if label is not None:
            fields["description"] = label
        self.bar.update(self.task, advance=n, **fields)

    def print(self, line: str):
        """A line printed above the bar (nothing when disabled)."""
        if self.enabled:
            self.bar.console.print(line, highlight=False)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


class Progress(Callback):
    """A :func:`~mongeflow.fit.fit` callback that shows a progress bar (ETA, loss, metrics).

    Example:
        >>> import mongeflow as mf
        >>> res = mf.fit("gaussian", "adam", dim=2, steps=10, callbacks=[Progress(enabled=False)])
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: ProgressBar | None = None

    def on_start(self, run, state):
        self.bar = ProgressBar(self.enabled, run.steps, run.label, completed=state.step)
        self.bar.__enter__()
        self.done = state.step
        return state

    def on_chunk(self, run, state):
        self.bar.advance(state.step - self.done, progress_line(state.history))
        self.done = state.step

    def on_end(self, run, state, interrupted):
        self.bar.__exit__(None, None, None)
