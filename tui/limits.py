"""What the operating system lets one client hold: open files (a connection is one) and ephemeral ports (one
client address holds at most that many connections to one server address and port).

The open-files limit is raised at start to the most the OS allows (the hard limit): shells default to 1,024,
fewer than the streams tokentop runs.
"""

from __future__ import annotations

from pathlib import Path

try:
    import resource
except ImportError:  # not on POSIX: nothing to raise
    resource = None  # type: ignore[assignment]

SPARE_FILES = 64  # besides the connections: the interpreter, logs, --out, probes
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def raise_open_files() -> int | None:
    """The soft open-files limit raised to the hard one; the limit now (None where it cannot be read)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def open_files_problem(connections: int) -> str | None:
    """One line when `connections` cannot all be open at once under the limit (raised first), else None."""
    limit = raise_open_files()
    if limit is None or connections + SPARE_FILES <= limit:
        return None
    return (f"{connections:,} connections need about {connections + SPARE_FILES:,} open files, and this process may"
            f" open {limit:,}: raise the limit (ulimit -n {connections + SPARE_FILES}, or LimitNOFILE= for a service)"
            " and run it again")


def ephemeral_ports() -> int | None:
    """How many local ports the OS hands out to outgoing connections (Linux's ip_local_port_range)."""
    try:
        low, high = (int(x) for x in PORT_RANGE.read_text().split())
    except (OSError, ValueError):
        return None
    return high - low + 1 if high >= low else None


def ports_note(connections: int) -> str | None:
    """A warning when one client address cannot hold that many connections to one server address and port."""
    ports = ephemeral_ports()
    if ports is None or connections <= ports:
        return None
    return (f"{connections:,} connections to one server address and port need as many local ports, and this machine"
            f" hands out {ports:,} (net.ipv4.ip_local_port_range): past that, connecting fails and is recorded as"
            " an error; widen the range or spread the load over more client addresses or machines")
