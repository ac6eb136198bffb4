"""Reading a file a user named (a prompt file, a run file, a secret's file): capped, and every way it can fail
said in one line.

A regular file over the cap is refused before a byte is read; the read is capped too, since a pipe or a growing
file reports no true size. A device (`/dev/zero`) is refused. A pipe or FIFO (`<(zcat prompts.gz)`) is read
with a bounded wait: one with no writer would otherwise block tokentop forever.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import stat
from collections.abc import Iterator

from tui.untrusted import one_line

PIPE_WAIT_S = 5.0  # the longest a pipe may stay silent


def read_text_file(path: str | os.PathLike[str], name: str, limit: int, error: type[Exception]) -> str:
    """The file as UTF-8 text (a BOM dropped), or `error` with one line that starts with `name`."""
    data = read_bytes(path, name, limit, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise error(f"{name} line {lineno}: not UTF-8 (byte 0x{data[e.start]:02x})") from None


def read_bytes(path: str | os.PathLike[str], name: str, limit: int, error: type[Exception]) -> bytes:
    """The file's bytes, at most `limit`, or `error` in one line that starts with `name`."""
    with open_capped(path, name, limit, error) as f:
        return f.read()


@contextlib.contextmanager
def open_capped(path: str | os.PathLike[str], name: str, limit: int, error: type[Exception]
                ) -> Iterator[io.BufferedReader]:
    """The file opened for reading in binary (for a reader that streams it); every read past `limit` bytes, and
    every failure to open or read, raises `error` in one line that starts with `name`."""
    try:
        # Non-blocking: opening a FIFO for reading otherwise waits for a writer, without any bound.
        raw = open(path, "rb", buffering=0, opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK))
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except IsADirectoryError:
        raise error(f"{name}: a directory, not a file") from None
    except PermissionError:
        raise error(f"{name}: permission denied") from None
    except OSError as e:
        raise error(f"{name}: cannot read ({one_line(e.strerror or e, 100)})") from None
    with raw:
        mode = os.fstat(raw.fileno())
        if stat.S_ISREG(mode.st_mode) and mode.st_size > limit:
            raise error(_too_big(name, mode.st_size, limit))
        if not (stat.S_ISREG(mode.st_mode) or stat.S_ISFIFO(mode.st_mode)):
            raise error(f"{name}: a device, not a file")
        yield io.BufferedReader(_Capped(raw, name, limit, error, pipe=stat.S_ISFIFO(mode.st_mode)))


def _too_big(name: str, size: int, limit: int) -> str:
    return f"{name}: too big ({size:,} bytes; the limit is {_size(limit)})"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


class _Capped(io.RawIOBase):
    """Reads that count their bytes against the cap; on a pipe, each waits at most PIPE_WAIT_S for data."""

    def __init__(self, raw: io.FileIO, name: str, limit: int, error: type[Exception], pipe: bool) -> None:
        super().__init__()
        self._raw, self._name, self._limit, self._error, self._pipe = raw, name, limit, error, pipe
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        while True:
            if self._pipe and not select.select([self._raw], [], [], PIPE_WAIT_S)[0]:
                raise self._error(f"{self._name}: a pipe nothing was written to for {PIPE_WAIT_S:g} s")
            try:
                n = self._raw.readinto(buffer)
            except OSError as e:
                raise self._error(f"{self._name}: cannot read ({one_line(e.strerror or e, 100)})") from None
            if n is not None:  # None: a pipe with nothing to read after all; wait again
                break
        self._read += n
        if self._read > self._limit:
            raise self._error(_too_big(self._name, self._read, self._limit) if not self._pipe else
                              f"{self._name}: too big (over {_size(self._limit)})")
        return n


def utf8_lines(f: io.BufferedReader, name: str, error: type[Exception], max_line: int, what: str,
               first: int = 1) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of `f` that is not blank, counting from `first`; a BOM on line 1
    dropped. A line over `max_line` bytes or not UTF-8 is `error` naming the file and the line (`what`: no
    `what` is that long). Split on b"\\n" only: str.splitlines would also split at U+2028, which JSON allows."""
    lineno = first
    while raw := f.readline(max_line + 2):
        line = raw.rstrip(b"\r\n")
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if len(line) > max_line:
            raise error(f"{name} line {lineno}: over {max_line >> 20} MiB (no {what} is that long)")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{name} line {lineno}: not UTF-8 (byte 0x{line[e.start]:02x})") from None
        if text.strip():
            yield lineno, text
        lineno += 1
