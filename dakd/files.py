"""Files written safely and list files read one way: atomic writes (a temporary file moved into place
with ``os.replace``, so a reader never sees half a file and an interrupted run leaves the old one),
JSON, and lists of one entry per line."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dakd.errors import DakdError


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "w") -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        try:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(handle.name, 0o644)  # temporary files are created 0600
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, lambda handle: json.dump(data, handle, indent=2, sort_keys=True))


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def read_list(path: str | os.PathLike, what: str) -> list[str]:
    """The entries of a list file, one per line: blank lines and comments dropped.

    A comment is a line starting with ``#`` or the rest of a line after whitespace and ``#``; a ``#``
    inside an entry stays (XD-Violence ids contain ``#``).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DakdError(f"{path}: cannot read {what} ({error.strerror})") from None
    entries = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in lines)
    return [entry for entry in entries if entry]
