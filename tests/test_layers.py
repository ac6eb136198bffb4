"""The data layer (probes, protocols, engine, servers, the bench, and the helpers they share) never imports Textual;
the widgets and panes never read a probe's source themselves (psutil, NVML, HTTP)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def data_layer_modules() -> list[str]:
    modules = ["tui.untrusted", "tui.flags", "tui.files", "tui.http_read", "tui.export", "tui.polling",
               "tui.live_capacity", "tui.steering", "tui.metrics_server", "tui.limits"]
    for package in ("load", "probes", "servers", "bench"):
        for path in sorted((ROOT / "tui" / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


@pytest.mark.slow  # starts a process
def test_data_layer_imports_no_textual():
    modules = data_layer_modules()
    assert "tui.load.engine" in modules and "tui.servers.sim" in modules
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'textual')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_widgets_and_panes_only_draw_what_they_are_handed():
    readers = {"psutil", "nvitop", "pynvml", "httpx", "socket", "subprocess"}
    for folder in ("widgets", "panes"):
        for path in sorted((ROOT / "tui" / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                        for alias in node.names}
            imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            assert not imported & readers, f"{path.relative_to(ROOT)} imports {sorted(imported & readers)}"
