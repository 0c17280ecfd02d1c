"""Atomic file and folder writes (temp file or folder next to the target + rename), small JSON helpers, and the
checks that turn an unwritable or full output folder into one clear line
(:class:`~aselect_bench.errors.UnwritableError`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aselect_bench.errors import CorruptFileError, UnwritableError


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder next to ``folder``; when the block ends normally it replaces
    ``folder``. On an error or interrupt the temporary folder is removed and ``folder`` is left as it was."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    A folder that cannot be created or written (read-only, full, a file in the way) is one :class:`UnwritableError`
    naming the file and the reason; nothing is left behind."""
    path = Path(path)
    make_folder(path.parent, f"the folder of {path}")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _unwritable(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _unwritable(path, err) from None
        raise
    return path


def _reason(err: OSError) -> str:
    """``"No space left on device"`` etc.: the system's words for ``err``, without the file name it repeats."""
    return err.strerror or str(err)


def _unwritable(path: Path, err: OSError) -> UnwritableError:
    if err.errno == errno.EISDIR:
        return UnwritableError(f"cannot write {path}: it is a folder; give the path of a file to write instead")
    hint = ("free space on that disk or write elsewhere" if err.errno in (errno.ENOSPC, errno.EDQUOT)
            else "choose a folder you can write to")
    return UnwritableError(f"cannot write {path}: {_reason(err)}; {hint}")


def make_folder(folder: str | os.PathLike, what: str = "the output folder") -> Path:
    """``mkdir -p folder``, or one :class:`UnwritableError` naming ``what`` and why (read-only, a file in the way)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnwritableError(f"cannot create {what} {folder}: a file is in the way (it, or a folder above it, is a "
                              f"file); choose another folder") from None
    except OSError as err:
        raise UnwritableError(f"cannot create {what} {folder}: {_reason(err)}; choose a folder you can write "
                              f"to") from None
    return folder


def check_writable(folder: str | os.PathLike, what: str = "the output folder") -> Path:
    """Before the work starts: create ``folder`` if needed and write (then remove) a small file in it, so an
    unwritable output folder is one clear line now, not a traceback after hours of work."""
    folder = make_folder(folder, what)
    try:
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"x")
            f.flush()
    except OSError as err:
        raise UnwritableError(f"cannot write to {what} {folder}: {_reason(err)}; choose a folder you can write "
                              f"to") from None
    return folder


def reserve_file(path: str | os.PathLike, size: int, what: str = "this file") -> Path:
    """Create ``path`` with ``size`` bytes whose disk blocks are reserved now (not a sparse file).

    A memory-mapped sparse file on a full disk dies with ``SIGBUS`` (exit 135, no message) at the first write
    to an unbacked page; reserving up front turns that into one :class:`UnwritableError` naming the folder and the
    bytes needed, and removes the file. An existing file is extended (and its holes filled) the same way."""
    path = Path(path)
    make_folder(path.parent, f"the folder of {what}")
    existed = path.exists()
    free = shutil.disk_usage(path.parent).free
    have = path.stat().st_blocks * 512 if existed else 0
    if size - have > free:
        if not existed:
            path.unlink(missing_ok=True)
        raise _no_room(path, what, size, free)
    try:
        with open(path, "r+b" if existed else "wb") as f:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, max(size, 1))
            f.truncate(size)
    except OSError as err:
        if not existed:
            path.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_room(path, what, size, shutil.disk_usage(path.parent).free) from None
        raise UnwritableError(f"cannot create {path} for {what}: {_reason(err)}; choose a folder you can write "
                              f"to") from None
    return path


def _no_room(path: Path, what: str, size: int, free: int) -> UnwritableError:
    return UnwritableError(f"no room for {what} in {path.parent}: it needs {size:,} bytes ({size / 2**20:.1f} MiB) "
                           f"and {free:,} are free; free space there or point it at a larger disk")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> Any:
    """The JSON value in ``path``; a damaged, badly encoded or (with ``keys``: an object lacking one of them)
    misshapen file is one :class:`CorruptFileError` naming it, never a traceback."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(path, f"it is not valid UTF-8 JSON ({err})") from None
    missing = [k for k in keys if not isinstance(value, dict) or k not in value]
    if missing:
        raise _corrupt(path, f"it has no {missing[0]!r} entry")
    return value


def read_text(path: str | os.PathLike, what: str = "this file") -> str:
    """The UTF-8 text of ``path`` (``what`` names it in the error); bad encoding is one :class:`CorruptFileError`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"cannot read {what} {path}: it is not UTF-8 text (byte {err.start}: "
                               f"{err.reason}); restore it from the dataset's archive or save it as UTF-8") from None


def _corrupt(path, problem: str) -> CorruptFileError:
    return CorruptFileError(f"cannot read {path}: {problem}; it is damaged (an interrupted copy or a full disk?): "
                            f"delete it to have it recomputed, or restore it")


def file_identity(path: str | os.PathLike) -> str:
    """``path:size:mtime_ns`` -- a file whose content changes gets a new identity (cheap: one ``stat``); for a
    file's place and time. What a file *holds*, wherever it lies and whenever it was touched, is
    :func:`content_identity`."""
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


#: Files up to this size are hashed whole; a larger one by its first and last :data:`DIGEST_PART` bytes and size
#: (ADE20K's 25,000 images and annotations: about 0.5 GB read once per process).
DIGEST_WHOLE, DIGEST_PART = 1 << 14, 1 << 13


def content_identity(path: str | os.PathLike) -> str:
    """``size:digest`` of what the file holds, not where it lies nor when it was touched (a copied or ``touch``ed
    file keeps it). The digest is cheap: the whole file up to 16 KiB, else its first and last 8 KiB (an image
    re-encoded, edited or cut short changes them: its headers and tables, the end of its coded data). Read once per process while the file's size and mtime stay;
    a file that cannot be opened is ``unreadable:<reason>``."""
    try:
        st = os.stat(path)
    except OSError as err:
        return f"unreadable:{_reason(err)}"
    return _content_identity(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.cache
def _content_identity(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            if size <= DIGEST_WHOLE:
                h.update(f.read())
            else:
                h.update(f.read(DIGEST_PART))
                f.seek(size - DIGEST_PART)
                h.update(f.read(DIGEST_PART))
    except OSError as err:
        return f"unreadable:{_reason(err)}"
    return f"{size}:{h.hexdigest()}"


def relative_name(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` (``/`` separators), as a dataset's index names it wherever the folder lies."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a result file may record it: relative to the working folder when inside it, the system's
    temporary folder written ``$TMPDIR``, else with the home folder written ``~`` (no machine's absolute path in a
    committed result)."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return str(path)
    for base, shown in ((Path.cwd(), Path()), (Path(tempfile.gettempdir()).resolve(), Path("$TMPDIR")),
                        (Path.home(), Path("~"))):
        if path.is_relative_to(base):
            return str(shown / path.relative_to(base))
    return str(path)


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network (the values ``huggingface_hub`` itself reads as true)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
