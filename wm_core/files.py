"""Files written whole or not at all, and their hashes: the one implementation every store, checkpoint and
report uses. A write goes to a temp file in the same folder (`.NAME.*.tmp`), is flushed to disk and moved into
place with `os.replace`, so a reader never sees half a file and a crash leaves at most a temp file, which
`clean_temp_files` removes at the next save."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` on a temp file in the same folder, then rename it into place
    (mode 0644: checkpoints and stores are meant to be shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """`data` into `path`, whole or not at all."""
    atomic_write(path, lambda f: f.write(data))


def strict(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: JSON that every parser reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of `obj` (see `strict`)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """`obj` as indented, strict JSON with sorted keys."""
    atomic_write_bytes(path, (dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json_file(path: Path | str, limit: int = 16 << 20) -> Any:
    """The JSON in a regular file of at most `limit` bytes, opened without following a symlink. ValueError with
    one line for a link, a directory, a pipe or device, an oversized file, text that is not JSON, or nesting too
    deep (so a file pointing at /dev/zero, a FIFO nobody writes to or a bracket bomb is refused instead of
    exhausting memory, blocking or overflowing the stack)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink; ENOTDIR and friends
        why = "is a symbolic link" if os.path.islink(path) else f"cannot be opened as a plain file ({e.strerror})"
        raise ValueError(f"{path} {why}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a pipe, socket or device"
            raise ValueError(f"{path} is {what}, not a regular file")
        with os.fdopen(fd, "rb") as f:
            fd = -1  # the file object closes it now
            data = f.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is over {limit >> 20} MiB; refusing to read it")
    try:
        return json.loads(data.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path} nests JSON too deeply") from None


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clean_temp_files(folder: Path | str) -> list[Path]:
    """Remove the temp files an interrupted write left in `folder` (its own `.NAME.*.tmp` files only)."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
