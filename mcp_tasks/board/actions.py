"""The board's actions: POSTs from its forms, each checked (same origin, the person's CSRF token,
then the role table in the registry) and each recorded by the registry as an event naming the
person. A refused action changes nothing and says why; a done one returns to the page it came from."""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import limits
from ..errors import InvalidInput, TaskError
from ..models import Caller, NewTask
from ..registry import Registry
from ..server.app import AppState
from .pages import error_page, status_of
from .people import Person, check_form, person_of, safe_next, same_origin

MAX_FORM = 64 * 1024  # bytes of one posted form
BATCH_ACTIONS = ("retry", "cancel", "priority", "tag")


def _tags(raw: str) -> list[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]


def _priority(raw: object) -> int:
    try:
        return int(str(raw).strip())
    except ValueError:
        raise InvalidInput(f"priority must be a whole number from 1 to 10, not {str(raw)[:20]!r}") from None


def back_to(target: str, notice: str) -> RedirectResponse:
    """Return to `target` with a one-line notice shown on top of the page."""
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'notice': notice[:300]})}", status_code=303)


class Actions:
    """POST routes of the board over one server's AppState."""

    def __init__(self, app: AppState) -> None:
        self.app = app

    async def _checked(self, request: Request) -> tuple[Person, FormData] | Response:
        """The person and their form, or the page refusing the request (nothing changed)."""
        person = await person_of(request, self.app)
        if person is None:
            return error_page(request, None, 403, "sign in first: this board needs a token to change anything", "/login")
        problem = same_origin(request)
        if problem is None and int(request.headers.get("content-length") or 0) > MAX_FORM:
            problem = f"the form is larger than {MAX_FORM} bytes"
        if problem is not None:
            return error_page(request, person, 403, problem)
        form = await request.form(max_files=0, max_fields=1000)
        problem = check_form(person, form.get("csrf"))
        if problem is not None:
            return error_page(request, person, 403, problem)
        return person, form

    async def _run(self, request: Request, default_back: str,
                   act: Callable[[Registry, Caller, FormData, str], Awaitable[str]]) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        person, form = checked
        back = safe_next(form.get("next"), default_back)
        tid = request.path_params.get("task_id", "")
        try:
            notice = await act(self.app.registry, person.caller, form, tid)
        except TaskError as exc:
            return error_page(request, person, status_of(exc), str(exc), back)
        return back_to(back, notice)

    async def retry(self, request: Request) -> Response:
        """Put a dead letter back in the queue."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            await reg.retry(tid, actor=who)
            return f"{tid} is back in the queue"
        return await self._run(request, f"/tasks/{request.path_params['task_id']}", act)

    async def cancel(self, request: Request) -> Response:
        """Cancel a task with a reason (started work only by an admin: the registry checks)."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            await reg.cancel(tid, str(form.get("reason") or ""), actor=who)
            return f"{tid} is cancelled"
        return await self._run(request, f"/tasks/{request.path_params['task_id']}", act)

    async def release(self, request: Request) -> Response:
        """Take held work back from its holder (admin)."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            task = await reg.force_release(tid, str(form.get("reason") or ""), actor=who)
            return f"{tid} was taken back; it is now {task.state}"
        return await self._run(request, f"/tasks/{request.path_params['task_id']}", act)

    async def review(self, request: Request) -> Response:
        """Approve a task in review, or send it back with changes requested."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            decision = form.get("decision")
            if decision not in ("approve", "changes"):
                raise InvalidInput("decision must be approve or changes")
            comment = str(form.get("comment") or "") or None
            task = await reg.review(tid, decision == "approve", comment, actor=who)
            return f"{tid} is now {task.state}"
        return await self._run(request, f"/tasks/{request.path_params['task_id']}", act)

    async def edit(self, request: Request) -> Response:
        """Change a task's priority and tags (refused if someone changed it since the page was shown)."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            version = form.get("version")
            fields: dict[str, Any] = {}
            if form.get("priority") not in (None, ""):
                fields["priority"] = _priority(form.get("priority"))
            if form.get("tags") is not None:
                fields["tags"] = _tags(str(form.get("tags")))
            await reg.update(tid, expected_version=int(str(version)) if str(version or "").isdigit() else None,
                             actor=who, **fields)
            return f"{tid} saved"
        return await self._run(request, f"/tasks/{request.path_params['task_id']}", act)

    async def create(self, request: Request) -> Response:
        """Create one task from the board's form."""
        async def act(reg: Registry, who: Caller, form: FormData, tid: str) -> str:
            spec = NewTask(title=str(form.get("title") or ""), description=str(form.get("description") or ""),
                           type=str(form.get("type") or "general"), priority=_priority(form.get("priority") or 5),
                           tags=_tags(str(form.get("tags") or "")))
            created = await reg.create_tasks([spec], actor=who)
            return f"created {created.ids[0]}"
        return await self._run(request, "/", act)

    async def batch(self, request: Request) -> Response:
        """The same action on every selected task; each is done or refused on its own."""
        async def act(reg: Registry, who: Caller, form: FormData, _: str) -> str:
            action = form.get("action")
            if action not in BATCH_ACTIONS:
                raise InvalidInput(f"action must be one of {', '.join(BATCH_ACTIONS)}")
            ids = [str(i) for i in form.getlist("ids")]
            if not ids:
                raise InvalidInput("select at least one task")
            if len(ids) > limits.MAX_BATCH:
                raise InvalidInput(f"{len(ids)} tasks selected; at most {limits.MAX_BATCH} at once")
            done, refused = 0, []
            for tid in dict.fromkeys(ids):
                try:
                    if action == "retry":
                        await reg.retry(tid, actor=who)
                    elif action == "cancel":
                        await reg.cancel(tid, "cancelled from the board (batch)", actor=who)
                    elif action == "priority":
                        await reg.update(tid, priority=_priority(form.get("priority")), actor=who)
                    else:
                        task = await reg.get(tid)
                        tag = limits.name("tag", str(form.get("tag") or "").strip())
                        await reg.update(tid, tags=list(dict.fromkeys([*task.tags, tag])),
                                         expected_version=task.version, actor=who)
                    done += 1
                except TaskError as exc:
                    if exc.code in ("forbidden", "role_required"):
                        raise
                    refused.append(f"{tid}: {exc}")
            summary = f"{action}: {done} done"
            if refused:
                summary += f", {len(refused)} refused ({'; '.join(refused[:3])}{' …' if len(refused) > 3 else ''})"
            return summary
        return await self._run(request, "/tasks", act)
