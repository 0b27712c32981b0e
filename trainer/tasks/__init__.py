"""Built-in training tasks, their default search spaces (YAML next to this file), and the
loader of user tasks."""

from tunewire.trainer.tasks.registry import (
    BUILTIN_TASKS,
    DEFAULT_TASK,
    BuiltinTask,
    load_task,
)

__all__ = ["BUILTIN_TASKS", "DEFAULT_TASK", "BuiltinTask", "load_task"]
