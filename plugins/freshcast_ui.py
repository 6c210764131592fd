"""freshcast in the Airflow UI: a "Forecasts" page, a tab per pipeline, a Report tab per run,
and a note on every finished run saying what it did.

Airflow's part only: routes, Airflow's login and permissions, and what only Airflow knows (its
runs, their states, the next run). The page data and HTML come from `freshcast.pages`.

- `external_views` (Airflow 3.1+ plugin interface, no Flask): the nav entry "Forecasts"
  (`/plugin/forecasts`), a "Forecasts" tab on each DAG (the pipeline page) and a "Report" tab on
  each DAG run; hrefs are relative, so a reverse proxy's prefix works.
- `fastapi_apps`: the pages under `/freshcast`. Plugin apps are not behind Airflow's login by
  default, so every route depends on the auth manager's user (the UI's session cookie or a
  bearer token) and checks the user's permission on the pipeline's DAGs.
- `listeners`: the scheduler calls `on_dag_run_success`/`_failed`; a freshcast run then gets a
  DAG-run note ("trained nothing: ...", "champion v3 kept: ...") unless a person wrote one.

Every task process imports this module (Airflow loads plugins for their listeners and macros),
so it imports nothing heavy: FastAPI and the page code load on the first request. (No
`from __future__ import annotations` here: FastAPI reads the routes' annotations, which name
classes imported inside `build_app`.)
"""

from typing import Any, ClassVar

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/freshcast"


class _LazyApp:
    """An ASGI app that builds the FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = build_app()
        await self._app(scope, receive, send)


def build_app() -> Any:
    """The FastAPI app of the freshcast pages (see `freshcast.pages` for what they show)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.sdk import ObjectStoragePath
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from sqlalchemy import select

    from freshcast import artifacts, pages, views

    # The pages read the store the tasks write: a URL root through the same Airflow connection.
    artifacts.use_url_store(lambda root, conn_id: ObjectStoragePath(root, conn_id=conn_id))
    app = FastAPI(title="freshcast", docs_url=None, redoc_url=None, openapi_url=None)

    def links(request: Request) -> views.Links:
        plugin = request.scope.get("root_path", "").rstrip("/")
        return views.Links(root=plugin.removesuffix(URL_PREFIX), plugin=plugin)

    def allowed(user: Any, dag_id: str, method: str = "GET", entity: Any = None) -> bool:
        return get_auth_manager().is_authorized_dag(
            method=method, access_entity=entity, details=DagDetails(id=dag_id), user=user
        )

    def require(user: Any, dag_id: str, entity: Any = None) -> None:
        if not allowed(user, dag_id, entity=entity):
            raise HTTPException(403, f"your login may not read the DAG {dag_id}")

    def lookup(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except pages.NotFound as err:
            raise HTTPException(404, str(err)) from None

    def runs(session: Any, dag_id: str, limit: int) -> list[dict[str, Any]]:
        query = (
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc())
        ).limit(limit)
        return [
            {
                "dag_id": run.dag_id,
                "run_id": run.run_id,
                "state": str(run.state.value if hasattr(run.state, "value") else run.state),
                "run_type": str(getattr(run.run_type, "value", run.run_type)),
                "run_after": run.run_after.isoformat() if run.run_after else None,
                "note": run.note,
            }
            for run in session.scalars(query)
        ]

    def airflow_side(session: Any, spec: Any) -> dict[str, Any]:
        dag = session.get(DagModel, spec.dag_id)
        due = dag.next_dagrun_create_after if dag is not None else None
        return {
            "train_runs": runs(session, spec.dag_id, pages.MAX_RUNS),
            "forecast_runs": runs(session, spec.forecast_dag_id, 10),
            "next_run": due.isoformat() if due else None,
            "paused": dag.is_paused if dag is not None else None,
        }

    def readable(user: Any) -> list[Any]:
        specs = pages.specs()
        ok = get_auth_manager().filter_authorized_dag_ids(
            dag_ids={s.dag_id for s in specs.values()}, user=user, method="GET"
        )
        return [s for s in specs.values() if s.dag_id in ok]

    @app.exception_handler(HTTPException)
    async def refused(request: Request, err: HTTPException) -> Any:
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"detail": err.detail}, status_code=err.status_code)
        link = None
        if err.status_code == 401:
            root = links(request).root
            link = (f"{root}/auth/login?next={request.url.path}", "log in to Airflow")
        titles = {401: "Log in first", 403: "Not allowed", 404: "Not found"}
        page = views.render_message(
            titles.get(err.status_code, "Error"), str(err.detail), link=link
        )
        return HTMLResponse(page, status_code=err.status_code)

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, user: GetUserDep, session: SessionDep) -> str:
        rows = [pages.overview_row(s, airflow_side(session, s)) for s in readable(user)]
        return views.render_overview(rows, links(request))

    @app.get("/api/pipelines")
    def overview_json(user: GetUserDep, session: SessionDep) -> list[dict[str, Any]]:
        return [pages.overview_row(s, airflow_side(session, s)) for s in readable(user)]

    def detail(user: Any, session: Any, spec: Any) -> tuple[dict[str, Any], bool, bool]:
        require(user, spec.dag_id)
        data = pages.pipeline_detail(spec, airflow_side(session, spec))
        can_see = allowed(user, spec.forecast_dag_id)
        if not can_see:
            data["forecast"], data["forecasts"] = None, []
        rollback = allowed(user, spec.rollback_dag_id, "POST", DagAccessEntity.RUN)
        return data, can_see, rollback

    @app.get("/pipelines/{name}", response_class=HTMLResponse)
    def pipeline_page(name: str, request: Request, user: GetUserDep, session: SessionDep) -> str:
        data, can_see, rollback = detail(user, session, lookup(pages.pipeline, name))
        return views.render_pipeline(
            data, links(request), can_rollback=rollback, can_see_forecasts=can_see
        )

    @app.get("/dags/{dag_id}", response_class=HTMLResponse)
    def dag_tab(dag_id: str, request: Request, user: GetUserDep, session: SessionDep) -> str:
        spec, _ = lookup(pages.dag_pipeline, dag_id)
        data, can_see, rollback = detail(user, session, spec)
        return views.render_pipeline(
            data, links(request), can_rollback=rollback, can_see_forecasts=can_see
        )

    @app.get("/api/pipelines/{name}")
    def pipeline_json(name: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        return detail(user, session, lookup(pages.pipeline, name))[0]

    @app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse)
    def run_tab(
        dag_id: str, run_id: str, request: Request, user: GetUserDep, session: SessionDep
    ) -> str:
        spec, kind = lookup(pages.dag_pipeline, dag_id)
        require(user, dag_id, DagAccessEntity.RUN)
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            raise HTTPException(404, f"{dag_id} has no run {run_id!r}")
        shown = {"run_id": run.run_id, "state": str(getattr(run.state, "value", run.state))}
        return views.render_run_page(spec, kind, shown, links(request), note=run.note)

    @app.get("/files/{name}/{kind}/{run_id}/{step}/{filename}")
    def run_file(
        name: str, kind: str, run_id: str, step: str, filename: str, user: GetUserDep
    ) -> FileResponse:
        spec = lookup(pages.pipeline, name)
        if kind not in pages.SERVED_STEPS:
            raise HTTPException(404, f"no {kind} runs")
        require(user, pages.dag_ids(spec)[pages.RUN_KINDS.index(kind)], DagAccessEntity.RUN)
        path = lookup(pages.served_file, spec, kind, run_id, step, filename)
        media = pages.SERVED_SUFFIXES[path.suffix]
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

    return app


class _RunNotes:
    """Listener: a note on each finished freshcast run saying what it did (scheduler side)."""

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _note(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _note(dag_run)


def _note(dag_run: Any) -> None:
    """Set the run's note from its task states and XComs, unless a person wrote one."""
    if dag_run.note:
        return
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    from freshcast import pages

    try:
        _, kind = pages.dag_pipeline(dag_run.dag_id)
    except pages.NotFound:
        return
    session = object_session(dag_run)
    if session is None:
        return
    states = {
        task_id: str(getattr(state, "value", state))
        for task_id, state in session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        )
    }
    results: dict[str, Any] = {}
    for xcom in session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_run.dag_id,
            XComModel.run_id == dag_run.run_id,
            XComModel.map_index == -1,
            XComModel.key.in_(("return_value", "reason")),
        )
    ):
        key = xcom.task_id if xcom.key == "return_value" else f"{xcom.task_id}.{xcom.key}"
        results[key] = XComModel.deserialize_value(xcom)
    text = pages.run_note(kind, states, results)
    if text:
        dag_run.note = text[:1000]  # the note column's size


class FreshcastPlugin(AirflowPlugin):
    name = "freshcast"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "freshcast pages"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Forecasts",
            "href": "freshcast/",
            "destination": "nav",
            "url_route": "forecasts",
            "nav_top_level": True,
        },
        {
            "name": "Forecasts",
            "href": "freshcast/dags/{DAG_ID}",
            "destination": "dag",
            "url_route": "freshcast-pipeline",
        },
        {
            "name": "Report",
            "href": "freshcast/dags/{DAG_ID}/runs/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "freshcast-report",
        },
    ]
    listeners: ClassVar[list[Any]] = [_RunNotes()]
