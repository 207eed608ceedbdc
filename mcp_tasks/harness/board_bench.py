"""The board's rows of `mcp-tasks bench`: server time to render the board and a task page on the
large database (100,000 tasks and 1,000,000 events in the full run).

The server's own app (`build_http_app`, as `serve --http` runs it) is driven in-process with its
lifespan entered; each request's render time is read from its Server-Timing header (from the
handler's start to the finished HTML: every database read and the template). After WARM_UP
requests of each page, the median of `samples` requests is reported against the 50 ms the board
is held to.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ..server import create_server
from ..server.app import state_of
from ..server.http import build_http_app
from ..states import State
from .bench_data import GATE_TITLE

if TYPE_CHECKING:
    from .bench import Bench, Figure

LIMIT_MS = 50.0  # the board and a task page render within this on the large database
WARM_UP = 3
_TIMING = re.compile(r"render;dur=([0-9.]+)")


ROWS = ("board page render", "task page render, a finished task", "task page render, the most-needed task")


async def run(b: Bench, db: Path, size: str) -> list[Figure]:
    """Median server render time of the board, a finished task's page and the page of the task
    most others depend on."""
    import httpx2

    from .bench import Figure

    samples = 5 if b.sizes.cold_runs < 5 else 30
    mcp = create_server(str(db), agent="bench")
    app = build_http_app(mcp, "127.0.0.1")
    async with app.router.lifespan_context(app):
        reg = state_of(mcp).registry
        anyone = (await reg.find(limit=1)).items
        done = (await reg.find(state=State.DONE, limit=1)).items or anyone
        gate = (await reg.find(text=GATE_TITLE, limit=1)).items or anyone  # half the tasks wait for it
        paths = ["/", f"/tasks/{done[0].id}" if done else None, f"/tasks/{gate[0].id}" if gate else None]
        pages = [(path, f"{row}, {size}") for path, row in zip(paths, ROWS)]
        figures = []
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8766") as client:
            for path, name in pages:
                if path is None:
                    b.notes.append(f"{name}: n/a (no such task in this database)")
                    figures.append(Figure(name, None, "ms", "limit", LIMIT_MS))
                    continue
                times = []
                for i in range(WARM_UP + samples):
                    reply = await client.get(path)
                    found = _TIMING.search(reply.headers.get("server-timing", ""))
                    if reply.status_code != 200 or found is None:
                        raise RuntimeError(f"board bench: {path} answered {reply.status_code}")
                    if i >= WARM_UP:
                        times.append(float(found.group(1)))
                figures.append(Figure(name, statistics.median(times), "ms", "limit", LIMIT_MS))
                b.notes.append(f"{name}: p95 {sorted(times)[int(0.95 * (len(times) - 1))]:.1f} ms of {len(times)} requests")
        return figures
