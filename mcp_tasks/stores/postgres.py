"""The PostgreSQL store: one registry shared by servers on many hosts, with psycopg 3 and a pool.

Transactions: each `write` runs the registry's transaction script on a pooled connection in a
worker thread (READ COMMITTED; the script's reads lock what they decide on, claims and the reaper
skip rows other transactions hold); each `read` on a REPEATABLE READ READ ONLY snapshot.
Deadlocks, serialization failures and a connection lost before COMMIT are retried here, bounded,
then reported as StoreBusy or StoreUnavailable; a connection lost during COMMIT is not retried
(the change may have been saved) and says so.

The event log is numbered by the sequencer (storage/postgres/sequencer.sql): after this process
writes, and whenever a reader needs the log in order (`settle`), one pass numbers what has
committed, and moves the aggregates' deltas into their totals. Every pass that numbers something
announces it with NOTIFY; `watch` LISTENs on a connection of its own and wakes this process's
followers, reconnecting by itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ..errors import StoreBusy, StoreCorrupt, StoreError, StoreFull, StoreUnavailable
from . import sql_files
from .postgres_tx import PostgresTx

log = logging.getLogger(__name__)
T = TypeVar("T")

SEQUENCER_LOCK = 0x4D435450_0001  # advisory lock key: one sequencer pass at a time, database-wide
NUMBER_BATCH = 5000
# After a write, the background numbering pass waits this long (seconds) to gather the commits
# that follow: a pass is a transaction with a durable commit of its own, so one per write would
# halve the claims a single connection makes. Readers never wait for it (they settle() at once).
NUMBER_GATHER = 0.005
# How long the pool keeps trying to replace one lost connection before it gives up and starts afresh
# on the next request. psycopg_pool doubles its wait between attempts without a cap, so a long limit
# leaves a server idle long after the database is back (measured: 18 s after a 40 s outage, with
# psycopg_pool's default of 300 s); with this one a fresh attempt is at most a few seconds away.
RECONNECT_TIMEOUT = 5.0
UNREACHABLE_WAIT = 0.2  # seconds a call waits for a connection while the database is known to be down
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool

        del psycopg_pool  # imported here only to say clearly when it is missing
    except ImportError:
        raise StoreUnavailable(
            "the PostgreSQL store needs psycopg and psycopg_pool: pip install 'mcp-tasks[postgres]'"
        ) from None
    return psycopg


# Timeouts a URL may set, in seconds: (default, smallest, largest). connect_timeout is libpq's own
# parameter (it stays in the connection string) and also bounds a call's wait for a connection;
# statement_timeout is ours (PostgreSQL cancels a statement running longer).
TIMEOUTS = {"connect_timeout": (10.0, 1.0, 600.0), "statement_timeout": (30.0, 1.0, 3600.0)}


def url_timeouts(url: str) -> dict[str, float]:
    """The timeouts the URL's query sets (`?connect_timeout=5&statement_timeout=60`), each checked
    against its bounds; StoreUnavailable in one line for a value out of them."""
    found = {}
    for key, value in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True):
        if key in TIMEOUTS:
            _, low, high = TIMEOUTS[key]
            try:
                seconds = float(value)
            except ValueError:
                seconds = float("nan")
            if not low <= seconds <= high:  # also NaN
                raise StoreUnavailable(f"{key}={value!r} in the database URL is not a number of seconds "
                                       f"from {low:g} to {high:g}")
            found[key] = seconds
    return found


def parse_url(url: str) -> tuple[str, str, str]:
    """(libpq connection string, schema, location without password) from a postgresql:// URL.

    `?schema=NAME` (ours, not libpq's) names the schema the registry lives in (default mcp_tasks)
    and `statement_timeout=S` (ours) bounds each statement; every other query parameter goes to
    libpq as is (connect_timeout, sslmode, application_name, ...)."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port
    except ValueError as exc:
        raise StoreUnavailable(f"the database URL is not valid: {exc} (postgresql://USER@HOST:PORT/DBNAME)") from None
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schema = "mcp_tasks"
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        elif key != "statement_timeout":
            kept.append((key, value))
    if not _SCHEMA_NAME.match(schema):
        raise StoreUnavailable(f"schema {schema!r} in the database URL is not a plain name; use lower-case letters, "
                               "digits and _ (e.g. ?schema=team_a)")
    conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    host = parts.hostname or "localhost"
    shown = f"postgresql://{parts.username + '@' if parts.username else ''}{host}" \
            f"{':' + str(parts.port) if parts.port else ''}{parts.path}"
    return conninfo, schema, shown + ("" if schema == "mcp_tasks" else f"?schema={schema}")


def connect_error(location: str, exc: BaseException) -> StoreUnavailable:
    """One line for a failed connection: refused, wrong password, no such database, a bad URL."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if ("password authentication failed" in lowered or "no password supplied" in lowered
            or ("role" in lowered and "does not exist" in lowered)):
        why = "the user name or password was refused"
    elif "does not exist" in lowered and "database" in lowered:
        why = "that database does not exist (create it with createdb, or name another)"
    elif "connection refused" in lowered or "could not connect" in lowered or "no such file" in lowered:
        why = "nothing accepts connections there (is PostgreSQL running, and are host and port right?)"
    elif "could not translate host name" in lowered or "name or service not known" in lowered:
        why = "the host name cannot be resolved"
    elif "timeout" in lowered:
        why = "the connection timed out"
    elif "invalid" in lowered or "missing" in lowered:
        why = f"the URL is not valid ({text[:200]})"
    else:
        why = text[:300]
    return StoreUnavailable(f"cannot connect to {location}: {why}")


class PostgresStore:
    """Store over a PostgreSQL database, for servers on any number of hosts."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 1,
        pool_max: int = 8,
        retries: int = 8,
        create: bool = True,
    ) -> None:
        self.url = url
        self.create = create
        self.conninfo, self.schema, self.location = parse_url(url)
        self.pool_min, self.pool_max = pool_min, max(pool_min, pool_max)
        timeouts = {key: default for key, (default, _, _) in TIMEOUTS.items()} | url_timeouts(url)
        self.connect_timeout = timeouts["connect_timeout"]
        self.statement_timeout = timeouts["statement_timeout"]
        self.retries = retries
        self.read_only = False
        self._pool: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._seq = sql_files.queries("postgres", "sequencer.sql")
        self._numbering: asyncio.Task[None] | None = None
        self._renumber = False
        self._passes_started = self._passes_done = 0  # numbering passes of this process (settle)
        self._pass: asyncio.Future[None] | None = None
        self._ready = False  # open() finished: the schema is there
        # Since when no connection could be had (None while the database answers): calls then wait for
        # one only briefly, so that while it is down calls queued behind each other (and /healthz) fail
        # at once instead of waiting connect_timeout each.
        self._unreachable_since: float | None = None

    # ---- lifecycle
    def _configure(self, conn: Any) -> None:
        from psycopg.types.string import TextLoader

        conn.adapters.register_loader("jsonb", TextLoader)  # JSON as text, parsed by the row mapping
        conn.execute(f"SET search_path TO {self.schema}")
        conn.execute(f"SET statement_timeout = {int(self.statement_timeout * 1000)}")
        conn.commit()

    def _connect_once(self) -> None:
        psycopg = _import_psycopg()
        try:
            conn = psycopg.connect(self.conninfo, connect_timeout=max(1, int(self.connect_timeout)))
        except psycopg.Error as exc:
            raise connect_error(self.location, exc) from None
        conn.close()

    async def open(self) -> None:
        """Connect (one clear error if that fails), create the schema or bring it up to date."""
        _import_psycopg()
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        await anyio.to_thread.run_sync(self._connect_once)
        self._pool = ConnectionPool(
            self.conninfo, min_size=self.pool_min, max_size=self.pool_max, open=False, configure=self._configure,
            kwargs={"row_factory": dict_row, "connect_timeout": max(1, int(self.connect_timeout))},
            timeout=self.connect_timeout, reconnect_timeout=RECONNECT_TIMEOUT, name="mcp-tasks",
        )
        self._limiter = anyio.CapacityLimiter(self.pool_max)
        try:
            await anyio.to_thread.run_sync(lambda: self._pool.open(wait=True, timeout=self.connect_timeout))
            from .postgres_schema import migrate

            await anyio.to_thread.run_sync(lambda: migrate(self._pool, self.schema, self.location, self.create))
            self._ready = True
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Number what this process wrote, then close every connection (safe to call twice)."""
        if self._pool is None:
            return
        try:
            if self._numbering is not None:
                await self._numbering
            if self._ready:
                await self.settle()
        except StoreError as exc:
            log.warning("closing without numbering the latest events: %s", exc.problem)
        finally:
            pool, self._pool, self._ready = self._pool, None, False
            await anyio.to_thread.run_sync(pool.close)

    # ---- transactions
    def _run(self, fn: Callable[[PostgresTx], T], writing: bool) -> T:
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._pool is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        delay = 0.01
        # Reaching the database (a free connection, a new one after a lost one) gets connect_timeout in
        # all, however many attempts: while it is down a call fails in that time, never retries for minutes.
        deadline = time.monotonic() + self.connect_timeout
        for attempt in range(self.retries + 1):
            committing = False
            try:
                wait = max(1.0, deadline - time.monotonic()) if self._unreachable_since is None else UNREACHABLE_WAIT
                with self._pool.connection(timeout=wait) as conn:
                    try:
                        # Said in the BEGIN psycopg sends (no SET TRANSACTION round trip); reads put
                        # the defaults back below.
                        if not writing:
                            conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
                        result = fn(PostgresTx(conn, writing))
                        committing = True
                        conn.commit()
                        self._unreachable_since = None
                        return result
                    except BaseException:
                        if not committing and not conn.broken:
                            conn.rollback()
                        raise
                    finally:
                        if not writing and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                            conn.isolation_level = conn.read_only = None
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                    psycopg.errors.LockNotAvailable) as exc:
                why = f"the database kept reporting conflicts ({type(exc).__name__})"
            except PoolTimeout as exc:
                since, now = self._unreachable_since, time.monotonic()
                if since is None:
                    self._unreachable_since = now
                    why = f"no connection to it could be had within {self.connect_timeout:g}s"
                else:
                    why = f"no connection to it could be had for {now - since:.0f}s"
                raise StoreUnavailable(f"cannot reach the database: {why}: nothing was changed") from exc
            # QueryCanceled and DiskFull are OperationalErrors too, but no lost connection: first.
            except psycopg.errors.QueryCanceled as exc:
                raise StoreBusy(f"a database statement ran past {self.statement_timeout:g}s and was cancelled: "
                                "nothing was changed; retry shortly") from exc
            except psycopg.errors.DiskFull as exc:
                raise StoreFull("database or disk is full: nothing was changed") from exc
            except psycopg.OperationalError as exc:
                if writing and committing:
                    raise StoreUnavailable(
                        "the connection to the database was lost while saving: the change may or may not have "
                        "been saved; repeat the call (repeats by the same lease or request_id are safe)"
                    ) from exc
                self._pool.check()  # drop the pool's other dead connections (after a restart)
                why = f"the database connection failed ({' '.join(str(exc).split())[:200]})"
                if attempt == self.retries or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"cannot reach the database: {why}: nothing was changed") from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise StoreUnavailable("the database only accepts reads (a standby?): nothing was changed") from exc
            except (psycopg.errors.DataCorrupted, psycopg.errors.IndexCorrupted) as exc:
                raise StoreCorrupt(f"the database reports damage ({exc}): nothing was changed") from exc
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.ProgrammingError) and not isinstance(exc, psycopg.errors.InsufficientPrivilege):
                    raise  # a bug in a query, not the database
                raise StoreError(f"the database refused the operation ({' '.join(str(exc).split())[:300]}): "
                                 "nothing was changed") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
        raise StoreBusy(f"{why}: nothing was changed; retry shortly")

    async def write(self, fn: Callable[[Any], T]) -> T:
        assert self._limiter is not None or self._pool is None
        if self._pool is None or self._limiter is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        result = await anyio.to_thread.run_sync(self._run, fn, True, limiter=self._limiter)
        self._number_soon()
        return result

    async def read(self, fn: Callable[[Any], T]) -> T:
        if self._pool is None or self._limiter is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        return await anyio.to_thread.run_sync(self._run, fn, False, limiter=self._limiter)

    # ---- the sequencer
    def _number_pass(self) -> int:
        """One pass: number every committed event that can be numbered now; how many."""
        total = 0
        while True:
            def number(tx: PostgresTx) -> int:
                # Lock when something waits, then number, move the head and announce; then move the
                # aggregates' deltas into their totals (every change that adds deltas adds an event).
                if tx._execute(self._seq["lock_if_unnumbered"], {"key": SEQUENCER_LOCK}).fetchone() is None:
                    return 0
                row = tx._execute(self._seq["number_events"], {"limit": NUMBER_BATCH}).fetchone()
                tx._execute(self._seq["fold_deltas"], {})
                return 0 if row is None else int(row["n"])

            n = self._run(number, True)
            total += n
            if n < NUMBER_BATCH:
                return total

    def reader_location(self) -> str | None:
        return self.url

    async def settle(self) -> None:
        """Number every event committed so far that can be numbered (those of transactions that
        started before one still running wait for it).

        Callers share passes: each waits for one pass that started after it was called (joining
        one that another caller started, or starting it once the pass running now has ended), so a
        writer's numbering and its followers' reads cost one pass, not one each."""
        need = self._passes_started + 1
        while self._passes_done < need:
            if self._pass is None or self._pass.done():
                self._passes_started += 1
                self._pass = asyncio.ensure_future(self._one_pass(self._passes_started))
                self._pass.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, if all left
            await asyncio.shield(self._pass)

    async def _one_pass(self, number: int) -> None:
        if self._pool is None or self._limiter is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        await anyio.to_thread.run_sync(self._number_pass, limiter=self._limiter)
        self._passes_done = max(self._passes_done, number)

    def _number_soon(self) -> None:
        """After a commit: number it shortly (after NUMBER_GATHER), one pass at a time, passes merged
        while one runs."""
        self._renumber = True
        if self._numbering is None or self._numbering.done():
            self._numbering = asyncio.get_running_loop().create_task(self._numbering_loop())

    async def _numbering_loop(self) -> None:
        while self._renumber and self._pool is not None:
            await anyio.sleep(NUMBER_GATHER)
            self._renumber = False
            try:
                await self.settle()
            except StoreError as exc:  # the next write, reader or follower numbers it
                log.info("numbering events later: %s", exc.problem)
                return
            except Exception as exc:  # noqa: BLE001 - never an unretrieved task error; the next pass retries
                log.warning("numbering events failed: %s", exc)
                return

    async def watch(self, wake: Callable[[], None]) -> None:
        """Call `wake()` whenever any process announces numbered events, until cancelled; LISTENs on
        a connection of its own and reconnects after a failure (waking once, in case it missed some)."""
        psycopg = _import_psycopg()
        backoff = 0.2
        while True:
            try:
                aconn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                              connect_timeout=max(1, int(self.connect_timeout)))
                try:
                    await aconn.execute(self._seq["listen"])
                    backoff = 0.2
                    wake()  # anything announced while not listening
                    async for _ in aconn.notifies():
                        wake()
                finally:
                    await aconn.close()
            except psycopg.Error as exc:
                log.info("listening for changes failed (%s); again in %.1fs", " ".join(str(exc).split())[:200], backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
