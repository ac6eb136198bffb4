"""GPU samples from nvitop's Device API (NVML). Blocking: call read() from a thread, not the UI loop."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NO_DRIVER = "no NVIDIA GPU/driver found (NVML not available)"
RETRY_S = 30.0  # how often to look for GPUs again after finding none


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    user: str
    command: str
    gpu_memory: int | None  # bytes


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    utilization: float | None  # %
    memory_used: int | None  # bytes
    memory_total: int | None  # bytes
    temperature: float | None  # C
    power: float | None  # watts
    power_limit: float | None  # watts
    fan: float | None  # %
    sm_clock: int | None  # MHz
    memory_clock: int | None  # MHz
    pcie_rx: float | None  # KiB/s
    pcie_tx: float | None  # KiB/s
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True)
class GpuReading:
    gpus: tuple[GpuSample, ...]
    error: str | None  # one calm line, or None


def quiet_nvitop() -> None:
    """Silence nvitop's NVML logger.

    Without a driver it logs a multi-line "FATAL ERROR: NVML not found" that, having no handler,
    reaches stderr through logging.lastResort and scribbles over the TUI. Must run after nvitop is
    imported: its import sets this logger's level from the LOGLEVEL environment variable.
    """
    log = logging.getLogger("nvitop.api.libnvml")
    log.setLevel(logging.CRITICAL + 1)
    log.propagate = False
    log.disabled = True


def nvml_devices() -> list:
    """All physical GPUs; raises the NVML error when there is no driver."""
    from nvitop import Device  # imported lazily: loads the NVML bindings

    quiet_nvitop()
    # Device.all() swallows "library not found" and returns []; count() raises it, so we can say why.
    return Device.from_indices(range(Device.count()))


def describe_error(exc: BaseException) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NVMLError_LibraryNotFound" in names:
        return NO_DRIVER
    if "NVMLError_DriverNotLoaded" in names:
        return "NVIDIA driver not loaded"
    if "NVMLError_LibRmVersionMismatch" in names:
        return "NVIDIA driver/library version mismatch (reload the driver or reboot)"
    if "NVMLError_NoPermission" in names:
        return "no permission to query the NVIDIA driver"
    if isinstance(exc, ImportError):
        return f"GPU monitoring unavailable ({exc.name or 'nvitop'} not installed)"
    return f"GPU query failed: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _number(value: Any) -> float | None:
    # nvitop's NA is a str ("N/A") that behaves like nan in arithmetic: never let it through.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else value


def _read(method: Callable[[], Any]) -> float | None:
    try:
        return _number(method())
    except Exception:
        return None


def _text(method: Callable[[], Any], default: str = "?") -> str:
    try:
        value = method()
    except Exception:
        return default
    return value if isinstance(value, str) and value != "N/A" else default


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _watts(milliwatts: float | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def _processes(device: Any) -> tuple[GpuProcess, ...]:
    try:
        found = device.processes()  # nvitop: dict pid -> GpuProcess
    except Exception:
        return ()
    rows = []
    for proc in found.values() if isinstance(found, dict) else found:
        try:
            pid = int(proc.pid)
        except Exception:
            continue
        # The process may belong to another user or another PID namespace (containers):
        # psutil then raises AccessDenied/NoSuchProcess; keep the row with what NVML knows.
        command = _text(proc.command, default="")
        if not command:
            command = _text(proc.name)
        rows.append(GpuProcess(pid, _text(proc.username), command, _int(_read(proc.gpu_memory))))
    rows.sort(key=lambda p: -(p.gpu_memory or 0))
    return tuple(rows)


def sample_device(device: Any, position: int) -> GpuSample:
    with device.oneshot():
        index = getattr(device, "index", position)  # a property in nvitop, not a method
        return GpuSample(
            index=index if isinstance(index, int) else position,
            name=_text(device.name, default=f"GPU {position}"),
            utilization=_read(device.gpu_utilization),
            memory_used=_int(_read(device.memory_used)),
            memory_total=_int(_read(device.memory_total)),
            temperature=_read(device.temperature),
            power=_watts(_read(device.power_usage)),
            power_limit=_watts(_read(device.power_limit)),
            fan=_read(device.fan_speed),
            sm_clock=_int(_read(device.sm_clock)),
            memory_clock=_int(_read(device.memory_clock)),
            pcie_rx=_read(device.pcie_rx_throughput),
            pcie_tx=_read(device.pcie_tx_throughput),
            processes=_processes(device),
        )


class GpuProbe:
    """read() never raises; a missing driver or a failing GPU becomes GpuReading.error.

    Each read costs two 20 ms PCIe counter samples per GPU inside NVML.
    """

    def __init__(self, devices: Callable[[], list] | None = None) -> None:
        self._list_devices = devices or nvml_devices
        self._devices: list | None = None
        self._error: str | None = None
        self._tried_at = -math.inf
        self._lock = threading.Lock()

    def _find_devices(self) -> list:
        if self._devices is not None:
            return self._devices
        now = time.monotonic()
        if now - self._tried_at < RETRY_S:
            return []
        self._tried_at = now
        try:
            devices = list(self._list_devices())
        except Exception as exc:
            self._error = describe_error(exc)
            return []
        if not devices:
            self._error = "no NVIDIA GPU found"
            return []
        self._devices, self._error = devices, None
        return devices

    def read(self) -> GpuReading:
        with self._lock:
            devices = self._find_devices()
            if not devices:
                return GpuReading((), self._error)
            samples, error = [], None
            for position, device in enumerate(devices):
                try:
                    samples.append(sample_device(device, position))
                except Exception as exc:
                    error = error or f"GPU {position} unreadable: {first_line(exc)}"
            return GpuReading(tuple(samples), error)
