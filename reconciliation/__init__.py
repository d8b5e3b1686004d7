"""Whole-library work: Sync All, Sync Recent (and, next, reconcile and dry run).

Every path here decides *what* to enqueue through the sync ledger rule and then drains with
the one processing core; nothing here talks to Plex for a scene itself.
"""
