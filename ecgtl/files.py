"""The one way ecgtl reads a file a user names (headers, weights tables, grid and search-space files, ledgers):
regular files only, bounded in size, and YAML without aliases.

A FIFO, a device (`/dev/zero`) or a directory is refused at once without blocking (opened non-blocking, checked
with fstat before reading); a file larger than its limit is refused before it is read; text must be UTF-8.
Every refusal is one line naming the file (`EcgtlError`, or the error class the caller asks for).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ecgtl.errors import EcgtlError

# Limits for the small text files a user names; records have their own (records.MAX_HEADER_BYTES).
MAX_CONFIG_BYTES = 1 << 20  # grid, search space, weights tables, ledgers


def read_regular_file(path: str | os.PathLike, limit: int, what: str, error: type[EcgtlError] = EcgtlError) -> bytes:
    """At most `limit` bytes of a regular file (after symlinks), or `error` naming the file and the problem."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot open {what} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: {what} is not a regular file")
        if info.st_size > limit:
            raise error(f"{path}: {what} is {info.st_size} bytes, more than the {limit} allowed")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{path}: {what} is more than the {limit} bytes allowed")
    return data


def read_text_file(path: str | os.PathLike, what: str, limit: int = MAX_CONFIG_BYTES) -> str:
    """A bounded regular file decoded as UTF-8."""
    data = read_regular_file(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EcgtlError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def load_yaml(path: str | os.PathLike, what: str) -> object:
    """A YAML file a user names: bounded, UTF-8, and without anchors or aliases (a few hundred bytes of nested
    aliases expand to gigabytes: the "billion laughs")."""
    import yaml

    text = read_text_file(path, what)

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise EcgtlError(f"{path}: {what} uses YAML aliases (line {event.start_mark.line + 1}); write the "
                                 "values out")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise EcgtlError(f"{path}: {what} is not YAML ({str(exc).splitlines()[0]})") from None
