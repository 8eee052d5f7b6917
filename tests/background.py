"""Whole processes that run in the background while the in-process tests go on.

A test that needs processes (a signal, a kill, several workers, a fresh interpreter) spends
most of its time waiting for them to import TensorFlow, on one core, while the in-process
tests leave most of the second core idle. So such work is a job: a function that starts the
processes, waits for them and returns what the tests read. `@background.job("tools_data_dir")`
registers one (its first argument is a fresh folder, then those session fixtures' values) and
turns it into a session fixture of the same name, whose value is the job's result.

tests/conftest.py runs the jobs of the collected tests one after another in a thread, once the
early processes have finished, and orders the tests that read them last. A job only starts and
watches processes: anything in-process (training, TensorFlow ops) stays in the tests, which run
in the main thread. Nor does a job read what the tests change while it runs: it touches no
TensorFlow (a test may have taken it out of sys.modules) and starts its processes with
`ENVIRONMENT`, the environment as the session began, never with `os.environ` (a test may have
set a variable for itself).
"""

import os

import pytest

JOBS = {}  # fixture name: (function, the names of the session fixtures it takes)
ENVIRONMENT = dict(os.environ)  # imported while the tests are collected, before any runs


def job(*fixtures: str):
    """Registers the decorated function as a job; returns the session fixture of its result."""

    def register(function):
        name = function.__name__
        JOBS[name] = function, fixtures

        @pytest.fixture(scope="session", name=name)
        def result(_background_jobs):
            return _background_jobs(name)

        result.__doc__ = function.__doc__
        return result

    return register
