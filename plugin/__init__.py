"""The entry's package: what `Stash2Plex.py` dispatches to, and nothing any layer below imports.

`dispatch` (task modes and hook triggers to handlers), `hooks` (the fast path a save waits
for), `manifest` (generates Stash2Plex.yml from the tables and the settings schema),
`upgrade_note` (notes left for the user after an upgrade).
"""
