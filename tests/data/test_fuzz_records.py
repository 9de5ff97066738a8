"""Fuzzing the record reader with Hypothesis (tests/data/fuzz_records.py), in a subprocess that limits its own
address space (`resource.RLIMIT_AS`: what it has mapped after imports + 768 MiB) under a wall-clock limit.

Every mutated header or payload must read to wfdb's values or be a one-line `RecordError`; a traceback of
another type, a hang (the time limit) or a huge allocation (MemoryError under the limit) fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_SAMPLES

SCRIPT = Path(__file__).with_name("fuzz_records.py")


def _fuzz(examples: int, seed: int, timeout: int) -> str:
    command = [sys.executable, str(SCRIPT), "--examples", str(examples), "--seed", str(seed)]
    if SHARED_SAMPLES.exists():
        command += ["--samples", str(SHARED_SAMPLES)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    match = re.search(r"fuzz cases (\d+): read (\d+) .* record problems (\d+)", done.stdout)
    assert match, done.stdout
    cases, read, problems = map(int, match.groups())
    assert cases == examples and read > 0 and problems > 0 and read + problems == cases
    return done.stdout


def test_fuzzed_headers_and_payloads_read_like_wfdb_or_are_record_problems():
    _fuzz(examples=600, seed=0, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_fuzzing_at_length(seed):
    _fuzz(examples=4000, seed=seed, timeout=900)
