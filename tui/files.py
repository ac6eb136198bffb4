"""Reading a file a user named (a prompt file, a run file): capped, and every way it can fail said in one line."""

from __future__ import annotations

import os

from tui.untrusted import one_line


def read_text_file(path: str | os.PathLike[str], name: str, limit: int, error: type[Exception]) -> str:
    """The file as UTF-8 text (a BOM dropped), or `error` with one line that starts with `name`."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # The read is capped too: a pipe or a growing file reports no true size.
            data = b"" if size > limit else f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except IsADirectoryError:
        raise error(f"{name}: a directory, not a file") from None
    except PermissionError:
        raise error(f"{name}: permission denied") from None
    except OSError as e:
        raise error(f"{name}: cannot read ({one_line(e.strerror or e, 100)})") from None
    size = max(size, len(data))
    if size > limit:
        raise error(f"{name}: too big ({size:,} bytes; the limit is {limit >> 20} MiB)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise error(f"{name} line {lineno}: not UTF-8 (byte 0x{data[e.start]:02x})") from None
