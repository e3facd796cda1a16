"""The only module that sends signals.

A `ProcessHandle` is opened on a pid *before* the caller checks, in /proc, that the pid is
still the worker it wants (same start time, parent is the instance's arbiter). Where the
kernel has pidfds (Linux >= 5.3) the handle holds one: it keeps referring to the process it
was opened on, so a later signal (the SIGKILL after a grace period) can never reach another
process that was given the same pid. Without pidfds, the handle checks the start time again
right before each `kill(2)`.
"""

from __future__ import annotations

import os
import select
import signal

from kit_reaper import procfs


class ProcessHandle:
    def __init__(self, pid: int, start_ticks: int, fd: int | None) -> None:
        self.pid = pid
        self.start_ticks = start_ticks
        self._fd = fd

    @classmethod
    def open(cls, pid: int, start_ticks: int) -> ProcessHandle | None:
        """A handle on `pid`, or None if no such process. The caller then verifies, in
        /proc, that the process is the one it means (the pidfd was opened first, so if the
        check passes, the pidfd refers to that process)."""
        try:
            fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # ENOSYS on kernels before 5.3, or a sandbox forbidding it
            fd = None
        return cls(pid, start_ticks, fd)

    def _same_process(self) -> bool:
        found = procfs.read_stat(self.pid)
        return found is not None and found.start_ticks == self.start_ticks

    def send(self, sig: signal.Signals) -> bool:
        """Signal the process; False if it has already gone."""
        try:
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, sig)
            elif self._same_process():
                os.kill(self.pid, sig)
            else:
                return False
        except ProcessLookupError:
            return False
        return True

    def exited(self) -> bool:
        """The process has exited (a zombie not yet reaped by its parent counts as exited)."""
        if self._fd is not None:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            return bool(poller.poll(0))
        found = procfs.read_stat(self.pid)
        return found is None or found.start_ticks != self.start_ticks or found.state in ("Z", "X")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
