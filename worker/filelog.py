"""The background worker's log: a rotating file in the data folder.

A detached worker has no Stash to talk to (its stderr is /dev/null so Stash's save does not
wait for it), so it logs to `worker.log` with the same interface and the same secret masking
as Stash's log. Rotation bounds the file on a library that syncs all day.
"""

from __future__ import annotations

import logging
import logging.handlers
from dataclasses import dataclass, field
from pathlib import Path

from base.protocol import StashLog, log_lines

LOG_FILE = "worker.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


@dataclass
class FileLog(StashLog):
    """A StashLog that writes timestamped lines to a rotating file instead of a stream."""

    path: Path | None = None
    _logger: logging.Logger = field(init=False, repr=False)

    def __post_init__(self) -> None:
        assert self.path is not None
        self._logger = logging.getLogger(f"stash2plex.worker.{self.path}")
        self._logger.propagate = False
        self._logger.setLevel(5)
        if not self._logger.handlers:
            handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True)
            handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
            self._logger.addHandler(handler)

    def _emit(self, level: str, msg: str) -> None:
        for line in log_lines(self.redact(str(msg))):
            self._logger.log(_LEVELS[level], line)

    def progress(self, fraction: float) -> None:
        """Progress bars belong to Stash's task view; the file gets the summaries instead."""

    def close(self) -> None:
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)


def open_worker_log(data_dir: Path, debug: bool = False) -> FileLog:
    return FileLog(debug_enabled=debug, path=data_dir / LOG_FILE)
