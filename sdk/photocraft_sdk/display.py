"""Rich progress bars fed by job events: one bar per photo, plus an overall one for several."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn


def status_text(event: Mapping) -> str:
    """A few words on where a job stands after ``event``."""
    kind = event["type"]
    if kind == "queued":
        return f"queued ({event.get('lane')}, {event.get('position', 0)} ahead)"
    if kind in ("started", "progress", "stage_completed"):
        return str(event.get("stage", kind))
    if kind == "retrying":
        return f"retrying {event.get('stage')} ({event.get('attempt')}/{event.get('max_attempts')})"
    if kind == "failed":
        return f"[red]failed: {escape(str(event.get('code')))}"
    if kind == "cancelled":
        return "[yellow]cancelled"
    if kind == "completed":
        return "[green]done"
    return kind


class Bars:
    """Progress bars on ``console`` (stderr by default); ``with Bars(names) as bars: bars.show(name, event)``."""

    def __init__(self, names: list[str], console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=self.console)
        width = max(len(name) for name in [*names, "all photos" if len(names) > 1 else ""])
        self.overall: TaskID | None = None
        if len(names) > 1:
            self.overall = self.progress.add_task(f"{'all photos':<{width}}", total=100 * len(names), status="")
        self.percent = dict.fromkeys(names, 0.0)
        self.ended: set[str] = set()
        self.tasks = {name: self.progress.add_task(escape(f"{name:<{width}}"), total=100, status="submitted")
                      for name in names}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def show(self, name: str, event: Mapping) -> None:
        """Move ``name``'s bar to ``event`` (``progress`` percent; 100 once ended) and the overall bar."""
        if event["type"] == "progress":
            self.percent[name] = float(event.get("percent", 0))
        elif event["type"] in ("completed", "failed", "cancelled"):
            self.percent[name] = 100.0
            self.ended.add(name)
        self.progress.update(self.tasks[name], completed=self.percent[name], status=status_text(event))
        if self.overall is not None:
            self.progress.update(self.overall, completed=sum(self.percent.values()),
                                 status=f"{len(self.ended)}/{len(self.tasks)} ended")

    def note(self, text: str) -> None:
        """A line above the bars."""
        self.progress.console.print(text)
