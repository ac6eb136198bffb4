"""Child server processes that never outlive tokentop: started with a parent-death signal (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

PR_SET_PDEATHSIG = 1


def death_signal_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    option, sig, parent = ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM), os.getpid()

    def preexec() -> None:
        prctl(option, sig)
        if os.getppid() != parent:  # the parent died before the prctl took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Popen with the parent-death signal, in its own session (so its whole group can be stopped)."""
    kwargs.setdefault("start_new_session", True)
    kwargs["preexec_fn"] = death_signal_preexec()
    # The parent-death signal fires when the *thread* that forked exits, not the process. So a
    # server started from a short-lived thread (a worker) is forked from one that lives on.
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(cmd, **kwargs)
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="tokentop-spawner")
    return _spawner.submit(subprocess.Popen, cmd, **kwargs).result()


def how_it_ended(program: str, returncode: int) -> str:
    """A child's end in words: "llama-server exited with status 1", "… was killed by SIGILL (illegal instruction)"."""
    if returncode >= 0:
        return f"{program} exited with status {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"{program} was killed by signal {-returncode}"
    cause = (signal.strsignal(sig) or "").lower()
    return f"{program} was killed by {sig.name}" + (f" ({cause})" if cause else "")
