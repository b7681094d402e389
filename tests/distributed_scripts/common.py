"""Shared by the scripts that tests/test_distributed.py runs under ``mpiexec -n 2``.

Each script prints one ``PASS <check> <detail>`` line per check on every rank (the test
counts them) and raises on a failure; minidl.distributed.init makes an uncaught
exception abort every rank, so a failure ends the run at once with a traceback.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import minidl.distributed as dist  # noqa: E402


def report(check, detail=""):
    print(f"PASS {check} rank {dist.rank()} {detail}", flush=True)
