"""The calling thread's scheduling policy and priority, kept across code that may change them.

Two places need it: the control loop, which makes its thread real-time while it runs, and
dataset conversion, whose video encoder (run as root) leaves the thread that called it
SCHED_FIFO — and every process started from that thread afterwards inherits it.
"""
import contextlib
import os


@contextlib.contextmanager
def scheduling_kept():
    """Afterwards the thread's policy and priority are what they were on entry (set back only if
    they changed: a thread that was real-time already would get EINVAL for a normal policy's
    priority)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)
