"""Work started ahead of need on a thread of its own (a session, a model's tap matrices), so it
overlaps what comes before its first use."""

from __future__ import annotations

import threading
from typing import Callable


def ahead_of_need(work: Callable[[], object], name: str = "imgarc-prepare") -> None:
    """Run `work` on a daemon thread. What it raises is dropped, not printed: whoever needs its
    result does the work again (or waits for it) and reports the error in its own place."""

    def quietly() -> None:
        try:
            work()
        except Exception:  # noqa: BLE001 - see above
            pass

    threading.Thread(target=quietly, name=name, daemon=True).start()
