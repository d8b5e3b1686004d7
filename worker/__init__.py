"""The one processing core: classify an outcome, decide what happens next, then act.

The decision half (`policy`, `backoff`, `breaker`, `pacing`, `summary`) is pure: no I/O, no
clock, no global randomness; time and the random source are arguments. The drain and the
background worker are the only parts that read the clock, sleep and write to the queue.

Kept empty on purpose: `worker.launch` runs on the hook's fast path, and importing this
package must not pull anything in.
"""
