"""Checks that need no model: input files, output paths, devices, numbers. They run before anything loads,
so a mistake costs seconds, and each names the problem and the fix in one line.

Files are checked with one `os.stat` and its errno, so a symlink loop, a FIFO or a device file is called
what it is (not "not found" or "empty"). Output places are checked by creating (and removing) a real file
there: permission bits lie for root and say nothing of read-only or virtual file systems (/proc).
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import DeviceError, InputFileError, OutputPathError, UsageError

# Refuse to start writing when less than this is free where the output goes: a half-written image
# helps nobody, and a full disk is better said before minutes of work than after.
MIN_FREE_BYTES = 16 * 1024 * 1024

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _errno_message(path, err: OSError, what: str) -> str:
    code = err.errno
    if code == errno.ENOENT:
        return f"{what} not found: {path}; check the path"
    if code == errno.ELOOP:
        return f"{what} {path} is a symbolic-link loop (the links point at each other); fix or remove the link"
    if code == errno.ENAMETOOLONG:
        return f"{what} path is too long for the file system ({len(os.fsencode(os.fspath(path)))} bytes): " \
               f"{str(path)[:80]}...; use a shorter name"
    if code == errno.ENOTDIR:
        return f"{what} {path}: a part of the path is a file, not a folder; check the path"
    if code in (errno.EACCES, errno.EPERM):
        return f"{what} {path}: permission denied; check the file's permissions"
    return f"{what} {path} cannot be read ({err.strerror or err}); check the path"


def _has_content(path) -> bool:
    """Whether a file that stat calls 0 bytes has content after all (a virtual file such as /proc/cpuinfo)."""
    try:
        with open(path, "rb") as file:
            return bool(file.read(1))
    except OSError:
        return False  # unreadable: the permission check below names it


def check_input_file(path, what: str = "file", *, error: type = InputFileError, allow_empty: bool = False) -> Path:
    """`path` as a Path when it is an existing, regular, non-empty file; else `error` with what it is instead."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise error(_errno_message(path, err, what)) from None
    except ValueError as err:  # embedded NUL byte
        raise error(f"{what} path {str(path)[:80]!r} is not a valid path ({err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a folder, not a file; pass the path of the {what} itself")
    for test, kind in _KINDS:
        if test(info.st_mode):
            raise error(f"{what} {path} is {kind}, not a regular file; pass a file saved on disk")
    if not allow_empty and info.st_size == 0 and not _has_content(path):
        raise error(f"{what} {path} is empty (0 bytes); re-export or re-download it")
    if not os.access(path, os.R_OK):
        raise error(f"{what} {path}: permission denied; check the file's permissions")
    return Path(path)


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _existing_ancestor(path: Path) -> Path:
    """The deepest part of `path` (itself included) that exists; OutputPathError if a file is in the way."""
    current = path
    while True:
        try:
            info = os.stat(current)
        except (FileNotFoundError, NotADirectoryError):
            if current.parent == current:
                return current
            current = current.parent
            continue
        except OSError as err:
            raise OutputPathError(_errno_message(current, err, "output path")) from None
        if current != path and not stat.S_ISDIR(info.st_mode):
            raise OutputPathError(f"cannot write under {current}: it is a file, not a folder; choose another output path")
        return current


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in `folder`: the one reliable test of writability."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".instantid-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise OutputPathError(f"cannot write {what} in {folder} ({reason}); choose a folder you can write to") from None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise OutputPathError(f"the disk holding {folder} is full ({free // 1024} KiB free); free some space or "
                              "choose another output place")


def _check_names(path: Path, what: str) -> None:
    limit = None
    for part in path.parts:
        if len(os.fsencode(part)) > 255:  # checked before any stat, which would fail with ENAMETOOLONG
            limit = limit or _name_max(Path(path.anchor or "."))
            if len(os.fsencode(part)) > limit:
                raise OutputPathError(f"{what} name '{part[:40]}...' is longer than the file system allows "
                                      f"({limit} bytes); use a shorter name")


def check_output_file(path, what: str = "output file", *, suffixes: Iterable[str] | None = None,
                      create_parents: bool = True) -> Path:
    """Refuse, before any work, an output file that could not be written: wrong extension, name too long,
    a file in the way, a missing folder (unless `create_parents`), no permission, a full disk."""
    try:
        path = Path(os.fspath(path)).expanduser()
    except (TypeError, ValueError) as err:
        raise OutputPathError(f"{what} {path!r} is not a valid path ({err})") from None
    if "\0" in str(path):
        raise OutputPathError(f"{what} path contains a NUL byte; pass a plain file name")
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        if path.suffix.lower() not in allowed:
            raise OutputPathError(f"{what} {path} has the extension '{path.suffix or '(none)'}'; use one of "
                                  f"{', '.join(allowed)}")
    _check_names(path, what)
    existing = _existing_ancestor(path)
    if existing == path:
        if path.is_dir():
            raise OutputPathError(f"{what} {path} is a folder; pass a file name inside it")
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OutputPathError(f"{what} {path} exists and is not a regular file; choose another name")
        existing = path.parent
    elif existing != path.parent and not create_parents:
        raise OutputPathError(f"the folder {path.parent} for the {what} does not exist; create it first")
    _probe_writable(existing, what)
    return path


def check_output_dir(path, what: str = "output folder") -> Path:
    """Refuse an output folder that could not be created or written (see check_output_file)."""
    path = Path(os.fspath(path)).expanduser()
    _check_names(path, what)
    existing = _existing_ancestor(path)
    if existing == path and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder; choose another path")
    _probe_writable(existing, what)
    return path


def write_atomically(path, write: Callable[[Path], None], what: str = "output file") -> Path:
    """Call write(temporary path) beside `path`, then rename it over `path`: a failure (disk full, killed
    process) never leaves a half-written file under the real name. OSError -> OutputPathError."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.stem[:40]}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except OSError as err:
        raise OutputPathError(f"could not write {what} {path} ({err.strerror or err}); check free space and "
                              "permissions") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def check_json_object(path, what: str, *, error: type = UsageError) -> dict:
    """The JSON object in file `path`; `error` if it is unreadable, not JSON, or JSON but not an object."""
    import json

    check_input_file(path, what, error=error)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise error(f"{what} {path} is not valid JSON ({err}); restore or rewrite it") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} holds a JSON {type(data).__name__}, not an object of settings; restore or "
                    "rewrite it")
    return data


# Device names this project runs on (torch's spelling): the name is checked without importing torch, so
# a typo is refused at once; only whether a GPU is there needs torch.
_DEVICE_NAME = re.compile(r"(?P<type>cpu|cuda|mps)(:(?P<index>\d+))?")
_TORCH_DEVICE_TYPE = re.compile(r"[a-z_]+(:\d+)?")


def check_device(name: str) -> str:
    """"auto" or a torch device name that exists here; DeviceError naming the devices that do."""
    if name in (None, "", "auto"):
        return "auto"
    parsed = _DEVICE_NAME.fullmatch(str(name))
    if parsed is None:
        kind = "not supported" if _TORCH_DEVICE_TYPE.fullmatch(str(name)) else "not a device name"
        raise DeviceError(f"unknown device '{name}' ({kind} here); use auto, cpu, cuda, cuda:N or mps")
    if parsed["type"] == "cpu":
        return name
    import torch

    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this machine has no usable CUDA GPU (or this torch build has no CUDA "
                              "support); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {name}: there {'is' if count == 1 else 'are'} only {count} CUDA device(s), "
                              f"numbered 0 to {count - 1}")
        return name
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"--device {name}: Apple's MPS is not available here; use --device cpu or auto")
        return name
    raise AssertionError(f"unreachable: {device.type}")  # the pattern admits cpu, cuda and mps only


def check_finite(value, name: str) -> float:
    """A real, finite number (not NaN, not inf, not a string or complex); UsageError otherwise."""
    import numbers

    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy / torch 0-d arrays
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be a number, got {type(value).__name__} {str(value)[:40]!r}")
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"{name} must be a finite number, got {number}")
    return number
