"""mcp-tasks: a task registry that many LLM agents share through MCP."""

from .errors import TaskError
from .models import Claim, Created, Event, NewTask, Page, Task, TaskSummary, Usage
from .registry import Registry
from .rules import Policy
from .states import State

__version__ = "0.1.0"

__all__ = [
    "Claim", "Created", "Event", "NewTask", "Page", "Policy", "Registry", "State", "Task",
    "TaskError", "TaskSummary", "Usage", "__version__",
]
