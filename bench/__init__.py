"""The benchmark harness: canonlog side by side with plain INSERT and eventsourcing.

Run it with `python -m bench.run` (see bench/README.md).
"""
