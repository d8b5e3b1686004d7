"""The one processing core: classify an outcome, decide what happens next, then act.

The decision half (`policy`, `backoff`, `breaker`, `summary`) is pure: no I/O, no clock, no
global randomness; time and the random source are arguments. The drain (`core`) and the
background worker (`background`) are the only parts that read the clock, sleep and write to
the queue; `services` wires settings to clients once per process, and `runtime` is what a
task handler or the worker is given. Request pacing is `plex.pacing`, where requests are.

Kept empty on purpose: `worker.launch` runs on the hook's fast path, and importing this
package must not pull anything in.
"""
