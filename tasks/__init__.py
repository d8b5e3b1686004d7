"""The tasks Stash shows as buttons, one module per concern.

Each task takes the processor lock when it changes anything, runs its step (list and
enqueue, judge, report) and leaves the drain to the one core in `worker.core`.
"""
