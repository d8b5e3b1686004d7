"""The durable state of Stash2Plex: one module per table, in one SQLite file.

Everything lives in ``<data_dir>/stash2plex.db`` (``db.DB_FILE``). Modules, and what they
may import:

* ``inbox`` (stdlib only): the hook fast path, ``record_event``.
* ``spool`` (stdlib only): where a hook puts its event when the database does not take it
  in time; the processor absorbs it into the inbox exactly once.
* ``storage`` (stdlib only): what is wrong with a data folder that cannot be written, in
  words with the folder and the fix.
* ``recovery`` (stdlib, and ``lock`` while it replaces): finding a damaged database before
  a task or the worker opens it, and putting a fresh one in its place.
* ``db``, ``schema``, ``ledger``, ``dlq``, ``counters`` (stdlib only): connections and
  migrations, the sync ledger and its rule, dead letters, named counters.
* ``schedule``, ``fanout``, ``report``, ``compaction`` (persistqueue's row format): the
  live jobs' two rows, performer/studio/tag changes awaiting expansion, the readers.
* ``jobs`` (imports persistqueue): ``JobQueue``, the job life cycle and every transition
  that spans tables, one transaction each.
* ``state``: small named values (breaker, halt, cursors); ``lock`` (filelock): one
  processor at a time.

This file imports nothing on purpose: the hook imports ``sync_queue.inbox`` and must not pay
for persistqueue (about 100 ms) on its way.
"""
