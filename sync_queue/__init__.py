"""The durable state of Stash2Plex: inbox, jobs, schedule, sync ledger, dead letters, lock.

Everything lives in one SQLite file, ``<data_dir>/stash2plex.db`` (``db.DB_FILE``).

Modules, and who may import them:

* ``inbox``  (stdlib only): the hook fast path, ``record_event``.
* ``schema``, ``db``, ``ledger``, ``dlq`` (stdlib only): tables, migrations, connections,
  the ledger rule and dead-letter records.
* ``jobs`` (imports persistqueue): ``JobQueue``, the processor's view of the queue.
* ``lock`` (imports filelock): ``ProcessorLock``, one processor at a time.

This file imports nothing on purpose: the hook imports ``sync_queue.inbox`` and must not pay
for persistqueue (about 100 ms) on its way.
"""
