"""GPU and host probes: no GPU needed (fake nvitop devices), real psutil on this machine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fakes import GiB, FakeDevice, FakeProcess, fake_gpu_reading
from tui.probes.gpu import NO_DRIVER, GpuProbe, GpuReading
from tui.probes.family import family_pids, label
from tui.probes.host import HostProbe, _listening_pid, _matches

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_probe_without_a_driver_is_quiet_and_calm(capfd, caplog):
    caplog.set_level("DEBUG")
    probe = GpuProbe()
    reading = probe.read()
    if reading.gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    assert reading.error == NO_DRIVER and "\n" not in reading.error
    start = time.perf_counter()
    assert probe.read() == GpuReading((), NO_DRIVER)  # cached: NVML is not tried again for a while
    assert time.perf_counter() - start < 0.01
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # pytest's log capture would hide nvitop's stderr message from capfd; it must not log at all.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("nvitop")] == []


@pytest.mark.slow  # starts a process
def test_gpu_probe_in_a_fresh_process_writes_nothing_to_stderr():
    code = "from tui.probes.gpu import GpuProbe; r = GpuProbe().read(); print(len(r.gpus), r.error)"
    env = {k: v for k, v in os.environ.items() if k != "LOGLEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0 and result.stderr == ""
    if result.stdout.startswith("0 "):
        assert result.stdout.strip() == f"0 {NO_DRIVER}"


def test_gpu_probe_maps_values_and_units():
    reading = fake_gpu_reading()
    assert reading.error is None
    busy, idle = reading.gpus
    assert (busy.index, busy.name, idle.index) == (0, "NVIDIA A100-SXM4-80GB", 1)
    assert busy.utilization == 97 and idle.utilization == 0
    assert (busy.memory_used, busy.memory_total) == (44 * GiB, 80 * GiB)
    assert busy.temperature == 64
    assert (busy.power, busy.power_limit) == (298.0, 400.0)  # watts, from milliwatts
    assert busy.fan is None  # nvitop's NA
    assert (busy.sm_clock, busy.memory_clock) == (1410, 1593)
    assert (busy.pcie_rx, busy.pcie_tx) == (1_234_567, 45_678)
    (proc,) = busy.processes
    assert (proc.pid, proc.user, proc.gpu_memory) == (4242, "ollama", 42 * GiB)
    assert proc.command.startswith("/usr/bin/ollama runner --model ")
    assert idle.processes == ()


class BrokenDevice(FakeDevice):
    """Temperature fails, one process is another user's, one is gone, and memory reads NA."""

    def temperature(self):
        raise RuntimeError("NVML hiccup")

    def memory_used(self):
        from nvitop import NA
        return NA

    def processes(self):
        hidden = FakeProcess(10, "root", "/usr/bin/Xorg", 0)
        hidden.username = lambda: (_ for _ in ()).throw(psutil.AccessDenied(10))
        gone = FakeProcess(11, "me", "python serve.py", GiB)
        gone.command = gone.name = lambda: (_ for _ in ()).throw(psutil.NoSuchProcess(11))
        return {10: hidden, 11: gone}


class DeadDevice(FakeDevice):
    @contextlib.contextmanager
    def oneshot(self):
        raise RuntimeError("GPU has fallen off the bus\nmore detail")
        yield


def test_failing_reads_become_none_not_exceptions():
    reading = GpuProbe(devices=lambda: [BrokenDevice(0), DeadDevice(1)]).read()
    (gpu,) = reading.gpus
    assert gpu.temperature is None and gpu.memory_used is None and gpu.power == 298.0
    assert [(p.pid, p.user, p.command) for p in gpu.processes] == [(11, "me", "?"), (10, "?", "/usr/bin/Xorg")]
    assert reading.error == "GPU 1 unreadable: GPU has fallen off the bus"


def test_nvml_errors_become_one_line_and_are_not_retried_at_once():
    from nvitop import libnvml

    calls = []

    def no_library():
        calls.append(1)
        raise libnvml.NVMLError_LibraryNotFound()

    probe = GpuProbe(devices=no_library)
    assert probe.read() == probe.read() == GpuReading((), NO_DRIVER)
    assert len(calls) == 1
    assert GpuProbe(devices=lambda: []).read() == GpuReading((), "no NVIDIA GPU found")
    reading = GpuProbe(devices=lambda: (_ for _ in ()).throw(libnvml.NVMLError_DriverNotLoaded())).read()
    assert reading.error == "NVIDIA driver not loaded"


@contextlib.contextmanager
def child(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


LISTEN = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); " \
         "print(s.getsockname()[1], flush=True); time.sleep(60)"
LISTEN_COMMAND = f'{sys.executable} -c "{LISTEN}"' 


@pytest.mark.slow  # starts a process
def test_host_probe_finds_the_server_by_port():
    with child([sys.executable, "-c", LISTEN]) as server:
        port = int(server.stdout.readline())
        probe = HostProbe(server_port=port, server_names=())
        assert probe.find_server().pid == server.pid
        sample = probe.read().server
        assert (sample.pid, sample.found_by) == (server.pid, "port")
        assert sample.name.startswith("python") and sample.rss > 0 and sample.cpu_percent >= 0

        fresh = HostProbe(server_port=port, server_names=())  # read() searches in the background
        deadline = time.monotonic() + 5
        while (found := fresh.read().server) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert found is not None and found.pid == server.pid
    assert probe.read().server is None  # gone: forgotten, and looked for again later


@pytest.mark.slow  # starts a process
def test_host_probe_finds_the_server_by_name(tmp_path):
    fake = tmp_path / "fakellm"
    fake.symlink_to(sys.executable)
    with child([str(fake), "-c", "print('up', flush=True); import time; time.sleep(60)"]) as server:
        server.stdout.readline()
        probe = HostProbe(server_names=("fakellm",))
        assert probe.find_server().pid == server.pid
        sample = probe.read().server
        assert (sample.pid, sample.name, sample.found_by) == (server.pid, "fakellm", "name")


def test_name_matching():
    names = frozenset({"ollama", "vllm", "sglang", "llama-server"})
    assert _matches({"name": "llama-server", "cmdline": []}, names)
    assert _matches({"name": "python3", "cmdline": ["/usr/bin/python3", "/usr/local/bin/vllm", "serve"]}, names)
    assert _matches({"name": "python3", "cmdline": ["python3", "-m", "sglang.launch_server"]}, names)
    assert not _matches({"name": "python3", "cmdline": ["python3", "ollama_client.py"]}, names)
    assert not _matches({"name": "bash", "cmdline": ["bash", "-m"]}, names)


def test_host_sample_is_sane():
    probe = HostProbe(server_names=())
    time.sleep(0.05)
    sample = probe.read()
    assert len(sample.cpu_percent) == psutil.cpu_count()
    assert all(0 <= c <= 100 for c in sample.cpu_percent) and 0 <= sample.cpu_total <= 100
    assert len(sample.load_avg) == 3
    assert sample.mem_total > 0 and 0 < sample.mem_available <= sample.mem_total
    assert 0 <= sample.mem_used <= sample.mem_total and sample.mem_cached >= 0
    assert 0 <= sample.swap_used <= sample.swap_total or sample.swap_total == 0
    assert sample.server is None


# A server started alone in its own session (as a shell's job or a service is): a launcher whose child owns the
# port and has a sibling (TGI's launcher, router and shard), and a worker whose parent exited (re-parented
# to init, still in the group).
FAMILY = """
import os, socket, subprocess, sys, time
if sys.argv[1:] == ["router"]:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    print(s.getsockname()[1], flush=True); time.sleep(60)
elif sys.argv[1:] == ["orphan-parent"]:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]); os._exit(0)
else:
    router = subprocess.Popen([sys.executable, __file__, "router"], stdout=subprocess.PIPE, text=True)
    shard = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    subprocess.run([sys.executable, __file__, "orphan-parent"])
    print(router.stdout.readline().strip(), shard.pid, flush=True); time.sleep(60)
"""


@contextlib.contextmanager
def session(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@pytest.mark.slow  # starts a process
def test_the_server_is_its_whole_process_family(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(FAMILY)
    with session([sys.executable, str(script)]) as launcher:
        port, shard = (int(word) for word in launcher.stdout.readline().split())
        owner = _listening_pid(port)
        assert owner not in (None, launcher.pid)
        pids = family_pids(psutil.Process(owner))
        assert pids[0] == launcher.pid  # climbed from the port's owner to the launcher
        orphans = [p for p in pids if psutil.Process(p).ppid() != launcher.pid and p != launcher.pid]
        assert owner in pids and shard in pids and len(orphans) == 1  # the re-parented worker, by its group
        assert os.getpid() not in pids

        probe = HostProbe(server_port=port, server_names=())
        probe.find_server()
        time.sleep(0.2)
        sample = probe.read().server
        assert sample.pid == launcher.pid and sample.family == pids and len(sample.members) == 4
        assert sample.rss == sum(m.rss for m in sample.members) and sample.cpu_percent >= 0
        assert sample.name == "launcher.py"  # what the interpreter runs


@pytest.mark.slow  # starts a process
def test_the_climb_stops_at_a_shell_and_leaves_it_out(tmp_path):
    with session(["bash", "-c", LISTEN_COMMAND + "; true"]) as shell:  # `; true`: bash cannot exec
        port = int(shell.stdout.readline())
        owner = _listening_pid(port)
        assert owner != shell.pid
        assert family_pids(psutil.Process(owner)) == (owner,)


def test_labels_say_what_an_interpreter_runs():
    assert label("python", ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]) == "vllm"
    assert label("python3", ["python3", "/usr/local/bin/sglang", "serve"]) == "sglang"
    assert label("python", ["python", "-c", "print(1)"]) == "python"
    assert label("ollama", ["/usr/bin/ollama", "runner"]) == "ollama"
