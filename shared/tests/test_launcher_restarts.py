"""What `icep up` does when a process dies (`icep.platform.launcher.Watchdog`): restart it after a backoff
that doubles up to a cap, for ever, saying so each time on the console and in the process's log.
(tests/e2e/test_icep_up.py kills a healthy service under `icep up` and sees it ready again.)"""

from __future__ import annotations

import json
from pathlib import Path

from icep.platform.launcher import Launcher, RestartPolicy, Watchdog
from icep.platform.testing import wait_for


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(initial=1.0, maximum=30.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_a_process_that_keeps_crashing_keeps_being_restarted_with_the_capped_backoff(
    tmp_path: Path,
) -> None:
    # A real `icep serve standards` that cannot start: its port setting is no port, so it exits at once.
    launcher = Launcher(
        env={"ICEP_STANDARDS_PORT": "not-a-port", "ICEP_VAR_DIR": str(tmp_path / "var")},
        log_dir=tmp_path / "logs",
        ports={"standards": 1},
        management_ports={"standards": 2},
    )
    said: list[str] = []
    watchdog = Watchdog(launcher, say=said.append, policy=RestartPolicy(initial=0.1, maximum=0.4))
    first = launcher.start("standards")
    try:

        def crashed_three_times() -> bool:
            watchdog.check()
            return sum("standards exited" in line for line in said) >= 3

        await wait_for(crashed_three_times, timeout=120, interval=0.05, what="three crashes")
    finally:
        launcher.stop_all()

    exits = [line for line in said if "standards exited" in line]
    assert all("(exit code 1)" in line for line in exits), exits
    waits = [line.split("restarting in ", 1)[1].split("s", 1)[0] for line in exits]
    assert waits[:3] == ["0.1", "0.2", "0.4"]  # doubling up to the cap
    assert "keeps crashing" not in exits[1]
    assert "keeps crashing (3 times in a row), still retrying every 0.4s" in exits[2]
    restarted = [line for line in said if "standards restarted (pid" in line]
    assert len(restarted) >= 2 and f"pid {first.process.pid};" not in " ".join(restarted)
    # The process's own log has the same story, as JSON lines in UTC.
    text = (tmp_path / "logs" / "standards.log").read_text()
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    told = [line for line in lines if line.get("logger") == "icep.up"]
    assert [line["message"] for line in told] == said
    assert all(line["time"].endswith("+00:00") and line["service"] == "standards" for line in told)
