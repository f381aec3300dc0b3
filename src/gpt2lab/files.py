"""Files written whole or not at all: the one way gpt2lab writes what a user keeps.

A file is written in full to a temporary name beside it (``.NAME.tmp``), flushed to disk, then
renamed over the old one, and the folder is flushed so the rename survives a power cut. A full
disk, a kill or Ctrl-C at any moment leaves either the old file or the new one, never a mix; the
temporary name starts with a dot, so a leftover is never mistaken for a result, and the next
write of the same file replaces it. Folders (checkpoints) are made the same way, under a
temporary name renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def reason(error: BaseException) -> str:
    """Why a write failed, in a few words ("No space left on device"): the OSError behind the
    error, however it was wrapped (torch.save raises a RuntimeError, write_atomic an
    OutputError), else the error's first line."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return (str(error).splitlines() or [type(error).__name__])[0]


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the names renamed into it) to disk; a no-op where the system
    cannot open a folder (Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_files(contents: Mapping[str | Path, bytes | str], *, what: str | None = None) -> None:
    """Write several files, each whole or not at all: all are written and flushed under
    temporary names first, and renamed into place only when every one is complete, so a failure
    while writing (a full disk) leaves every old file as it was. Text is written as UTF-8,
    unchanged (no newline translation).

    Raises OutputError "cannot write WHAT: REASON" (``what`` defaults to the paths) on OSError;
    no temporary file is left behind.
    """
    paths = {Path(path): data for path, data in contents.items()}
    staged: dict[Path, Path] = {}
    try:
        try:
            for path, data in paths.items():
                staged[path] = path.with_name(f".{path.name}.tmp")
                with open(staged[path], "wb") as f:
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                    f.flush()
                    os.fsync(f.fileno())
            for path, tmp in staged.items():
                os.replace(tmp, path)
            for folder in dict.fromkeys(path.parent for path in paths):
                fsync_folder(folder)
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
    except OSError as e:
        target = what or ", ".join(str(path) for path in paths)
        raise OutputError(f"cannot write {target}: {reason(e)}") from e


def write_atomic(path: str | Path, data: bytes | str, *, what: str | None = None) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all; returns the path.

    Raises OutputError "cannot write PATH: REASON" on OSError, with the old file unchanged.
    """
    write_files({path: data}, what=what)
    return Path(path)


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A temporary folder (``.tmp-NAME-PID``, beside ``final``) to fill; when the block ends
    without error its files are flushed and it is renamed to ``final`` (replacing a folder of
    that name), else it is removed. Errors propagate as raised: the caller says what failed."""
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_folder(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_folder(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
