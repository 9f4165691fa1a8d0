"""Safe file output for every stoxbar writer: atomic writes and advisory directory locks.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: the data go to
  a temporary file ``.tmp-NAME.XXXX`` in the target's own directory, are fsynced, then appear under
  the final name in one step (``os.link`` when the target must not exist, ``os.replace`` when
  ``overwrite=True``). A crash leaves the old file or the new one, never half of one; what it can
  leave is a stray temporary file, which :func:`is_temp` recognises and :func:`clean_temp` removes.
  Without ``overwrite=True`` an existing file is never replaced (``FileExistsError``).
* :class:`DirLock`: an advisory ``fcntl.flock`` on ``DIR/.stoxbar.lock`` for the life of a sweep
  or training run. The holder's pid, host, command and start time are written into the lock
  file; a second holder is refused at once with :class:`LockedError` naming the first. The kernel
  drops the lock when its holder exits in any way (including ``kill -9``), so a stale lock file is
  never a block.
* :func:`check_writable_dir` / :func:`check_new_file`: refuse an unwritable output before any work.

Design and sources: docs/reliability.md §2 (writes), §3 (locks).

May import: the standard library and :mod:`stoxbar.validation` only (every layer may use it).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from stoxbar.validation import ConfigError

PathLike = Union[str, os.PathLike]
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".stoxbar.lock"


class LockedError(ConfigError):
    """Another live process holds the lock of a directory (the message names it)."""


def is_temp(path: PathLike) -> bool:
    """True for a temporary file left by an interrupted atomic write (``.tmp-*``)."""
    return Path(path).name.startswith(TMP_PREFIX)


def clean_temp(directory: PathLike) -> list:
    """Remove the stray temporary files directly in ``directory``; returns their paths.

    Call it only while holding the directory's :class:`DirLock` (a live writer's temp file would go).
    """
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if is_temp(p) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def _fsync_dir(directory: Path) -> None:
    try:  # make the rename durable (not supported on every file system)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns the path.

    ``overwrite=False`` (default): ``FileExistsError`` if ``path`` exists, checked at the moment the
    file appears (no race). Parent directories are created.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists: results are never overwritten; choose a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: never replaces a file another writer made
            except FileExistsError:
                raise FileExistsError(f"{path} exists: results are never overwritten; choose a new path") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if path.exists():  # a file system without hard links: check, then rename
                    raise FileExistsError(f"{path} exists: results are never overwritten; choose a new path") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: PathLike, text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 ``text``."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_json(path: PathLike, data: Any, *, overwrite: bool = False, indent: Optional[int] = 2,
                      sort_keys: bool = True) -> Path:
    """:func:`atomic_write_bytes` of ``data`` as JSON; NaN/inf are refused (``ValueError``), nothing written."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False)
    return atomic_write_text(path, text + "\n", overwrite=overwrite)


def read_json(path: PathLike) -> Any:
    """Parse a JSON file; a parse error is a :class:`ConfigError` that names the file."""
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the file is damaged - move it away "
                          "(its work is redone)") from None


# -- writable outputs --------------------------------------------------------------------------
def _probe(directory: Path) -> None:
    """Create and remove a temporary file in ``directory`` (OSError if it cannot take one: permission
    bits say nothing for root, a real write does)."""
    fd, probe = tempfile.mkstemp(prefix=f"{TMP_PREFIX}probe.", dir=directory)
    os.close(fd)
    os.unlink(probe)


def check_writable_dir(directory: PathLike, what: str = "output directory") -> Path:
    """Create ``directory`` if needed and prove it writable by writing a probe file; else ConfigError."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        _probe(d)
    except OSError as exc:
        raise ConfigError(f"{what} {d}: not writable ({exc.strerror or exc})") from None
    return d


def check_new_file(path: PathLike, flag: str = "path") -> Path:
    """Refuse, before any work, an output file that exists or whose directory cannot take it."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise FileExistsError(f"{flag} {p}: exists; results are never overwritten, choose a new path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{flag} {p}: directory {parent} does not exist")
    try:
        _probe(parent)
    except OSError as exc:
        raise ConfigError(f"{flag} {p}: directory {parent} is not writable ({exc.strerror or exc})") from None
    return p


def free_name(path: PathLike) -> Path:
    """``path`` if it does not exist, else the first free ``STEM-2.SUF``, ``STEM-3.SUF``, ..."""
    p = Path(path)
    n = 2
    while p.exists():
        p = Path(path).with_name(f"{Path(path).stem}-{n}{Path(path).suffix}")
        n += 1
    return p


# -- locks ---------------------------------------------------------------------------------------
class DirLock:
    """Exclusive advisory lock of a directory (module docstring); a context manager.

    ``DirLock(run_dir, "training run").acquire()`` raises :class:`LockedError` at once if another
    open lock holds it (also one in this same process). ``release()`` (or leaving the ``with``)
    drops it; so does the end of the process, however it ends.
    """

    def __init__(self, directory: PathLike, what: str = "directory", command: Optional[Sequence[str]] = None):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self.command = list(command) if command is not None else list(sys.argv)
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Dict[str, Any]:
        """What the lock file says about its (last) holder; {} if unreadable."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "DirLock":
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ConfigError(f"{self.what} {self.directory}: cannot create its lock file "
                              f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            h = self.holder()
            who = (f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('started', '?')}: "
                   f"{' '.join(map(str, h.get('command', []))) or '?'}") if h else "another process"
            raise LockedError(f"{self.what} {self.directory} is in use by {who}; wait for it to finish "
                              "or stop it (a lock of a dead process is released by the kernel)") from None
        info = {"pid": os.getpid(), "host": platform.node(), "command": self.command,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # the file stays (removing it would race with a new holder)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
