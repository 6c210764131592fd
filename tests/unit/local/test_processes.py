"""Starting and stopping components: sessions of their own, what a dead component left running, pid
files that name somebody else's process, private files, and SQLite's lock wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freshcast.local import config, processes
from freshcast.local.config import Airflow
from tests.helpers import file_mode

COMPONENT = r"""
import os, signal, sys, time
from pathlib import Path

home = Path(sys.argv[1])
(home / "made-by-component").write_text("a secret")


def note():
    with open(home / "pids", "a") as fh:
        fh.write(f"{os.getpid()}\n")


note()
for _ in range(2):
    if os.fork() == 0:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.fork()
        note()
        time.sleep(600)
        os._exit(0)
time.sleep(600)
"""


def start_fake(af: Airflow, component: str = "scheduler") -> list[int]:
    """Start COMPONENT as `component`; returns the pids of its five processes, leader first."""
    (af.home / "pids").unlink(missing_ok=True)
    leader = processes.spawn(af, component, [sys.executable, "-c", COMPONENT, str(af.home)])
    noted = af.home / "pids"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [int(p) for p in noted.read_text().split()] if noted.exists() else []
        if len(pids) == 5:
            assert pids[0] == leader
            return pids
        time.sleep(0.05)
    raise AssertionError("the fake component did not start its processes")


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` that run (a zombie has ended)."""
    found = [processes.proc(pid) for pid in pids]
    return [p.pid for p in found if p is not None and p.alive]


@pytest.fixture
def bystander():
    """A process of somebody else, leading a session of its own: nothing here may touch it."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield process
    assert process.poll() is None, "a process this project did not start was killed"
    process.kill()
    process.wait()


def test_stop_ends_processes_in_groups_of_their_own_and_waits_until_they_are_gone(af, bystander):
    pids = start_fake(af)
    leader = pids[0]
    assert {os.getpgid(pid) for pid in pids[1:]}.isdisjoint({leader})  # killpg would miss them
    assert processes.read_pid(af, "scheduler") == leader
    lines: list[str] = []
    began = time.monotonic()
    assert processes.stop(af, say=lines.append, grace=1.0) == [leader]
    assert alive(pids) == []  # when stop returns, not some time later
    assert 1.0 <= time.monotonic() - began < 15  # SIGTERM ignored: SIGKILL after the grace
    assert lines == [f"stopping scheduler (pid {leader}, 5 process(es))"]
    assert not af.pid_file("scheduler").exists()
    assert processes.stop(af, say=lines.append) == []
    assert lines[-1].startswith("nothing to stop")


def test_what_a_killed_component_left_running_is_stopped_by_stop_and_by_up(
    af, bystander, monkeypatch
):
    pids = start_fake(af)
    os.kill(pids[0], signal.SIGKILL)
    os.waitpid(pids[0], 0)
    assert processes.read_pid(af, "scheduler") is None
    assert sorted(alive(pids)) == sorted(pids[1:])  # orphans, still in the dead leader's session

    # `make run` after the crash: up() stops them before it starts the scheduler again.
    started_now: list[str] = []
    monkeypatch.setattr(processes, "LEFTOVER_GRACE", 0.5)
    monkeypatch.setattr(processes, "airflow_cli", lambda af, *args: None)
    monkeypatch.setattr(processes, "_port_open", lambda host, port: False)
    monkeypatch.setattr(processes, "wait_healthy", lambda af, timeout: None)
    monkeypatch.setattr(
        processes, "start_component", lambda af, component: started_now.append(component) or 1
    )
    lines: list[str] = []
    processes.up(af, say=lines.append)
    assert alive(pids) == []
    left = f"stopped what the scheduler (pid {pids[0]}) left running when it died: "
    assert [line for line in lines if line.startswith(left)] == [
        left + ", ".join(str(p) for p in sorted(pids[1:]))
    ]
    assert started_now == list(processes.COMPONENTS)

    # And `make stop` finds them the same way.
    pids = start_fake(af, "triggerer")
    os.kill(pids[0], signal.SIGKILL)
    os.waitpid(pids[0], 0)
    lines = []
    assert processes.stop(af, say=lines.append, grace=0.5) == [pids[0]]
    assert lines == [f"stopping triggerer (pid {pids[0]}, 4 process(es), its leader is gone)"]
    assert alive(pids) == []


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.parametrize(
    "record",
    [
        "{pid} {wrong_start} {boot}",  # the pid was given to another process since
        "{pid} {start} another-boot",  # written before a reboot
        "{pid}",  # an older pid file, and the process is not Airflow's
    ],
)
def test_a_pid_file_naming_somebody_elses_process_stops_nothing(af, bystander, record):
    start = processes.proc(bystander.pid).started
    text = record.format(pid=bystander.pid, start=start, wrong_start=start - 1, boot=boot_id())
    af.pid_file("scheduler").write_text(text + "\n")
    assert processes.read_pid(af, "scheduler") is None
    assert processes.session_processes(af, "scheduler") == []
    lines: list[str] = []
    assert processes.stop(af, say=lines.append, grace=0.5) == []
    assert lines[-1].startswith("nothing to stop")


def test_components_write_their_files_and_logs_for_the_owner_only(af):
    old = os.umask(0o022)
    try:
        start_fake(af)
        assert processes.stop(af, say=lambda _: None, grace=0.5)
    finally:
        os.umask(old)
    assert file_mode(af.home / "made-by-component") == 0o600  # umask 077 in the component
    assert file_mode(af.log_file("scheduler")) == 0o600
    assert file_mode(af.home) == 0o700


def test_sqlite_waits_longer_for_a_lock_except_in_the_api_server(af, monkeypatch):
    spawned: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(
        processes, "spawn", lambda af, component, argv, env: spawned.update({component: env}) or 1
    )
    for component in processes.COMPONENTS:
        processes.start_component(af, component)
    key = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"
    assert {c: (env or {}).get(key) for c, env in spawned.items()} == {
        "api-server": None,
        "scheduler": "freshcast.local.config.SQLITE_CONNECT_ARGS",
        "dag-processor": "freshcast.local.config.SQLITE_CONNECT_ARGS",
        "triggerer": "freshcast.local.config.SQLITE_CONNECT_ARGS",
    }
    assert config.SQLITE_CONNECT_ARGS["timeout"] > 5  # Python's default
    sqlite = f"sqlite:///{af.home / 'airflow.db'}"
    assert af.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == sqlite

    url = "postgresql+psycopg2://postgres:pw@127.0.0.1:5432/freshcast"
    postgres = Airflow(home=af.home, port=af.port, database=url)
    spawned.clear()
    processes.start_component(postgres, "scheduler")
    assert spawned["scheduler"] is None
    assert postgres.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert (
        config.database_label(url) == "postgresql+psycopg2://postgres:***@127.0.0.1:5432/freshcast"
    )
