"""A server's whole process family: vLLM's API server with its EngineCore and workers, SGLang's scheduler
and detokenizer, ollama's runners, TGI's launcher with its router and shards.

From the process that owns the port (or was found by name), climb to the process that started the
server: through parents in the same process group (the job a shell or a service manager started), but
never to a shell, init, tokentop or tokentop's own ancestors. The family is that process, all its
descendants, and any other member of the same process group (a worker re-parented to init). The
session is not followed: over SSH it holds the login shell and everything else the user runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

# Where the climb stops: shells, terminal multiplexers, service and container managers.
STARTERS = frozenset({
    "bash", "sh", "dash", "zsh", "fish", "ksh", "tcsh", "csh", "tmux", "tmux: server", "screen", "SCREEN",
    "sshd", "login", "su", "sudo", "init", "systemd", "supervisord", "tini", "dumb-init", "docker-init",
    "containerd-shim", "containerd-shim-runc-v2", "conmon", "runsv", "s6-supervise",
})


@dataclass(frozen=True)
class Member:
    pid: int
    name: str  # its own (vLLM names its processes VLLM::EngineCore, VLLM::Worker)
    cpu_percent: float  # % of one core since the last read
    rss: int  # bytes; 0 where it may not be read
    command: str = ""  # its command line, as read when it joined ("" where it may not be read)


def interpreted(cmdline: list[str]) -> str | None:
    """What a command runs after its program: the package of `-m package.module`, else its first argument's
    base name (an interpreter's script); None when that is an option."""
    if "-m" in cmdline[:-1]:
        return cmdline[cmdline.index("-m") + 1].split(".")[0] or None
    if len(cmdline) < 2 or cmdline[1].startswith("-"):
        return None
    return os.path.basename(cmdline[1])


def label(name: str, cmdline: list[str]) -> str:
    """What an interpreter runs: `python -m vllm.entrypoints…` is vllm, `python /usr/bin/sglang …` sglang."""
    return (interpreted(cmdline) or name) if name.startswith("python") else name


def own_lineage() -> frozenset[int]:
    """tokentop's pid and its ancestors': never part of a server's family."""
    pids = {os.getpid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return frozenset(pids)


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _is_starter(pid: int) -> bool:
    try:
        return psutil.Process(pid).name() in STARTERS
    except psutil.Error:
        return True  # gone, or not ours to read: not counted


def family_root(proc: psutil.Process, mine: frozenset[int]) -> psutil.Process:
    """The process that started `proc`'s server (`proc` itself when it started alone)."""
    group = _group(proc.pid)
    root = proc
    while group is not None:
        try:
            parent = root.parent()
            if (parent is None or parent.pid <= 1 or parent.pid in mine or _group(parent.pid) != group
                    or parent.name() in STARTERS):
                break
        except psutil.Error:
            break
        root = parent
    return root


def family_pids(proc: psutil.Process, mine: frozenset[int] | None = None) -> tuple[int, ...]:
    """The family of the server `proc` belongs to, its starter first."""
    mine = own_lineage() if mine is None else mine
    root = family_root(proc, mine)
    pids = [root.pid]
    try:
        pids += [child.pid for child in root.children(recursive=True)]
    except psutil.Error:
        pass
    group = _group(proc.pid)
    if group is not None and group != os.getpgrp():  # a group of our own would be tokentop's job
        seen = set(pids)
        for other in psutil.pids():
            if other not in seen and other not in mine and other > 1 and _group(other) == group \
                    and not _is_starter(other):
                pids.append(other)
    return tuple(pids)


def _shown_command(cmdline: list[str], name: str) -> str:
    """The command line with its program's folder left out; "" when it only repeats the name (a title set by
    setproctitle, padded with spaces)."""
    if not cmdline:
        return ""
    command = " ".join([os.path.basename(cmdline[0]), *cmdline[1:]]).strip()
    return "" if command == name else command


class Family:
    """Reads the CPU and RSS of each member; keeps each psutil.Process so CPU is measured between reads."""

    def __init__(self, pids: tuple[int, ...]) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._commands: dict[int, list[str]] = {}
        self.update(pids)

    def update(self, pids: tuple[int, ...]) -> None:
        """A new membership (a runner started, a worker ended); members already known keep their baseline."""
        procs = {}
        for pid in pids:
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # prime: the next read measures from here
                except psutil.Error:
                    continue
                try:
                    self._commands[pid] = proc.cmdline()
                except psutil.Error:
                    self._commands[pid] = []
            procs[pid] = proc
        self._procs = procs
        self._commands = {pid: self._commands.get(pid, []) for pid in procs}

    def starter_label(self, name: str) -> str:
        """The first member's name, or what it runs when it is an interpreter."""
        first = next(iter(self._procs), None)
        return label(name, self._commands.get(first, [])) if first is not None else name

    def read(self) -> tuple[Member, ...]:
        """Each living member, in family order; a member that ended is dropped."""
        members = []
        for pid, proc in list(self._procs.items()):
            try:
                if not proc.is_running():  # also catches a reused pid
                    raise psutil.NoSuchProcess(pid)
                with proc.oneshot():
                    name, cpu = proc.name(), proc.cpu_percent(None)
                    try:
                        rss = proc.memory_info().rss
                    except psutil.AccessDenied:
                        rss = 0
            except psutil.NoSuchProcess:  # ZombieProcess included
                self._procs.pop(pid, None)
                continue
            except psutil.Error:
                name, cpu, rss = "?", 0.0, 0
            members.append(Member(pid, name, cpu, rss, _shown_command(self._commands.get(pid, []), name)))
        return tuple(members)
