"""`mcp-tasks demo` end to end: real server processes, retried failures, a kill, a lease expiry,
a resume from the checkpoint, a review, and a summary whose replay check finds nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASK = r"t-[0-9a-z]+"


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", "demo", "--seed", "11"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def section(log: str, title: str) -> list[list[str]]:
    """The rows of one summary table (after its header and dashes), split into columns."""
    block = log.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in block[2:]]


@pytest.mark.slow
def test_failures_are_retried_after_a_backoff_and_then_finish(demo):
    log = demo.stdout
    failed = re.findall(rf"FAILED ({TASK}) .*\(retryable; now PENDING\)", log)
    assert failed, log
    for tid in failed:
        assert re.search(rf"registry\s+requeued {tid} .*: retry 1 in [\d.]+s \(backoff\)", log), tid
        assert re.search(rf"claimed {tid} .*attempt 2", log), tid
    rows = {r[0]: r for r in section(log, "Tasks")}
    for tid in failed:
        assert rows[tid][3] == "DONE" and int(rows[tid][5]) >= 1


@pytest.mark.slow
def test_killed_agent_task_expires_and_another_agent_resumes_from_its_checkpoint(demo):
    log = demo.stdout
    how = r"its server \(pid \d+\) got SIGKILL" if sys.platform.startswith("linux") else r".*"
    killed = re.search(rf"(agent-\S+)\s+KILLED mid-task: {how} while holding ({TASK})", log)
    assert killed, log
    victim, tid = killed.groups()
    expired = re.search(rf"reaper\s+lease expired: {victim} held {tid} .*ACTIVE -> FAILED", log)
    assert expired, log
    resumed = re.search(rf"(agent-\S+)\s+claimed {tid} .*attempt 2\), resuming from checkpoint (\{{.*\}})", log)
    assert resumed, log
    assert killed.start() < expired.start() < resumed.start()
    resumer, checkpoint = resumed.group(1), json.loads(resumed.group(2))
    assert resumer != victim
    assert checkpoint["by"] == victim and checkpoint["step"] >= 1
    tasks = {r[0]: r for r in section(log, "Tasks")}
    assert tasks[tid][3] == "DONE" and int(tasks[tid][4]) >= 2 and tasks[tid][6] != victim
    agents = {r[0]: r for r in section(log, "Agents")}
    assert agents[victim][2] == "0" and agents[victim][4] == "1"  # done nothing, one lease expiry


@pytest.mark.slow
def test_review_is_approved_by_another_agent(demo):
    log = demo.stdout
    finished = re.search(rf"(agent-\S+)\s+finished ({TASK}) .*-> REVIEW", log)
    assert finished, log
    worker, tid = finished.groups()
    approved = re.search(rf"(\S+)\s+approved {tid} .*\(work by {worker}\) -> DONE", log)
    assert approved and approved.group(1) != worker, log
    tasks = {r[0]: r for r in section(log, "Tasks")}
    assert tasks[tid][7] == approved.group(1)


@pytest.mark.slow
def test_summary_every_task_done_and_replay_matches(demo):
    log = demo.stdout
    tasks = section(log, "Tasks")
    assert len(tasks) == 12 and all(r[3] == "DONE" for r in tasks), log
    assert re.search(r"^verify: 12 tasks, 0 differences", log, re.MULTILINE)
    assert log.rstrip().endswith("demo ok")
    assert "Traceback" not in demo.stderr
    db = re.search(r"sharing (\S+)", log).group(1)
    assert not Path(db).exists() and not Path(db).parent.exists()  # the temporary directory is gone
