"""The floor of one HTTP hop: the smallest FastAPI app, run under uvicorn like the services are.

uv run python -m uvicorn bench.minimal_app:app --port 9000
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
