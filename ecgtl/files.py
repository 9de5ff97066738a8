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
            try:
                is_folder = entry.is_dir()
            except OSError:  # a symlink to itself (ELOOP) or one that cannot be followed: not a folder to walk
                continue
            if is_folder:
                if depth + 1 > MAX_FOLDER_DEPTH:
                    raise EcgtlError(f"{root}: folders nested more than {MAX_FOLDER_DEPTH} deep (at {entry.path[:200]}...)")
                stack.append((Path(entry.path), depth + 1))
            elif entry.name.endswith(suffix):  # FIFOs and devices too: their reader reports them by name
                found.append(Path(entry.path))
                if first_only:
                    return found
    return sorted(found)


# ------------------------------------------------------------------------------------------------ writing
NAME_LIMIT = 120  # characters of a file name ecgtl derives from what it read (a record id): far below 255 bytes


def output_folder(out: str | os.PathLike) -> Path:
    """The folder a command writes into, checked (and created, with its parents) before any work: one line when
    it is a file, lies under a file, or cannot be created."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EcgtlError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EcgtlError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise EcgtlError(f"{out}: the output folder is not writable")
    return out


def safe_name(text: str, suffix: str = "", limit: int = NAME_LIMIT) -> str:
    """A file name made from text read in a file (a record's id): only letters, digits and `._-` kept, never a
    hidden or empty name, and at most `limit` characters (a longer one is cut and given a digest of the whole,
    so two long ids stay two names)."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "record"
    room = limit - len(suffix)
    if len(name) > room:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = f"{name[:room - 13]}-{digest}"
    return name + suffix


def check_targets(folder: str | os.PathLike, names) -> Path:
    """The output folder (`output_folder`) and the names to be written in it, checked before any work: plain file
    names (no separators, no `..`, at most 255 bytes), each absent or a file or symlink that a rename can replace
    (a folder, FIFO or device there is refused). Returns the folder."""
    folder = output_folder(folder)
    for name in names:
        if Path(name).name != name or name in ("", ".", "..") or len(name.encode("utf-8", "surrogateescape")) > 255:
            raise EcgtlError(f"{folder}: {name[:80]!r} is not a plain file name")
        target = folder / name
        if not target.is_symlink() and target.exists() and not target.is_file():
            raise EcgtlError(f"{target}: exists and is not a file; move it away first")
    return folder


def write_files(folder: str | os.PathLike, contents: dict[str, str | bytes | Path]) -> list[Path]:
    """The one way ecgtl writes output files: each of `contents` (name -> text, bytes, or a file already written
    elsewhere on the same filesystem, which is moved) into `folder`, nowhere else.

    - Names are plain file names (no separators, no `..`, at most 255 bytes), else nothing is written.
    - Whatever stands at a name is checked before anything is written: a folder (or a FIFO, a device) there is
      refused; a file or a symlink is replaced by a rename, which replaces the link itself and never writes
      through it to a file outside the folder.
    - Everything is written to temporary files in `folder` first, then renamed into place; if a rename fails,
      the ones already made are undone, so the folder holds either the old set of files or the new one.
    """
    import secrets
    import shutil

    folder = check_targets(folder, contents)
    token = secrets.token_hex(4)
    staged: dict[str, Path] = {}
    try:
        for name, content in contents.items():
            temporary = folder / f".{token}-{len(staged)}.tmp"
            if isinstance(content, Path):
                shutil.move(str(content), temporary)
            else:
                temporary.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
            staged[name] = temporary
        _swap_in(folder, staged, token)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
    return [folder / name for name in contents]


def _swap_in(folder: Path, staged: dict[str, Path], token: str) -> None:
    """Rename every staged file over its name; the old files are kept aside until all renames worked."""
    kept: dict[str, Path] = {}
    placed: list[str] = []
    try:
        for position, (name, temporary) in enumerate(staged.items()):
            target = folder / name
            if target.is_symlink() or target.exists():
                aside = folder / f".{token}-old-{position}"
                os.replace(target, aside)
                kept[name] = aside
            os.replace(temporary, target)
            placed.append(name)
    except OSError as exc:
        for name in placed:
            (folder / name).unlink(missing_ok=True)
        for name, old in kept.items():
            os.replace(old, folder / name)
        raise EcgtlError(f"{folder}: could not write {name} ({exc.strerror}); the files there are as they were") from None
    for old in kept.values():
        old.unlink(missing_ok=True)
