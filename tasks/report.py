"""What every step reports: one finding type for every judgement, and one report per deploy step.

A ``Finding`` is one judgement a flow made (a node check, a verification, a health check): its
name, its level, the problem and the fix, kept apart so that logs, artifacts and the run's
state message show them the same way and nothing is ever parsed back out of prose. A
``StepReport`` is what one deploy step did to the cluster. ``apply_all`` is the one loop that
applies a step's objects and records each action. Nothing here talks to a cluster itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from vtflow import kube
from vtflow.errors import VtflowError

Level = Literal["ok", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "fail")


class Finding(BaseModel):
    """One judgement: ``problem`` says what is wrong (or what was seen, when ok), ``fix`` what to do."""

    name: str
    level: Level
    problem: str = ""
    fix: str = ""

    @property
    def line(self) -> str:
        """The one way a finding is shown in logs, artifacts and state messages."""
        text = f"{self.name}: {self.level}"
        if self.problem:
            text += f": {self.problem.rstrip('.')}"
        if self.fix:
            text += f". Fix: {self.fix.rstrip('.')}"
        return text + ("." if self.problem or self.fix else "")

    @property
    def short(self) -> str:
        """Name and problem, without the fix: for one-line summaries of several findings."""
        return f"{self.name}: {self.problem.rstrip('.')}" if self.problem else self.name


def worst(findings: list[Finding]) -> Level:
    return max((f.level for f in findings), key=LEVELS.index, default="ok")


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "fail"]


def error_finding(name: str, e: BaseException, prefix: str = "") -> Finding:
    """A failed finding for a check that could not run: a project error's subject and problem,
    and its own fix; any other exception by its type (a bug: its traceback is in the log)."""
    if isinstance(e, VtflowError):
        return Finding(name=name, level="fail", problem=f"{prefix}{e.subject}: {e.problem}", fix=e.fix or "")
    return Finding(name=name, level="fail", problem=f"{prefix}({type(e).__name__}) {e}",
                   fix="read the task's log; this is a bug if it repeats")


class StepReport(BaseModel):
    """What one deploy step did: each object's action, or why the step was skipped."""

    step: str
    skipped: str | None = None
    objects: list[dict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list, description="What the step found (rows loaded, checks passed).")
    seconds: float | None = Field(default=None, description="How long the step took (the deploy's step runner times it).")

    @property
    def changed(self) -> bool:
        return any(o["action"] != "unchanged" for o in self.objects)


def apply_all(k: kube.Kube, objects: list[dict], step: str, log) -> StepReport:
    """Apply each object in order (what others refer to goes first), recording its action."""
    report = StepReport(step=step)
    for obj in objects:
        done = k.apply(obj)
        report.objects.append({"object": done.ref, "action": done.action})
        if done.changed:
            log.info("%s %s%s", done.ref, done.action, " (dry run)" if k.dry_run else "")
    return report
