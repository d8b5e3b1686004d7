"""Whole-library work: Sync All, Sync Recent, Reconcile (and dry run).

Every path here decides *what* to enqueue (the sync ledger rule; for reconcile also the gaps
a paged Plex listing shows) and then drains with the one processing core; nothing here talks
to Plex for a scene itself.
"""
