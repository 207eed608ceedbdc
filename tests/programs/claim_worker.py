"""A worker process for the multi-process test: claims, starts, sometimes fails, completes.

Usage: python claim_worker.py LOCATION AGENT SEED  (LOCATION: a SQLite file or a postgresql:// URL)
Prints one JSON line per successful claim: {"task": id, "lease": token}.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from mcp_tasks import Policy, Registry, State
from mcp_tasks.errors import TaskError
from mcp_tasks.stores import make_store


async def main(location: str, agent: str, seed: int) -> None:
    rng = random.Random(seed)
    policy = Policy(lease_seconds=60, backoff_base=0.01, backoff_cap=0.05)
    async with Registry(make_store(location), agent=agent, policy=policy) as reg:
        idle = 0
        while True:
            claim = await reg.claim()
            if claim is None:
                counts = await reg.counts()
                if counts[State.DONE] + counts[State.CANCELLED] + counts[State.FAILED] == sum(counts.values()):
                    return
                idle += 1
                await asyncio.sleep(0.002 * min(idle, 10))
                continue
            idle = 0
            print(json.dumps({"task": claim.task.id, "lease": claim.lease}), flush=True)
            tid = claim.task.id
            try:
                await reg.start(tid, claim.lease)
                if rng.random() < 0.05:
                    await reg.fail(tid, claim.lease, "random failure", retryable=True)
                    continue
                await reg.checkpoint(tid, claim.lease, data={"by": agent})
                await reg.complete(tid, claim.lease, result=agent)
            except TaskError as exc:
                print(json.dumps({"error": exc.message}), file=sys.stderr, flush=True)
                raise


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
