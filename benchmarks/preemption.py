"""How long a preempted run takes to stop: SIGTERM → exit, against one step plus one checkpoint.

Trains the real network with `python -m alexnet_tf.train` at `--batch_size` on the digit demo
data (real scans from scikit-learn, converted into a temporary folder), sends SIGTERM once
`--steps_before` steps have been logged, and reads from the run's own log lines:

* `step_s`: the median time between consecutive progress lines (one step each, the wait for
  its input included);
* `rest_of_step_s`: from the signal (sent `--delay_fraction` of a step after a progress line,
  so that it falls inside a step) to the end of that step;
* `checkpoint_s`: how long the checkpoint written on SIGTERM took ("Saved ... in X s");
* `after_checkpoint_s`: from the end of that write to the process's exit (teardown);
* `sigterm_to_exit_s`: from the signal to the process's exit (status 75 expected);
* `ratio`: sigterm_to_exit_s / (step_s + checkpoint_s). The goal is about 1 or less: the step
  in progress is finished (on average half of it is left), then one checkpoint is written.
  Above 1 is the interpreter's and TensorFlow's teardown.

It prints one JSON line, with the machine's load average beside it.

    python benchmarks/preemption.py                         # batch 128, SIGTERM after 4 steps
    python benchmarks/preemption.py --batch_size=32 --steps_before=2
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("batch_size", 128, "Global batch size (section 5: 128).")
flags.DEFINE_integer("steps_before", 4, "Steps logged before the SIGTERM (>= 2).")
flags.DEFINE_float(
    "delay_fraction", 0.5, "Signal this fraction of a step after a progress line (0: at once)."
)
flags.DEFINE_string("work_dir", None, "Where data and the run go (default: a temporary folder).")

_LOG_TIME = re.compile(r"^[IWE]\d{4} (\d\d:\d\d:\d\d\.\d+)")


def _log_seconds(line: str) -> float | None:
    match = _LOG_TIME.match(line)
    if not match:
        return None
    t = datetime.datetime.strptime(match.group(1), "%H:%M:%S.%f")
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _demo_data(root: str) -> str:
    from alexnet_tf.convert import convert
    from alexnet_tf.data.demo_data import write_demo_tree

    tree = write_demo_tree(os.path.join(root, "raw"), train_per_class=20, val_per_class=2)
    data_dir = os.path.join(root, "data")
    result = convert(
        output_dir=data_dir, train_dir=tree["train_dir"], val_dir=tree["val_dir"],
        val_labels=tree["val_labels"], train_shards=1, val_shards=1, num_workers=1,
        show_progress=False,
    )  # fmt: skip
    assert result.complete, result.errors
    return data_dir


def measure(root: str, batch_size: int, steps_before: int, delay_fraction: float) -> dict:
    data_dir = _demo_data(root)
    command = [
        sys.executable, "-m", "alexnet_tf.train", f"--data_dir={data_dir}",
        f"--workdir={os.path.join(root, 'run')}", f"--batch_size={batch_size}",
        "--train_steps=100000", "--log_every_steps=1", "--checkpoint_every_steps=100000",
        "--eval_every_steps=0", "--init=he", "--input_scale=0.015625", "--shuffle_buffer=64",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True, stderr=subprocess.PIPE)
    step_times, lines = [], []
    for line in process.stderr:
        lines.append(line)
        if re.search(r"\bstep \d+/\d+ ", line):
            step_times.append(_log_seconds(line))
            if len(step_times) >= steps_before:
                break
    step_s = statistics.median(b - a for a, b in zip(step_times, step_times[1:]))
    time.sleep(delay_fraction * step_s)  # the signal falls inside the next step
    sent_clock = time.time()
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    status = process.wait()
    stop_s = time.perf_counter() - sent
    saved = [line for line in rest.splitlines() if re.search(r"\] Saved \S+ \(\d+ MB\)", line)]
    stopped = [line for line in rest.splitlines() if "] stopped by SIGTERM" in line]
    if status != 75 or not saved or not stopped:
        sys.exit(f"unexpected end (status {status}):\n{''.join(lines)}{rest}")
    megabytes, checkpoint_s = re.search(r"\((\d+) MB\) in ([\d.]+) s", saved[-1]).groups()
    checkpoint_s = float(checkpoint_s)
    # Log times are the local clock's seconds of the day, like `sent_clock`'s.
    local = time.localtime(sent_clock)
    sent_of_day = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + sent_clock % 1
    saved_at = _log_seconds(saved[-1])
    return {
        "batch_size": batch_size,
        "step_s": round(step_s, 2),  # input wait + update, between progress lines
        "rest_of_step_s": round(saved_at - checkpoint_s - sent_of_day, 2),  # after the signal
        "checkpoint_s": round(checkpoint_s, 2),
        "checkpoint_mb": int(megabytes),
        "after_checkpoint_s": round(stop_s - (saved_at - sent_of_day), 2),  # log, teardown
        "sigterm_to_exit_s": round(stop_s, 2),
        "ratio": round(stop_s / (step_s + checkpoint_s), 2),
        "saved_step": int(re.search(r"after step (\d+)", stopped[-1]).group(1)),
        "signal_after_step": len(step_times),
        "signal_delay_s": round(delay_fraction * step_s, 2),
        "exit_status": status,
        "loadavg": os.getloadavg(),
    }


def _settings() -> tuple[int, int, float]:
    f = flags.FLAGS
    return f.batch_size, f.steps_before, f.delay_fraction


def main(argv: list[str]) -> None:
    del argv
    if flags.FLAGS.work_dir:
        result = measure(flags.FLAGS.work_dir, *_settings())
    else:
        with tempfile.TemporaryDirectory() as root:
            result = measure(root, *_settings())
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
