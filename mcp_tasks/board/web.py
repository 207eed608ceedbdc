"""The board's routes, sign-in and static files, mounted beside /mcp (server/http.py) or alone
(`mcp-tasks web`)."""

from __future__ import annotations

import time
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..server.app import AppState
from .actions import Actions
from .live import Pulse, stream_response
from .pages import Pages, error_page, render
from .people import COOKIE, COOKIE_DAYS, check_form, person_of, safe_next, same_origin

STATIC = resources.files(__package__) / "static"


class Board:
    """The board over one server's AppState: its routes and its live pulse."""

    def __init__(self, app: AppState) -> None:
        self.app = app
        self.pulse = Pulse()
        self.pages = Pages(app)
        self.actions = Actions(app)

    def attach(self) -> None:
        """Hear the change follower (call once the server's lifespan has started it)."""
        follower = self.app.follower
        if follower is not None and self.pulse.fire not in follower.advanced:
            follower.advanced.append(self.pulse.fire)

    def routes(self) -> list[BaseRoute]:
        """Every route of the board."""
        p, a = self.pages, self.actions
        return [
            Route("/", p.board),
            Route("/tasks", p.tasks),
            Route("/tasks", a.create, methods=["POST"]),
            Route("/tasks/{task_id}", p.task),
            Route("/tasks/{task_id}/retry", a.retry, methods=["POST"]),
            Route("/tasks/{task_id}/cancel", a.cancel, methods=["POST"]),
            Route("/tasks/{task_id}/release", a.release, methods=["POST"]),
            Route("/tasks/{task_id}/review", a.review, methods=["POST"]),
            Route("/tasks/{task_id}/edit", a.edit, methods=["POST"]),
            Route("/batch", a.batch, methods=["POST"]),
            Route("/agents", p.agents),
            Route("/agents/{name:path}", p.agent),
            Route("/events", p.events),
            Route("/charts", p.charts),
            Route("/live", self.live),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ]

    async def live(self, request: Request) -> Response:
        """The page's server-sent-events stream (live.py)."""
        if await person_of(request, self.app) is None:
            return Response("sign in first", status_code=401, media_type="text/plain")
        self.attach()
        follower = self.app.follower
        current = follower.last_seq if follower is not None and follower.last_seq is not None else 0
        return stream_response(request, self.pulse, current)

    async def login(self, request: Request) -> Response:
        """Sign in with a token: kept in an HttpOnly, SameSite=Strict cookie."""
        if self.app.public_url is None:
            return RedirectResponse("/", status_code=303)  # no tokens: the local user needs no sign-in
        if request.method == "GET":
            return render("login.html", request, None, title="Sign in", next=safe_next(request.query_params.get("next")))
        problem = same_origin(request)
        if problem is not None:
            return error_page(request, None, 403, problem, "/login")
        form = await request.form(max_files=0, max_fields=10)
        token = str(form.get("token") or "").strip()
        target = safe_next(form.get("next"))
        info = None if self.app.tokens is None else await self.app.tokens.verify(token)
        if info is None:
            return render("login.html", request, None, status=401, title="Sign in", next=target,
                          problem="That token is not valid: unknown, expired or revoked. Check it and try again.")
        response = RedirectResponse(target, status_code=303)
        age = COOKIE_DAYS * 86400
        if info.expires_at is not None:
            age = max(1, min(age, int(info.expires_at - time.time())))
        response.set_cookie(COOKIE, token, max_age=age, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        """Forget the sign-in cookie."""
        person = await person_of(request, self.app)
        if person is not None:
            form = await request.form(max_files=0, max_fields=10)
            problem = same_origin(request) or check_form(person, form.get("csrf"))
            if problem is not None:
                return error_page(request, person, 403, problem)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response
