"""The durable state of Stash2Plex: inbox, jobs, schedule, sync ledger, dead letters, lock.

Everything lives in one SQLite file, ``<data_dir>/stash2plex.db`` (``db.DB_FILE``).

Modules, and who may import them:

* ``inbox``  (stdlib only): the hook fast path, ``record_event``.
* ``spool`` (stdlib only): where a hook puts its event when the database does not take it
  in time; the processor absorbs it into the inbox exactly once.
* ``recovery`` (stdlib only): finding a damaged database and putting a fresh one in its place.
* ``schema``, ``db``, ``ledger``, ``dlq`` (stdlib only): tables, migrations, connections,
  the ledger rule and dead-letter records.
* ``jobs`` (imports persistqueue): ``JobQueue``, the processor's view of the queue.
* ``lock`` (imports filelock): ``ProcessorLock``, one processor at a time.

This file imports nothing on purpose: the hook imports ``sync_queue.inbox`` and must not pay
for persistqueue (about 100 ms) on its way.
"""
