"""The project's promises about itself: CI runs the README's command, the README keeps to its
budget, the describe binary runs."""

import os
import re

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


def test_the_readme_is_a_guide_within_its_budget():
    # 12 KB: what a user reads before the first command; figures and decisions go to BUILD.md
    assert len(_read("README.md").encode()) <= 12_000


def test_describe_prints_the_papers_counts(binary_runs):
    run = binary_runs["describe:ok"]  # `python -m alexnet_tf.describe`
    assert run["code"] == 0, run["stderr"][-2000:]
    assert "60,965,224" in run["stdout"]
    assert "290,400" in run["stdout"] and "43,264" in run["stdout"]
