"""Finding what differs between Stash and Plex, and enqueueing only that.

Sync All's listing pass (`bulk`: the ledger rule), reconcile's gaps (`gaps`, pure, and
`reconcile`, which reads a paged Plex listing), the dry run's judgement (`dryrun`) and the
expansion of performer/studio/tag changes into scenes (`fanout`). Everything here takes the
queue and the readers it needs; nothing here drains, takes the processor lock or talks to
Plex for a scene itself. The tasks that run these passes and then the drain are `tasks/`.
"""
