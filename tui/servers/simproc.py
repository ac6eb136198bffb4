"""`tokentop sim` in a process of its own, for the bench and the app: the simulated server's work then
never shares an interpreter (and its GIL) with the client that measures it."""

from __future__ import annotations

import re
import subprocess
import sys

from tui.servers.child import spawn


class SimProcess:
    """`with SimProcess(speed=10) as sim: sim.url`; same use as SimThread."""

    def __init__(self, *, parallel: int | None = None, speed: float | None = None) -> None:
        self._options = [*(["--parallel", str(parallel)] if parallel is not None else []),
                         *(["--speed", repr(speed)] if speed is not None else [])]
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> SimProcess:
        cmd = [sys.executable, "-m", "tui", "sim", "--port", "0", *self._options]
        self.process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()  # "… listening on http://127.0.0.1:PORT — …", once it listens
        found = re.search(r"listening on (http://\S+)", line)
        if not found:
            self.stop()
            raise RuntimeError("the simulated server did not start (run `tokentop sim` to see why)")
        self.url = found.group(1)
        self.process.stdout.close()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
