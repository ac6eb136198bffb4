"""CPU, memory and the server's process family from psutil. read() is cheap (the app calls it once a
second from a thread of its own); the slow search for the server's processes runs in a background thread."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import psutil

from tui.probes.family import Family, Member, family_pids, interpreted, own_lineage

log = logging.getLogger(__name__)

SERVER_NAMES = ("ollama", "llama-server", "vllm", "sglang", "text-generation-launcher")
SEARCH_EVERY_S = 5.0  # at most one process search this often (the family's membership is re-read as often)


@dataclass(frozen=True)
class ProcessSample:
    """The server's process family (tui.probes.family): its starter's pid and name, and the family's sums."""

    pid: int
    name: str  # what the starter runs: "vllm" for `python -m vllm.entrypoints.openai.api_server`
    cpu_percent: float  # % of one core (can exceed 100), summed over the family
    rss: int  # bytes, summed over the family (pages shared between members count once per member)
    found_by: str  # "port" or "name"
    family: tuple[int, ...] = ()  # every member's pid, the starter's first
    members: tuple[Member, ...] = ()


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
    words = [os.path.basename(cmdline[0]), interpreted(cmdline)] if cmdline else []
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
        self._family: Family | None = None
        self._owner: psutil.Process | None = None  # the process found by port or name
        self._mine = own_lineage()  # tokentop and its ancestors: never the server's family
        self._found_by = ""
        self._searched_at = -math.inf
        self._searching = False
        self._lock = threading.Lock()
        psutil.cpu_percent(percpu=True, interval=None)  # the first call has no baseline and says 0

    def find_server(self) -> psutil.Process | None:
        """The server's process (by port, else by name), and its family read anew."""
        proc, how = self._owner, self._found_by
        if proc is None or not proc.is_running():  # still there: spare the port's and the names' scans
            proc, how = self._locate()
        pids: tuple[int, ...] = ()
        if proc is not None:
            try:
                pids = family_pids(proc, self._mine)
            except psutil.Error:
                proc = None
        with self._lock:
            if not pids:
                self._family = None
            elif self._family is None:
                self._family = Family(pids)
            else:
                self._family.update(pids)  # members already known keep their CPU baseline
            self._owner, self._found_by = (proc, how) if pids else (None, "")
            self._searched_at = time.monotonic()
            self._searching = False
        return proc

    def _locate(self) -> tuple[psutil.Process | None, str]:
        if self.server_port:
            pid = _listening_pid(self.server_port)
            if pid:
                try:
                    return psutil.Process(pid), "port"
                except psutil.Error:
                    pass
        if self.server_names:
            return _named_process(self.server_names), "name"
        return None, ""

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
        if self.server_port or self.server_names:
            self._search_soon()  # found or not: a family gains and loses members (ollama loads a runner)
        with self._lock:
            family, how = self._family, self._found_by
            members = family.read() if family is not None else ()
            if not members:
                return None
            starter = members[0]
            name = family.starter_label(starter.name)
        return ProcessSample(starter.pid, name, sum(m.cpu_percent for m in members),
                             sum(m.rss for m in members), how, tuple(m.pid for m in members), members)

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

