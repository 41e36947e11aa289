"""What every command shares: the consoles, the progress bar, sizes for people, SIGTERM as Ctrl-C."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from imgarc.api import Progress as ProgressCallback


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)  # one logical line stays one line


def warn(message: str) -> None:
    console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}")


@contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """Yields a progress(done, total, label) callback drawing a rich bar on stderr."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("[dim]{task.fields[label]}"), console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None, label="")

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, label=label[-40:])

        yield update




@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a `kill`, a closing terminal) unwinds like Ctrl-C, so temp files are removed."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
