"""What store reads return: the typed records of the store protocol (base.py) beyond the
models of tasks and events."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import CorruptRow
from ..models import EventRecord, Task
from ..states import State


class TaskHistory(NamedTuple):
    """A task row with its events, as verify reads them. `task` is the CorruptRow raised reading
    the row when it cannot be read, None when there is no row; `num` is the row's place in
    insertion order (0 without a row)."""

    num: int
    task_id: str
    task: Task | CorruptRow | None
    events: list[EventRecord]


class TouchedTask(NamedTuple):
    """A task id that events name, and the highest seq among those events."""

    task_id: str
    last_seq: int


class SeqRun(NamedTuple):
    """Event sequence numbers `first`..`last` that are wrong: `missing` (no event has them),
    `repeated` (`size` events share the number) or `unexpected` (below 1). `size` of a missing
    run: how many numbers it spans."""

    first: int
    last: int
    problem: str
    size: int


class OrphanEvents(NamedTuple):
    """The events of a task id that has no row: how many, and the first and last seq."""

    task_id: str
    events: int
    first_seq: int
    last_seq: int


class OrphanEdge(NamedTuple):
    """A dependency edge `task_id` -> `depends_on` where one or both ends have no task row."""

    task_id: str
    depends_on: str
    task_has_row: bool
    dependency_has_row: bool


class EventCount(NamedTuple):
    """How many events of one `type` moved a task from `from_state` to `to_state` (None: created,
    and unchanged, respectively). States as stored: an unreadable one comes back as it is."""

    type: str
    from_state: str | None
    to_state: str | None
    n: int


class TaskTotal(NamedTuple):
    """The tasks of one `type`, `assignee` (None: none) and `state`: how many, how many of them no
    dependency holds back (`unblocked`: unmet_deps 0), the sum of their retry counts, and the usage
    they reported (`cost_micros`: millionths, each task's cost rounded as floor(cost * 1e6 + 0.5),
    so that sums are exact)."""

    type: str
    assignee: str | None
    state: State
    tasks: int
    unblocked: int
    retries: int
    tokens: int
    api_calls: int
    cost_micros: int


class TimeBucket(NamedTuple):
    """`tasks` DONE tasks of one type or agent (`dimension` 'type' or 'agent', `name`; '' for an
    agent: none) whose `measure` ('cycle' or 'work' time) falls in log-scale `bucket`
    (`mcp_tasks.aggregates.bucket_of`)."""

    dimension: str
    name: str
    measure: str
    bucket: int
    tasks: int


class BucketCount(NamedTuple):
    """`n` events of `type` from `from_state` to `to_state` in the time bucket starting at `bucket`."""

    bucket: float
    type: str
    from_state: str | None
    to_state: str | None
    n: int


class BucketTimes(NamedTuple):
    """The wait and work time of one task finished in the time bucket starting at `bucket`."""

    bucket: float
    wait_time: float | None
    work_time: float | None


class RegistrySize(NamedTuple):
    """What a registry holds: task rows, dependency edges, numbered `events` and committed events
    not numbered yet (`unnumbered`: PostgreSQL's sequencer has not reached them), the highest seq
    present (`last_seq`) and ever handed out (`high_water`), and the time of the last event in
    export order (`last_at`: the last unnumbered one if any, else the highest seq; None without
    events)."""

    tasks: int
    deps: int
    events: int
    unnumbered: int
    last_seq: int
    high_water: int
    last_at: float | None

    @property
    def empty(self) -> bool:
        """Nothing was ever stored here that an import could collide with."""
        return not (self.tasks or self.deps or self.events or self.unnumbered or self.high_water)
