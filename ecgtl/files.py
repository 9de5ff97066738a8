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


MAX_FOLDER_DEPTH = 64  # real dataset trees are a few levels deep; 1 200 nested folders are an accident or an attack


def find_files(root: str | os.PathLike, suffix: str, *, first_only: bool = False) -> list[Path]:
    """Files below `root` whose name ends with `suffix`, sorted: an iterative walk (no recursion limit), at most
    `MAX_FOLDER_DEPTH` folders deep (deeper is one error naming the folder), each folder visited once (symlink
    loops end). With `first_only`, stops at the first match."""
    root = Path(root)
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise EcgtlError(f"{folder}: cannot list folder ({exc.strerror})") from None
        for entry in entries:
            if entry.is_dir():
                if depth + 1 > MAX_FOLDER_DEPTH:
                    raise EcgtlError(f"{root}: folders nested more than {MAX_FOLDER_DEPTH} deep (at {entry.path[:200]}...)")
                stack.append((Path(entry.path), depth + 1))
            elif entry.name.endswith(suffix):  # FIFOs and devices too: their reader reports them by name
                found.append(Path(entry.path))
                if first_only:
                    return found
    return sorted(found)
