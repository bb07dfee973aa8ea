"""The partner quickstarts, run as written: the README's short one (a token, a plan) and the partner
guide's full walkthrough (a webhook endpoint, a subscription, a plan, the signed webhook it causes, the
feed). Their `sh` blocks are taken out of the Markdown and pasted into bash one after another, as a reader
would (the walkthrough's try-out webhook endpoint in a second "terminal"), against the platform started as
`icep up` starts it. Then the outcomes are checked through the API and on what the endpoint saved, and
the walkthrough's signature check must accept the real webhook and refuse a tampered one."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from icep.platform.kafka_local import free_port
from icep.platform.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
#: What the reader sets; nothing of the test's own environment may stand in for it.
READER_VARIABLES = ("ICEP", "CLIENT_ID", "CLIENT_SECRET", "HOOK_URL", "HOOK_PORT")
_FENCE = re.compile(r"^(?P<indent> *)```sh\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Walkthrough:
    """A section of a Markdown file whose `sh` blocks a reader runs in order."""

    path: Path
    section: str

    def blocks(self) -> list[str]:
        """The `sh` blocks of the section (up to the next `## ` heading), as a reader copies them from
        the rendered page: a fence indented by N spaces (inside a list item) takes up to N spaces off
        each of its lines."""
        text = self.path.read_text(encoding="utf-8")
        name = self.path.relative_to(ROOT)
        assert text.count(f"\n{self.section}\n") == 1, f"{name} has no single {self.section!r} section"
        section = text.split(f"\n{self.section}\n", 1)[1].split("\n## ", 1)[0]
        blocks = []
        for fence in _FENCE.finditer(section):
            indent = len(fence["indent"])
            lines = fence["body"].splitlines(keepends=True)
            blocks.append("".join(re.sub(f"^ {{0,{indent}}}", "", line) for line in lines))
        return blocks


README_QUICKSTART = Walkthrough(ROOT / "README.md", "## Partner quickstart")
GUIDE_WALKTHROUGH = Walkthrough(
    ROOT / "docs" / "partner-guide.md", "## Walkthrough: from a token to a verified webhook"
)


@dataclass
class Terminal:
    """One bash session: each block is pasted in (sourced from a file, its stdin not the session's) and
    the answer is what it printed and the status of its last command, as a reader sees them."""

    process: asyncio.subprocess.Process
    scratch: Path
    transcript: list[str] = field(default_factory=list)
    _steps: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    async def open(cls, cwd: Path, scratch: Path, env: dict[str, str]) -> Terminal:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        return cls(process, scratch)

    async def run(self, block: str, timeout: float = 60) -> tuple[int, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        step = next(self._steps)
        script = self.scratch / f"step-{step}.sh"
        script.write_text(block)
        done = f"__quickstart_step_{step}_status__"
        self.process.stdin.write(f". {script} </dev/null\nprintf '\\n{done} %s\\n' \"$?\"\n".encode())
        await self.process.stdin.drain()
        output: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode(errors="replace")
            if not line:
                raise AssertionError(f"bash ended during the block:\n{block}\n{''.join(output)}")
            if line.startswith(done):
                text = "".join(output)
                self.transcript.append(f"$ step {step}\n{text}")
                return int(line.split()[1]), text
            output.append(line)

    async def value(self, variable: str) -> str:
        status, text = await self.run(f'printf "%s" "${variable}"')
        assert status == 0
        return text.strip()

    async def close(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        await self.process.wait()


@dataclass
class Endpoint:
    """The walkthrough's try-out webhook endpoint, run by bash in a process group of its own."""

    process: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, block: str, cwd: Path, log: Path, env: dict[str, str]) -> Endpoint:
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                "bash",
                "--noprofile",
                "--norc",
                "-c",
                block,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        return cls(process, log)

    async def stop(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        await self.process.wait()


@pytest.fixture
async def folder(tmp_path: Path) -> AsyncIterator[Path]:
    """The reader's working folder (both terminals are in it)."""
    (tmp_path / "reader").mkdir()
    (tmp_path / "scratch").mkdir()
    yield tmp_path / "reader"


async def _answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        try:
            await http.get(url)
        except httpx.TransportError:
            return False
    return True


def _reader_env(gateway: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in READER_VARIABLES}
    return env | {
        "ICEP": gateway,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **more,
    }


async def test_the_readme_quickstart_works_as_written(platform: Any, folder: Path) -> None:
    blocks = README_QUICKSTART.blocks()
    assert len(blocks) == 2, f"the README's quickstart has {len(blocks)} sh blocks; this test runs 2"
    token_block, plan_block = blocks
    terminal = await Terminal.open(folder, folder.parent / "scratch", _reader_env(platform.gateway))
    try:
        # A token, and it works.
        status, out = await terminal.run(token_block)
        assert status == 0, out
        token = await terminal.value("TOKEN")
        async with httpx.AsyncClient(
            base_url=platform.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=20
        ) as api:
            assert (await api.get("/v1/plans")).status_code == 200

            # The plan exists as a draft of the reader's nation, and the block printed it.
            status, out = await terminal.run(plan_block)
            assert status == 0, out
            plan_id = await terminal.value("PLAN_ID")
            r = await api.get(f"/v1/plans/{plan_id}")
            assert r.status_code == 200, r.text
            plan = r.json()
            assert (plan["title"], plan["status"], plan["nation"]) == (
                "Munitions ramp-up 2025-2029",
                "draft",
                "DEU",
            )
            assert json.loads(out)["id"] == plan_id
    except BaseException:
        print("\n".join(terminal.transcript))
        raise
    finally:
        await terminal.close()


async def test_the_partner_guide_walkthrough_works_as_written(platform: Any, folder: Path) -> None:
    blocks = GUIDE_WALKTHROUGH.blocks()
    assert len(blocks) == 7, f"the walkthrough has {len(blocks)} sh blocks; this test walks through 7"
    endpoint_block, token_block, subscribe_block, plan_block, deliveries_block, verify_block, feed_block = (
        blocks
    )
    port = free_port()
    env = _reader_env(platform.gateway, HOOK_PORT=str(port), HOOK_URL=f"http://127.0.0.1:{port}/hooks")
    endpoint = await Endpoint.start(endpoint_block, folder, folder.parent / "scratch" / "endpoint.log", env)
    terminal = await Terminal.open(folder, folder.parent / "scratch", env)
    try:
        await wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), timeout=30, what="the try-out endpoint")

        # Step 2: a token, and it works.
        status, out = await terminal.run(token_block)
        assert status == 0, out
        token = await terminal.value("TOKEN")
        api = httpx.AsyncClient(
            base_url=platform.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=20
        )
        async with api:
            assert (await api.get("/v1/plans")).status_code == 200

            # Step 3: the subscription exists, aimed at the endpoint, with the secret kept.
            status, out = await terminal.run(subscribe_block)
            assert status == 0, out
            subscription_id = await terminal.value("SUBSCRIPTION_ID")
            secret = await terminal.value("WEBHOOK_SECRET")
            assert secret.startswith("whsec_")
            r = await api.get(f"/v1/subscriptions/{subscription_id}")
            assert r.status_code == 200, r.text
            assert r.json()["url"] == env["HOOK_URL"] and r.json()["event_types"] == ["icep.plans.*"]

            # Step 4: the plan exists, and the block printed it.
            status, out = await terminal.run(plan_block)
            assert status == 0, out
            plan_id = await terminal.value("PLAN_ID")
            r = await api.get(f"/v1/plans/{plan_id}")
            assert r.status_code == 200, r.text
            assert r.json()["title"] == "Munitions ramp-up 2025-2029" and r.json()["status"] == "draft"
            assert json.loads(out)["id"] == plan_id

            # The endpoint got the plan's webhook: delivered (answered) means the files are written.
            await platform.settled()

            async def delivered() -> list[dict[str, Any]] | None:
                r = await api.get(f"/v1/subscriptions/{subscription_id}/deliveries")
                items: list[dict[str, Any]] = r.json()["items"]
                return items if items and all(d["status"] == "delivered" for d in items) else None

            items = await wait_for(delivered, timeout=30, interval=0.2, what="the plan's webhook delivered")
            saved = {
                name: (folder / f"webhook.{name}").read_bytes() for name in ("id", "timestamp", "signature")
            }
            body = (folder / "webhook.body").read_bytes()
            event = json.loads(body)
            assert (event["type"], event["subject"]) == ("icep.plans.plan.created.v1", plan_id)
            assert saved["id"].decode() == event["id"] == items[0]["event_id"]
            headers = {f"webhook-{name}": value.decode() for name, value in saved.items()}
            assert Webhook(secret).verify(body, headers)["subject"] == plan_id  # really signed

            # Step 5: the deliveries as the reader sees them.
            status, out = await terminal.run(deliveries_block)
            assert status == 0, out
            assert [(d["event_id"], d["status"]) for d in json.loads(out)["items"]] == [
                (event["id"], "delivered")
            ]

            # Step 6: the guide's check accepts the real webhook ...
            status, out = await terminal.run(verify_block)
            assert (status, out.strip()) == (0, f"verified: webhook {event['id']}"), out

            # ... and refuses it with one byte of the body changed, or with another subscription's secret.
            tampered = body.replace(b'"DEU"', b'"FRA"', 1)
            assert tampered != body
            (folder / "webhook.body").write_bytes(tampered)
            status, out = await terminal.run(verify_block)
            assert status != 0 and out.startswith("REJECTED"), out
            (folder / "webhook.body").write_bytes(body)
            status, out = await terminal.run(f"WEBHOOK_SECRET=whsec_{'A' * 43}=\n{verify_block}")
            assert status != 0 and out.startswith("REJECTED"), out
            status, out = await terminal.run(f"WEBHOOK_SECRET={secret}\n{verify_block}")
            assert status == 0, out

            # Step 7: the catch-up feed has the same event, once, among plan events only (the module's
            # other quickstart may have made a plan of the same nation before).
            status, out = await terminal.run(feed_block)
            assert status == 0, out
            feed = json.loads(out)
            assert [e["subject"] for e in feed["items"] if e["id"] == event["id"]] == [plan_id]
            assert {e["type"].split(".")[1] for e in feed["items"]} == {"plans"}
    except BaseException:
        print("\n".join(terminal.transcript))
        print(endpoint.log.read_text(errors="replace") if endpoint.log.exists() else "")
        raise
    finally:
        await terminal.close()
        await endpoint.stop()
