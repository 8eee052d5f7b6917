"""The project's promises about itself: CI runs the README's command, the describe binary runs."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(REPO, name)) as f:
        return f.read()


def test_ci_runs_the_readmes_test_command():
    readme = _read("README.md")
    block = re.search(r"The tests \(the command CI runs\):\s+```bash\n(.+?)\n```", readme, re.S)
    assert block, "README.md must show the test command after 'The tests (the command CI runs):'"
    command = block.group(1).strip()
    assert command in _read(".ci/run").splitlines()


def test_describe_prints_the_papers_counts():
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.describe"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "60,965,224" in proc.stdout
    assert "290,400" in proc.stdout and "43,264" in proc.stdout
