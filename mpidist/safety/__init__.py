"""Safety: a hung or dead rank never hangs the job.

``watchdog`` is a per-rank thread with its own store client that ends a test
past its deadline or left waiting on a failed peer, and collects where every
rank was; ``signals`` turns the launcher's SIGTERM into a callback even while
the main thread is stuck in C. Both produce data; the runner reports it.
"""
