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
* :func:`open_append` (append-only logs and CSVs) and :class:`DirLock` never follow a symbolic link
  (``O_NOFOLLOW``) and refuse anything but a plain file of one link; :func:`check_not_link` refuses
  a linked output directory. A lock file is only ever truncated when it is a stoxbar lock file.
* :func:`sigint_handler` (the ``stoxbar`` command's Ctrl-C handler): records the interrupt and raises
  KeyboardInterrupt. A library that swallows it (a bare ``except`` in an import) cannot make a
  result appear after it: an atomic write refuses to commit once an interrupt is recorded.
* :func:`read_csv` / :func:`read_json` / :func:`read_jsonl`: readers of damaged files raise one
  :class:`~stoxbar.core.validation.ConfigError` naming the file; :func:`lock_holder` tells whether a live
  process holds a directory's lock, without taking it.

Design and sources: docs/reliability.md §2 (writes), §3 (locks), §7 (links, damaged files).

May import: the standard library and :mod:`stoxbar.core.validation` only (every layer may use it).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from stoxbar.core.validation import ConfigError

PathLike = Union[str, os.PathLike]
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".stoxbar.lock"


_INTERRUPTS: list = []  # signals recorded by sigint_handler since clear_interrupts()


def sigint_handler(signum: int, frame: Any) -> None:
    """SIGINT handler: record the interrupt, then raise KeyboardInterrupt (Python's default)."""
    _INTERRUPTS.append(signum)
    raise KeyboardInterrupt


def interrupted() -> bool:
    """True once :func:`sigint_handler` ran (since :func:`clear_interrupts`)."""
    return bool(_INTERRUPTS)


def clear_interrupts() -> None:
    """Forget recorded interrupts (at the start and end of a command)."""
    _INTERRUPTS.clear()


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
        if _INTERRUPTS:  # Ctrl-C came and something swallowed it: no result appears after it
            raise KeyboardInterrupt
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


MAX_READ_BYTES = 256 * 2**20  # assumption: no JSON/CSV file stoxbar writes comes near 256 MiB


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a (not oversized) file; a :class:`ConfigError` naming it otherwise."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file (expected {what})")
    if path.is_dir():
        raise ConfigError(f"{path}: a directory, not {what}")
    size = path.stat().st_size
    if size > MAX_READ_BYTES:
        raise ConfigError(f"{path}: {size} bytes is larger than the limit of {MAX_READ_BYTES} bytes for {what}; "
                          "the file is damaged or not stoxbar's")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); the file is damaged") from None
    if "\0" in text:
        raise ConfigError(f"{path}: holds a NUL byte; the file is damaged")
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, hex (which version of a checkpoint or source a result came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: PathLike) -> Any:
    """Parse a JSON file; a parse error is a :class:`ConfigError` that names the file.

    Non-finite numbers (``NaN``, ``Infinity``, which stoxbar never writes) are refused as damage.
    """
    path = Path(path)
    text = _read_text(path, "a JSON file")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid JSON ({exc}); not a file stoxbar wrote, or a damaged one") from None


def read_jsonl(path: PathLike) -> list:
    """The JSON objects of a JSON-lines file (one per line); a damaged line is a ConfigError naming it."""
    path = Path(path)
    out = []
    for i, line in enumerate(_read_text(path, "a JSON-lines file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: line {i} is not valid JSON ({exc}); the file is damaged") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: line {i} is a {type(value).__name__}, not a JSON object; the file is damaged")
        out.append(value)
    return out


def read_csv(path: PathLike, required: Sequence[str] = (), torn_tail_ok: bool = False) -> list:
    """The rows of a CSV file with a header, as dicts of strings; damage is a ConfigError naming the file.

    ``required``: columns the header must have. A row with more or fewer cells than the header is damage,
    except (``torn_tail_ok``) the last one of an append-only log, which a crash mid-append can leave.
    """
    return [dict(zip(head, r)) for head, r in _csv_rows(path, required, torn_tail_ok)[1]]


def read_csv_header(path: PathLike, required: Sequence[str] = (), torn_tail_ok: bool = False):
    """(header, rows as lists of strings) of a CSV file, checked as by :func:`read_csv`."""
    head, rows = _csv_rows(path, required, torn_tail_ok)
    return head, [r for _, r in rows]


def _csv_rows(path: PathLike, required: Sequence[str], torn_tail_ok: bool):
    path = Path(path)
    text = _read_text(path, "a CSV file")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ConfigError(f"{path}: not valid CSV ({exc}); the file is damaged") from None
    if not rows:
        return list(required), []
    head, body = rows[0], rows[1:]
    missing = [c for c in required if c not in head]
    if missing:
        raise ConfigError(f"{path}: no column(s) {missing} in its header {head}; the file is damaged")
    if len(set(head)) != len(head):
        raise ConfigError(f"{path}: repeated column names in its header {head}; the file is damaged")
    if torn_tail_ok and body and len(body[-1]) != len(head):
        body = body[:-1]  # a line cut short by a crash while it was appended
    for i, r in enumerate(body, 2):
        if len(r) != len(head):
            raise ConfigError(f"{path}: line {i} has {len(r)} cells, the header {len(head)}; the file is damaged")
    return head, [(head, r) for r in body]


def csv_number(path: PathLike, row: Dict[str, str], column: str, line: int = 0) -> float:
    """``float(row[column])``; a ConfigError naming the file, line and column if it is not a finite number."""
    try:
        value = float(row[column])
    except (KeyError, TypeError, ValueError):
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        where = f" line {line}" if line else ""
        raise ConfigError(f"{path}:{where} {column} = {row.get(column)!r} is not a finite number; the file is damaged")
    return value


# -- links -----------------------------------------------------------------------------------------
def check_not_link(path: PathLike, what: str = "path") -> Path:
    """Refuse a ``path`` that is a symbolic link (stoxbar never writes through one); returns it."""
    p = Path(path)
    if p.is_symlink():
        raise ConfigError(f"{what} {p}: is a symbolic link (to {os.readlink(p)}); stoxbar does not write through "
                          "links - remove it or name the real path")
    return p


def _open_plain(path: Path, flags: int, what: str) -> int:
    """``os.open`` that never follows a link and accepts only a plain file of one link."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{what} {path}: is a symbolic link; stoxbar does not follow links where it writes "
                              "- move it away") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        kind = "not a plain file" if not stat.S_ISREG(st.st_mode) else f"a file with {st.st_nlink} hard links"
        raise ConfigError(f"{what} {path}: is {kind}; stoxbar writes only its own plain files - move it away")
    return fd


def open_append(path: PathLike, what: str = "file"):
    """A text file opened for appending (created if missing), never through a link (see :func:`_open_plain`)."""
    path = Path(path)
    fd = _open_plain(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what)
    return os.fdopen(fd, "a", newline="")


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
LOCK_KEYS = ("pid", "host", "command", "started")
MAX_LOCK_BYTES = 65536  # a lock record is one short JSON line


def _is_lock_text(fd: int) -> bool:
    """True if the open file is empty or holds a stoxbar lock record (so truncating it loses nothing)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    if size > MAX_LOCK_BYTES:
        return False
    try:
        rec = json.loads(os.pread(fd, size, 0).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and set(rec) == set(LOCK_KEYS)


def lock_holder(directory: PathLike) -> Optional[Dict[str, Any]]:
    """The holder record of a *live* lock of ``directory`` ({} if unreadable), or None if nobody holds it.

    Takes no lock and writes nothing: a shared ``flock`` probe on a read-only descriptor.
    """
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            try:
                rec = json.loads(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8") or "{}")
            except (ValueError, UnicodeDecodeError):
                rec = {}
            return rec if isinstance(rec, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


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
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return {}
        try:
            rec = json.loads(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8") or "{}")
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        finally:
            os.close(fd)
        return rec if isinstance(rec, dict) else {}

    def acquire(self) -> "DirLock":
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        check_not_link(self.directory, self.what)
        try:
            fd = _open_plain(self.path, os.O_RDWR | os.O_CREAT, f"{self.what} lock file")
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
        if not _is_lock_text(fd):  # never truncate a file stoxbar did not write
            os.close(fd)
            raise ConfigError(f"{self.what} lock file {self.path}: holds something other than a stoxbar lock "
                              "record; stoxbar does not overwrite it - move it away")
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
