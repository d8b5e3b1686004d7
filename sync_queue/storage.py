"""What went wrong with the data folder, in words a user can act on.

SQLite and the OS report a broken data folder in their own terms ("unable to open database
file", "disk I/O error", errno 30); the user needs the folder, the cause and the fix. The
decision is a pure function of the error and two facts about the folder (can we write to
it, how much space is left), gathered apart from it, so every case is testable without
breaking a real disk. Standard library only: the hook path uses it when it cannot record.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from base.datadir import DB_FILE
from base.errors import Stash2PlexError
from sync_queue.db import error_code

READ_ONLY = "read-only"
FULL = "full"
LOCKED = "locked"
CORRUPT = "corrupt"

#: Below this much free space an I/O error that names no cause is taken for a full disk.
LOW_SPACE = 1024 * 1024
CATCH_UP = "Reconcile Last 24 Hours"

_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class FolderFacts:
    writable: bool
    free_bytes: int | None


def folder_facts(folder: Path) -> FolderFacts:
    """Whether we may write the folder and its database, and the space left on its disk."""
    db = Path(folder) / DB_FILE
    writable = os.access(folder, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return FolderFacts(writable, free)


def classify(exc: BaseException, facts: FolderFacts, in_folder: bool = True) -> str | None:
    """READ_ONLY, FULL, LOCKED, CORRUPT, or None for an error that is not the folder's fault.

    `in_folder` is False for an OS error about a file elsewhere (a permission error on some
    other path is not the data folder's).
    """
    if isinstance(exc, OSError):
        if not in_folder:
            return None
        if exc.errno in _FULL_ERRNOS:
            return FULL
        if exc.errno in _READ_ONLY_ERRNOS:
            return READ_ONLY
        return None
    if not isinstance(exc, sqlite3.Error):
        return None
    name = error_code(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return LOCKED
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return CORRUPT
    if name.startswith("SQLITE_READONLY"):
        return READ_ONLY
    if name.startswith("SQLITE_FULL"):
        return FULL
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        if not facts.writable:
            return READ_ONLY
        if facts.free_bytes is not None and facts.free_bytes < LOW_SPACE:
            return FULL
    return None


def describe(problem: str, folder: Path) -> str:
    """The cause and the fix, without the ending that depends on who hit it."""
    db = Path(folder) / DB_FILE
    if problem == READ_ONLY:
        return (f"the data folder {folder} is read-only: make it writable for the user Stash runs as "
                f"(or set STASH2PLEX_DATA_DIR to a writable folder)")
    if problem == FULL:
        return f"the disk holding the data folder {folder} is full: free some space on it"
    if problem == LOCKED:
        return f"{db} is locked by another program: close it (a database browser, a backup tool)"
    return f"{db} is damaged: the next task moves it aside and starts a fresh database"


def task_message(problem: str, folder: Path, detail: str) -> str:
    if problem == CORRUPT:
        return f"{describe(problem, folder)}; run Reconcile All after it. ({detail})"
    return f"{describe(problem, folder)}, then run the task again. Nothing was half-written. ({detail})"


def hook_message(trigger: str, entity_id: int, problem: str, folder: Path, detail: str) -> str:
    return (f"could not record {trigger} for id {entity_id}: {describe(problem, folder)}, "
            f"then run {CATCH_UP} so Plex catches up on this change. ({detail})")


class DataFolderError(Stash2PlexError):
    """The data folder or its database cannot be used; the message says where and what to do."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def in_folder(exc: BaseException, folder: Path) -> bool:
    """Whether an OS error names a file in the data folder (or names none: a failed write)."""
    name = getattr(exc, "filename", None)
    if not name:
        return True
    try:
        return Path(os.fsdecode(name)).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError, TypeError):
        return False


def explain(exc: BaseException, folder: Path) -> DataFolderError | None:
    """A task's error as a DataFolderError when the folder is to blame, else None."""
    problem = classify(exc, folder_facts(folder), in_folder(exc, folder))
    if problem is None:
        return None
    return DataFolderError(task_message(problem, folder, _detail(exc)), problem)


def explain_hook(exc: BaseException, folder: Path, trigger: str, entity_id: int) -> DataFolderError | None:
    """The same for a hook that could record its event neither in the inbox nor the spool."""
    facts = folder_facts(folder)
    problem = classify(exc, facts, in_folder(exc, folder)) or (
        classify(exc.__context__, facts) if exc.__context__ else None)
    if problem is None:
        return None
    return DataFolderError(hook_message(trigger, entity_id, problem, folder, _detail(exc)), problem)


def _detail(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {text}"
