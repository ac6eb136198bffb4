"""A SimServer in a thread of its own, for tests and anything that wants one in-process (SimThread)."""

from __future__ import annotations

import asyncio
import threading

from tui.servers.sim.config import SimConfig
from tui.servers.sim.server import SimServer


class SimThread:
    """A SimServer on its own event loop in a daemon thread: `with SimThread(cfg) as sim: sim.url`."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = SimServer(config, host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> SimThread:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="tokentop-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.server.start()
        except Exception as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:  # the loop already ended
            pass
        self._thread.join(timeout=5)

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
