"""Back up and restore the local SQLite metadata store (`mlops store backup|restore`).

Copying metadata.db with `cp` while something writes to it can produce a torn file. SQLite's
online backup API copies a consistent snapshot page by page even while another connection writes,
so `backup` can run at any time; `restore` replaces the store in one rename and must run while no
pipeline, server or `mlops` command writes to it. A PostgreSQL or MySQL store is backed up with
the database's own tools (pg_dump / pg_restore, docs/upkeep.md): this module says so instead of
guessing at credentials.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile

from cli_support import Exit
from metadata.connection import ConnectionConfigError, connection_config_from_url
from metadata.store import MetadataError, open_store
from upkeep.gc import UpkeepError

POSTGRES_HINT = (
    "a PostgreSQL store is backed up with pg_dump -Fc and restored with pg_restore "
    "(docs/upkeep.md, 'Backing up a PostgreSQL store')"
)


def sqlite_path(url: str) -> str:
    """The file of a SQLite store; any other backend is an error naming its own tools."""
    try:
        config = connection_config_from_url(url)
    except ConnectionConfigError as e:
        raise UpkeepError(str(e)) from None
    kind = config.WhichOneof("config")
    if kind != "sqlite":
        raise UpkeepError(f"not a SQLite store ({kind}): {POSTGRES_HINT}")
    return config.sqlite.filename_uri


def _copy(source: str, target: str) -> None:
    """A consistent copy of SQLite database `source` written to `target` atomically."""
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".metadata-", suffix=".db", dir=directory)
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(temp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _check_store(path: str) -> None:
    """The file is an ML Metadata store MLMD can read (else UpkeepError)."""
    try:
        open_store(path)
    except MetadataError as e:
        raise UpkeepError(str(e), e.status) from None


def backup(url: str, target: str) -> str:
    """Copy the store at `url` to `target` (online: another process may be writing)."""
    source = sqlite_path(url)
    if not os.path.isfile(source):
        raise UpkeepError(f"metadata store not found: {source}", Exit.INPUT_MISSING)
    if os.path.exists(target):
        raise UpkeepError(f"{target} exists; backups are never overwritten", Exit.REJECTED)
    try:
        _copy(source, target)
    except sqlite3.Error as e:
        raise UpkeepError(f"cannot back up {source}: {e}") from None
    _check_store(target)
    return target


def restore(backup_file: str, url: str) -> str:
    """Replace the store at `url` with `backup_file` (checked first), in one rename."""
    if not os.path.isfile(backup_file):
        raise UpkeepError(f"backup not found: {backup_file}", Exit.INPUT_MISSING)
    _check_store(backup_file)
    target = sqlite_path(url)
    try:
        _copy(backup_file, target)
    except sqlite3.Error as e:
        raise UpkeepError(f"cannot restore {backup_file}: {e}") from None
    return target
