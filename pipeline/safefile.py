"""Reading configuration files whose bytes heal does not choose: a repository's ``heal.toml``,
the operator configuration, packs and playbooks given to ``heal import`` / ``heal learn``.

A repository is untrusted input, so its ``heal.toml`` can be a symbolic link to ``/dev/zero``,
a FIFO nobody writes, a 10 GB file, bytes that are not UTF-8 or brackets nested 100 000 deep.
:func:`read_config_text` opens without blocking (``O_NONBLOCK``: a FIFO cannot hold heal),
refuses anything but a regular file (and, unless asked to follow them, symbolic links:
``O_NOFOLLOW``), reads at most ``limit`` bytes and decodes strict UTF-8; :func:`parse_toml`
and :func:`parse_yaml` turn a parser's recursion overflow into a message. Every refusal is a
:class:`FileRefused` whose text says what to change; callers wrap it in their own error
(``PolicyError``, ``ConfigError``, ``UsageError``) naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, BinaryIO

#: a repository's heal.toml and the operator configuration (a full policy is ~5 KB)
MAX_CONFIG_BYTES = 256 * 1024
#: a pack (heal export --pack) or a playbook: one pattern is ~2 KB, so ~8000 patterns
MAX_PACK_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class FileRefused(Exception):
    """A file heal will not read or parse; ``str()`` says why and what to change."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _read_bounded(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        except BlockingIOError:  # only a special file would block, and those are refused
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


_LINK = ("is a symbolic link; heal reads it only as a regular file in the repository: "
         "replace the link with the file itself")


def _open(path: Path | str, follow_symlinks: bool) -> int | None:
    """A descriptor opened without blocking and, unless asked, without following a link;
    None when the file does not exist. Raises: FileRefused."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        if not follow_symlinks:
            flags |= getattr(os, "O_NOFOLLOW", 0)
            # also where O_NOFOLLOW is missing, and for a dangling link (ELOOP, not ENOENT)
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise FileRefused(_LINK)
        return os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(_LINK) from exc
        raise FileRefused(f"cannot be read: {exc.strerror or exc}") from exc


def _read_regular(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file. Raises: FileRefused."""
    too_big = FileRefused(f"is larger than {limit // 1024} KiB, the most heal reads here; "
                          "make it smaller")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"is {_kind(st.st_mode)}, not a regular file; make it a plain "
                              "file")
        if st.st_size > limit:
            raise too_big
        data = _read_bounded(fd, limit)
    except OSError as exc:
        raise FileRefused(f"cannot be read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise too_big
    return data


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message: ``a FIFO``, ``a directory``..."""
    return "a regular file" if stat.S_ISREG(mode) else _kind(mode)


def open_regular(path: Path | str) -> BinaryIO:
    """``open(path, "rb")`` of a regular file (symbolic links followed), without ever
    blocking: a FIFO nobody writes held ``heal watch --once`` forever. The descriptor is
    opened ``O_NONBLOCK``, which a regular file ignores.

    Raises:
        FileNotFoundError: no such file.
        FileRefused: not a regular file (``str()`` names what it is), or unreadable.
    """
    fd = _open(path, follow_symlinks=True)
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused(f"is {_kind(mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_config_text(path: Path | str, *, limit: int = MAX_CONFIG_BYTES,
                     follow_symlinks: bool = False) -> str | None:
    """The file's text, or None when it does not exist.

    Raises:
        FileRefused: a symbolic link (unless ``follow_symlinks``), not a regular file, larger
            than ``limit`` bytes, unreadable, or not UTF-8.
    """
    fd = _open(path, follow_symlinks)
    if fd is None:
        return None
    try:
        data = _read_regular(fd, limit)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(f"is not UTF-8 at byte {exc.start}; save it as UTF-8") from exc


#: a document nested deeper than its parser goes
_NESTED = ("nested too deeply ({} inside each other hundreds of levels deep); flatten it")


def parse_toml(text: str) -> dict[str, Any]:
    """Raises: FileRefused (not TOML, or nested too deeply for the parser)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileRefused(f"not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise FileRefused(_NESTED.format("arrays or tables")) from exc


def parse_yaml(text: str) -> Any:
    """The project's safe YAML loader (:func:`pipeline.yamlload.safe_load`). Raises:
    FileRefused (not YAML, nested too deeply for the parser, or aliases expanding it beyond
    what its text holds)."""
    import yaml

    from pipeline.yamlload import AliasBomb, safe_load

    try:
        return safe_load(text)
    except AliasBomb as exc:
        raise FileRefused(f"refused: {exc}") from exc
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc) or "nested too deeply" in str(exc):
            raise FileRefused(_NESTED.format("lists or mappings")) from exc
        raise FileRefused(f"not valid YAML: {exc}") from exc


def load_yaml_file(path: Path | str, label: str) -> Any:
    """The YAML document of a file a person names (a pack, a playbook): followed through
    symlinks, at most MAX_PACK_BYTES.

    Raises:
        UsageError: ``<label>: <why>`` (missing, unreadable, not a regular file, too large,
            not UTF-8, not YAML, nested too deeply).
    """
    from pipeline.errors import UsageError

    try:
        text = read_config_text(path, limit=MAX_PACK_BYTES, follow_symlinks=True)
        if text is None:
            raise UsageError(f"{label}: cannot read it: no such file")
        return parse_yaml(text)
    except FileRefused as exc:
        raise UsageError(f"{label}: {exc}") from exc
