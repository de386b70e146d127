"""Work that a panel runs off the kernel's main thread, with a stop flag checked between steps."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundWork:
    """Mixin: ``_launch(work)`` runs ``work`` in a daemon thread (or inline), ``stop()`` asks it to end."""

    def _init_background(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def busy(self) -> bool:
        """True while the work started by ``_launch`` is still running."""
        return self._thread is not None and self._thread.is_alive()

    def _launch(self, work: Callable[[], None], background: bool) -> None:
        self._stop.clear()
        if background:
            self._thread = threading.Thread(target=work, daemon=True)
            self._thread.start()
        else:
            work()

    def stop(self) -> None:
        """Ask the work in progress to stop at its next check; what it finished stays."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the work in progress ends (or ``timeout`` seconds pass)."""
        if self._thread is not None:
            self._thread.join(timeout)
