"""CPU, memory and the server process from psutil. read() is cheap (the app calls it once a second
from a thread worker); the slow search for the server's process runs in a background thread."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

SERVER_NAMES = ("ollama", "llama-server", "vllm", "sglang", "text-generation-launcher")
SEARCH_EVERY_S = 5.0  # at most one process search this often while the server is not found


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    name: str
    cpu_percent: float  # % of one core (can exceed 100)
    rss: int  # bytes
    found_by: str  # "port" or "name"
    family: tuple[int, ...] = ()  # its pid and its descendants' (ollama serve → its model runners)


@dataclass(frozen=True)
class HostSample:
    cpu_percent: tuple[float, ...]  # per core
    cpu_total: float  # %, mean over cores
    load_avg: tuple[float, float, float]
    mem_total: int  # bytes, and all mem_/swap_ below
    mem_used: int
    mem_available: int
    mem_cached: int  # page cache, where a freshly read model file sits; 0 where psutil has none
    swap_total: int
    swap_used: int
    server: ProcessSample | None


def _listening_pid(port: int) -> int | None:
    """Pid of the process listening on TCP `port`, if we may see it.

    On Linux a non-root user sees the socket but not the pid of another user's process (pid None);
    elsewhere psutil may raise AccessDenied.
    """
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def _matches(info: dict, names: frozenset[str]) -> bool:
    if info.get("name") in names:
        return True
    cmdline = info.get("cmdline") or []
    # The binary, the script an interpreter runs, or `python -m package.module`.
    words = [os.path.basename(arg) for arg in cmdline[:2]]
    if "-m" in cmdline[:-1]:
        words.append(cmdline[cmdline.index("-m") + 1].split(".")[0])
    return any(word in names for word in words)


def _named_process(names: frozenset[str]) -> psutil.Process | None:
    """The matching process with the largest RSS (ollama's model runner rather than its front end)."""
    best, best_rss = None, -1
    me = os.getpid()
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.pid == me or not _matches(proc.info, names):
                continue
            rss = proc.memory_info().rss
        except psutil.Error:
            continue
        if rss > best_rss:
            best, best_rss = proc, rss
    return best


class HostProbe:
    """Never raises on psutil errors.

    The server search (/proc scans) runs on a short-lived background thread so read() never waits
    for it; find_server() does the same search synchronously.
    """

    def __init__(self, server_port: int | None = None, server_names=SERVER_NAMES) -> None:
        self.server_port = server_port
        self.server_names = frozenset(server_names)
        self._proc: psutil.Process | None = None
        self._found_by = ""
        self._searched_at = -math.inf
        self._searching = False
        self._lock = threading.Lock()
        psutil.cpu_percent(percpu=True, interval=None)  # the first call has no baseline and says 0

    def find_server(self) -> psutil.Process | None:
        proc, how = None, ""
        if self.server_port:
            pid = _listening_pid(self.server_port)
            if pid:
                try:
                    proc, how = psutil.Process(pid), "port"
                except psutil.Error:
                    pass
        if proc is None and self.server_names:
            proc, how = _named_process(self.server_names), "name"
        if proc is not None:
            try:
                proc.cpu_percent(None)  # prime: the next call measures from here
            except psutil.Error:
                proc = None
        with self._lock:
            self._proc, self._found_by = proc, how
            self._searched_at = time.monotonic()
            self._searching = False
        return proc

    def _search_soon(self) -> None:
        with self._lock:
            if self._searching or time.monotonic() - self._searched_at < SEARCH_EVERY_S:
                return
            self._searching = True
        threading.Thread(target=self._search_quietly, name="tokentop-find-server", daemon=True).start()

    def _search_quietly(self) -> None:
        try:
            self.find_server()
        except Exception as exc:
            if not isinstance(exc, psutil.Error):  # a process vanishing or denied is expected; anything else is a bug
                log.exception("finding the server's process")
            with self._lock:
                self._searching = False
                self._searched_at = time.monotonic()

    def _server(self) -> ProcessSample | None:
        with self._lock:
            proc, how = self._proc, self._found_by
        if proc is not None:
            try:
                if not proc.is_running():  # also catches a reused pid
                    raise psutil.NoSuchProcess(proc.pid)
                with proc.oneshot():
                    name = proc.name()
                    cpu = proc.cpu_percent(None)
                    try:
                        rss = proc.memory_info().rss
                    except psutil.AccessDenied:
                        rss = 0
                    family = (proc.pid, *_children(proc))
                return ProcessSample(proc.pid, name, cpu, rss, how, family)
            except psutil.NoSuchProcess:  # ZombieProcess included
                with self._lock:
                    if self._proc is proc:
                        self._proc, self._searched_at = None, -math.inf
            except psutil.Error:
                return ProcessSample(proc.pid, "?", 0.0, 0, how, (proc.pid,))
        if self.server_port or self.server_names:
            self._search_soon()
        return None

    def read(self) -> HostSample:
        try:
            cores = tuple(psutil.cpu_percent(percpu=True, interval=None))
        except (psutil.Error, OSError):
            cores = ()
        try:
            load = tuple(psutil.getloadavg())
        except (psutil.Error, OSError):
            load = (0.0, 0.0, 0.0)
        try:
            vm = psutil.virtual_memory()
            mem = (vm.total, vm.used, vm.available, getattr(vm, "cached", 0))
        except (psutil.Error, OSError):
            mem = (0, 0, 0, 0)
        try:
            sw = psutil.swap_memory()
            swap = (sw.total, sw.used)
        except (psutil.Error, OSError):
            swap = (0, 0)
        return HostSample(
            cpu_percent=cores,
            cpu_total=sum(cores) / len(cores) if cores else 0.0,
            load_avg=load,
            mem_total=mem[0],
            mem_used=mem[1],
            mem_available=mem[2],
            mem_cached=mem[3],
            swap_total=swap[0],
            swap_used=swap[1],
            server=self._server(),
        )


def _children(proc: psutil.Process) -> list[int]:
    try:
        return [child.pid for child in proc.children(recursive=True)]
    except psutil.Error:
        return []
