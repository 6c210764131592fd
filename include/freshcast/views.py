"""The freshcast pages in the Airflow UI as HTML: the Forecasts page, a pipeline's page, a run's
Report tab, and the short pages for a refusal.

Pure functions of the data `freshcast.pages` gathers and the `Links` the plugin builds from
where Airflow is mounted. Every string shown is HTML-escaped; links to Airflow's own pages open
in the whole window. Server-rendered, no JavaScript build: one small script hands links out of
the UI's sandboxed frame, and the rollback form posts to Airflow's REST API.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freshcast import display, pages
from freshcast.spec import PipelineSpec

esc = html.escape
when = display.when


@dataclass(frozen=True)
class Shown:
    """How a pipeline's figures are shown: its target's unit and the data's decimals."""

    unit: str = ""
    decimals: int = 2

    def metric(self, metric: str, value: Any) -> str:
        return display.metric_value(metric, value, decimals=self.decimals, unit=self.unit)

    def value(self, value: Any) -> str:
        return display.with_unit(display.number(value, self.decimals + 1), self.unit)

    def interval(self, bounds: Sequence[Any] | None) -> str:
        """An interval's bounds: "9.10 to 11.2 kW"; "" without bounds."""
        if not bounds:
            return ""
        lower, upper = bounds
        return f"{display.number(lower, self.decimals + 1)} to {self.value(upper)}"

    def coverage(self, share: Any) -> str:
        """A share as a percentage: 0.8125 -> "81.2%"."""
        return display.with_unit(display.number(_float(share) * 100, display.PERCENT_DECIMALS), "%")


@dataclass(frozen=True)
class Links:
    """URLs the pages link to, built by the plugin from where Airflow is mounted.

    Attributes:
        root: Airflow's own root path ("" or a proxy prefix), for its pages and its API.
        plugin: the plugin app's root path (root + "/freshcast").
    """

    root: str
    plugin: str

    def dag(self, dag_id: str) -> str:
        return f"{self.root}/dags/{_q(dag_id)}"

    def run(self, dag_id: str, run_id: str) -> str:
        return f"{self.root}/dags/{_q(dag_id)}/runs/{_q(run_id)}"

    def pipeline(self, spec_or_name: Any) -> str:
        """The pipeline's page as a tab of its training DAG in the Airflow UI."""
        name = getattr(spec_or_name, "name", spec_or_name)
        return f"{self.root}/dags/train_{_q(name)}/plugin/freshcast-pipeline"

    def report(self, dag_id: str, run_id: str) -> str:
        return f"{self.run(dag_id, run_id)}/plugin/freshcast-report"

    def overview(self) -> str:
        return f"{self.root}/plugin/forecasts"

    def files(self, pipeline_name: str, kind: str, run_id: str, step: str) -> str:
        return f"{self.plugin}/files/{_q(pipeline_name)}/{kind}/{_q(run_id)}/{step}/"

    def api(self) -> str:
        return f"{self.root}/api/v2"


def _q(part: str) -> str:
    from urllib.parse import quote

    return quote(str(part), safe="")


def _a(href: str, text: str) -> str:
    """A link that opens in the whole Airflow window, not inside the plugin's frame."""
    return f'<a href="{esc(href, quote=True)}" target="_top">{esc(text)}</a>'


PAGE_STYLE = """
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.8em 1.2em; min-width: 280px; }
.card h2 { margin-top: 0.2em; }
.muted { color: #666; }
.state-success { color: #1a7f37; } .state-failed { color: #cf222e; }
.state-running, .state-queued { color: #9a6700; }
td.left, th.left { text-align: left; white-space: normal; }
nav.crumbs { margin-bottom: 1em; }
nav.crumbs a { margin-right: 1em; }
form.rollback label { margin-right: 1em; }
"""


# The Airflow UI frames these pages in a sandbox without `allow-top-navigation`, so a plain
# `target="_top"` link to one of Airflow's own pages does nothing there. The frame is same-origin
# (`allow-same-origin allow-scripts`), so such a click is handed to a link in the top document.
TOP_LINKS = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[target=_top]");
  if (!link || window.top === window || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  const top = window.top.document, proxy = top.createElement("a");
  proxy.href = link.href;
  top.body.appendChild(proxy);
  proxy.click();
  proxy.remove();
});
</script>"""


def page(title: str, body: str) -> str:
    """A whole page: the reports' head and stylesheet plus the pages' own rules."""
    from freshcast.report import page_head

    head = page_head(title).replace("</style>", PAGE_STYLE + "</style>", 1)
    return f"{head}{body}\n{TOP_LINKS}\n</body>\n</html>\n"


def _state(state: Any) -> str:
    state = str(state or "none")
    return f'<span class="state-{esc(state)}">{esc(state)}</span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """A table of already-escaped cells; the first `left` columns left-aligned."""

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="left">{c}</{tag}>' if i < left else f"<{tag}>{c}</{tag}>"
            for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _champion_text(champ: Mapping[str, Any] | None, spec_metric: str) -> str:
    if not champ:
        return "none yet: no model has passed the gate"
    show = Shown(champ.get("unit", ""), int(champ.get("decimals", 2)))
    problems = "".join(
        f'<br><span class="bad">registry problem: {esc(p)} (the next run repairs it)</span>'
        for p in champ.get("problems", [])
    )
    return (
        f"v{champ['version']} {esc(champ['model'])}, {esc(champ['metric'])} "
        f"{esc(show.metric(champ['metric'], champ['score']))}, in service since "
        f"{esc(when(champ['since']))}{problems}"
    )


def _forecast_text(made: Mapping[str, Any] | None) -> str:
    if not made:
        return "none yet"
    show = Shown(made.get("unit", ""), int(made.get("decimals", 2)))
    levels = made.get("levels") or []
    key = levels[0] if levels else None  # the narrowest interval served

    def step(row: Mapping[str, Any]) -> str:
        text = f"{when(row['time'])}: {show.value(row['forecast'])}"
        bounds = [row.get(f"lower_{key}"), row.get(f"upper_{key}")] if key else []
        if bounds and None not in bounds:
            text += f" ({key}%: {show.interval(bounds)})"
        return esc(text)

    steps = ", ".join(step(r) for r in made["rows"][:3])
    more = f" (+{len(made['rows']) - 3} more)" if len(made["rows"]) > 3 else ""
    return (
        f'{steps}{more} <span class="muted">by v{esc(str(made["version"]))}, data up to '
        f"{esc(when(made['origin']))}</span>"
    )


def _accuracy_text(made: Mapping[str, Any] | None) -> str:
    if not made:
        return "no forecasts yet"
    rows = made.get("accuracy")
    if not made.get("scored"):
        return "not scored yet"
    if not rows:
        first = made["rows"][0]["time"] if made["rows"] else "?"
        return (
            "no actuals have arrived yet: accuracy appears once the data reaches the first "
            f"forecast time ({esc(when(first))})"
        )
    show = Shown(made.get("unit", ""), int(made.get("decimals", 2)))

    def held(row: Mapping[str, Any]) -> str:
        """The live coverage of each interval the version served, narrowest first."""
        keys = sorted(
            (k.removeprefix("coverage_") for k in row if k.startswith("coverage_")), key=float
        )
        said = [
            f"{key}% interval held {show.coverage(row[f'coverage_{key}'])}"
            for key in keys
            if row[f"coverage_{key}"] is not None
        ]
        return "".join(f", {esc(s)}" for s in said)

    return "; ".join(
        f"v{int(r['model_version'])}: MAE {esc(show.metric('mae', r['mae']))} over "
        f"{int(r['scored_steps'])} forecast steps{held(r)}"
        for r in rows
    )


def _drift_text(made: Mapping[str, Any] | None) -> str | None:
    """The latest forecast run's drift check in one sentence, or None without one."""
    from freshcast.report import drift_text

    if not made or not made.get("drift"):
        return None
    said = drift_text(
        made["drift"], unit=made.get("unit", ""), decimals=int(made.get("decimals", 2))
    )
    return f'<span class="bad">{esc(said)}</span>' if made["drift"].get("drift") else esc(said)


def _started_by(trigger: Any) -> str:
    """What started a training run, in words, escaped ("" when its decision does not say)."""
    from freshcast.report import started_by

    return esc(started_by(trigger) or "")


def render_overview(rows: Sequence[Mapping[str, Any]], links: Links) -> str:
    """The nav page: one card per pipeline the user may read."""
    if not rows:
        body = (
            "<p>No pipeline to show: none is loaded, or your login may read none of their "
            "DAGs. Add a spec to the pipelines folder (see docs/spec.md).</p>"
        )
        return page("freshcast: forecasts", body)
    cards = []
    for row in rows:
        train_id, forecast_id, _ = row["dag_ids"]
        last = row["last_run"]
        if last:
            last_html = (
                f"{_a(links.run(train_id, last['run_id']), last['run_id'])} "
                f"{_state(last.get('state'))}<br>{esc(last.get('outcome') or '')}"
            )
            if started := _started_by(last.get("trigger")):
                last_html += f'<br><span class="muted">started by {started}</span>'
        else:
            last_html = "never run"
        made = row["forecast"]
        made_html = _forecast_text(made)
        if made:
            made_html += " " + _a(links.report(forecast_id, made["run_id"]), "forecast run")
        next_run = esc(when(row["next_run"])) if row.get("next_run") else "not scheduled"
        if row.get("paused"):
            next_run += " (paused)"
        items = [
            ("Champion", _champion_text(row["champion"], row["metric"])),
            ("Last training run", last_html),
            ("Next training run", next_run),
            ("Latest forecast", made_html),
            ("Live accuracy", _accuracy_text(made)),
        ]
        if drift := _drift_text(made):
            items.append(("Drift check", drift))
        table = "".join(
            f'<tr><th class="left">{k}</th><td class="left">{v}</td></tr>' for k, v in items
        )
        cards.append(
            f'<div class="card"><h2>{_a(links.pipeline(row["name"]), row["name"])}</h2>'
            f'<p class="muted">{esc(row["description"])}</p>'
            f"<p>Forecasts {esc(display.column_label(row['target'], row['unit']))}; "
            f"DAGs {_a(links.dag(train_id), train_id)}, {_a(links.dag(forecast_id), forecast_id)}"
            f"</p><table>{table}</table></div>"
        )
    return page("freshcast: forecasts", f'<div class="cards">{"".join(cards)}</div>')


def _runs_chart(runs: Sequence[Mapping[str, Any]]) -> str:
    """The metric of every model, baseline and the champion per training run, as a PNG.

    The y axis spans the models, the champion and persistence; a baseline far above them (a
    seasonal naive forecast often is) would flatten the lines that matter, so it is left off
    the axis and its legend entry says so.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = list(range(1, len(runs) + 1))
    names: dict[str, str] = {}
    for run in runs:
        names.update(run["kinds"])
    series = {name: [_float(run["scores"].get(name)) for run in runs] for name in names}
    held = [_float(run["champion_score"]) for run in runs]
    core = [
        v
        for name, values in series.items()
        if names[name] == "model" or name == "persistence"
        for v in values
    ]
    core = [v for v in [*core, *held] if math.isfinite(v)]
    top = max(core) + 0.15 * (max(core) - min(core) or abs(max(core)) or 1.0) if core else None
    for name, kind in sorted(names.items(), key=lambda kv: (kv[1] != "model", kv[0])):
        y = series[name]
        style = {"linestyle": "--", "alpha": 0.7} if kind == "baseline" else {"linewidth": 1.8}
        above = top is not None and all(v > top for v in y if math.isfinite(v))
        label = f"{name} (above the chart)" if above else name
        ax.plot(x, y, marker="o", markersize=5, label=label, **style)
    if any(math.isfinite(v) for v in held):
        ax.plot(x, held, color="black", marker="s", linewidth=2.2, label="champion (re-scored)")
    if top is not None:
        bottom = min(core) - 0.15 * (max(core) - min(core) or abs(min(core)) or 1.0)
        ax.set_ylim(bottom, top)
    for i, run in enumerate(runs, start=1):
        if run.get("promoted"):
            ax.axvline(i, color="tab:green", alpha=0.25, linewidth=6)
    metric, unit = runs[-1]["metric"], runs[-1]["unit"]
    ax.set_xlabel("training run (oldest to newest; green: promoted)")
    ax.set_ylabel(display.metric_label(metric, unit) + ", lower is better")
    ax.set_xticks(x)
    ax.set_xlim(0.5, len(runs) + 0.5)
    ax.legend(fontsize="small", ncols=2, loc="upper left")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(metric)} per training run">'


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def render_pipeline(
    detail: Mapping[str, Any], links: Links, *, can_rollback: bool, can_see_forecasts: bool
) -> str:
    """The pipeline page: status, leaderboard over runs, registry, forecasts, rollback."""
    name = detail["name"]
    train_id, forecast_id, rollback_id = detail["dag_ids"]
    crumbs = (
        f'<nav class="crumbs">{_a(links.overview(), "all pipelines")}'
        f"{_a(links.dag(train_id), train_id)}{_a(links.dag(forecast_id), forecast_id)}"
        f"{_a(links.dag(rollback_id), rollback_id)}</nav>"
    )
    parts = [crumbs, f'<p class="muted">{esc(detail["description"])}</p>']
    parts.append(render_overview_items(detail, links))
    parts.append(_runs_section(detail, links))
    parts.append(_registry_section(detail, links))
    if can_see_forecasts:
        parts.append(_forecasts_section(detail, links))
    if can_rollback:
        parts.append(_rollback_form(detail, links))
    return page(f"freshcast: {name}", "\n".join(parts))


def render_overview_items(detail: Mapping[str, Any], links: Links) -> str:
    train_id = detail["dag_ids"][0]
    last = detail["last_run"]
    last_html = "never run"
    if last:
        started = _started_by(last.get("trigger"))
        last_html = (
            f"{_a(links.run(train_id, last['run_id']), last['run_id'])} "
            f"{_state(last.get('state'))}: {esc(last.get('outcome') or '')} "
            f"({_a(links.report(train_id, last['run_id']), 'report')}"
            + (f"; started by {started})" if started else ")")
        )
    rows = [
        ("Champion", _champion_text(detail["champion"], detail["metric"])),
        ("Last training run", last_html),
        (
            "Next training run",
            esc(when(detail["next_run"])) if detail.get("next_run") else "not scheduled",
        ),
        ("Latest forecast", _forecast_text(detail["forecast"])),
        ("Live accuracy", _accuracy_text(detail["forecast"])),
    ]
    if drift := _drift_text(detail["forecast"]):
        rows.append(("Drift check", drift))
    body = "".join(f'<tr><th class="left">{k}</th><td class="left">{v}</td></tr>' for k, v in rows)
    return f"<h2>Now</h2><table>{body}</table>"


def _runs_section(detail: Mapping[str, Any], links: Links) -> str:
    runs = detail["runs"]
    train_id = detail["dag_ids"][0]
    if not runs:
        return "<h2>Leaderboard over runs</h2><p>No training run has been evaluated yet.</p>"
    metric, unit = runs[-1]["metric"], runs[-1]["unit"]
    names = sorted(
        {n for r in runs for n in r["kinds"]},
        key=lambda n: (runs[-1]["kinds"].get(n) != "model", n),
    )
    # The candidate's intervals (coverage and width per level) and backtest mean, when any run
    # has them; older runs leave the cells blank.
    levels = sorted({k for r in runs for k in r.get("intervals") or {}}, key=float)
    backtest = any(r.get("backtest_mean") is not None for r in runs)
    header = [
        "#",
        "run",
        "state",
        *map(esc, names),
        f"champion ({esc(metric)})",
        *(f"candidate's {esc(key)}% interval" for key in levels),
        *([f"candidate's backtest mean ({esc(metric)})"] if backtest else []),
        "decision",
    ]
    rows = []
    for i, run in enumerate(reversed(runs)):
        show = Shown(run["unit"], int(run["decimals"]))
        best = run.get("candidate")
        cells = [
            str(len(runs) - i),
            _a(links.report(train_id, run["run_id"]), run["run_id"]),
            _state(run.get("state")),
        ]
        for n in names:
            text = esc(show.metric(metric, run["scores"].get(n))) if n in run["scores"] else ""
            cells.append(f"<b>{text}</b>" if n == best else text)
        version = run.get("champion_version")
        held = esc(show.metric(metric, run["champion_score"])) if version else "none"
        cells.append(f"v{version} {held}" if version else held)
        for key in levels:
            entry = (run.get("intervals") or {}).get(key)
            cells.append(
                esc(
                    f"{show.coverage(entry.get('coverage'))} covered, "
                    f"{show.metric('mae', entry.get('width'))} wide"
                )
                if entry
                else ""
            )
        if backtest:
            mean = run.get("backtest_mean")
            said = f" over {run['backtest_folds']} folds" if run.get("backtest_folds") else ""
            cells.append(esc(show.metric(metric, mean) + said) if mean is not None else "")
        decided = esc(run.get("verdict") or "")
        if run.get("basis") == "backtest":
            decided += ' <span class="muted">(on the backtest)</span>'
        if started := _started_by(run.get("trigger")):
            decided += f'<br><span class="muted">started by {started}</span>'
        cells.append(decided)
        rows.append(cells)
    table = f'<div class="scroll">{_table(header, rows, left=3)}</div>'
    return (
        f"<h2>Leaderboard over runs ({esc(display.metric_label(metric, unit))}, test split of each "
        f'run)</h2>{_runs_chart(runs)}<p class="muted">Bold: the run\'s candidate. The champion '
        "column is the model in service re-scored on that run's test window."
        + (
            " An interval's coverage is the share of the test targets inside it (near its level "
            "is right), its width the mean distance between its bounds."
            if levels
            else ""
        )
        + f"</p>{table}"
    )


def _registry_section(detail: Mapping[str, Any], links: Links) -> str:
    registry = detail["registry"]
    train_id = detail["dag_ids"][0]
    rows = []
    for v in registry["versions"]:
        show = Shown(v.get("unit", ""), int(v.get("decimals", 2)))
        rows.append(
            [
                f"v{v['version']}" + (" <b>(serving)</b>" if v["serving"] else ""),
                esc(f"{v['model']} ({v['type']})"),
                esc(f"{v['metric']} {show.metric(v['metric'], v['score'])}"),
                _a(links.report(train_id, v["run_id"]), v["run_id"]) if v.get("run_id") else "",
                esc(f"{when(v.get('data_start') or '')} to {when(v.get('data_end') or '')}"),
                esc(f"v{v['compared_to']}" if v.get("compared_to") else "none"),
                esc((v.get("git_commit") or "")[:10]),
            ]
        )
    versions = (
        _table(
            ["version", "model", "score", "trained by run", "data", "beat", "commit"], rows, left=5
        )
        if rows
        else "<p>No version yet.</p>"
    )
    forecast_id = detail["dag_ids"][1]

    def run(event: Mapping[str, Any]) -> str:
        """A training run's report, a forecast run's (a drift), or the id alone."""
        run_id = event.get("run_id")
        if run_id and event["kind"] in ("promoted", "refused"):
            return _a(links.report(train_id, run_id), run_id)
        if run_id and event["kind"] == "drift":
            return _a(links.report(forecast_id, run_id), run_id)
        return esc(run_id or "")

    events = (
        _table(
            ["#", "when", "event", "what", "run", "started by", "why"],
            [
                [
                    str(e["seq"]),
                    esc(when(e["at"])),
                    f'<span class="bad">{esc(e["kind"])}</span>'
                    if e["kind"] == "drift"
                    else esc(e["kind"].replace("_", " ")),
                    esc(e["what"]),
                    run(e),
                    _started_by(e.get("trigger")),
                    "<br>".join(esc(r) for r in e["reasons"]),
                ]
                for e in registry["events"]
            ],
            left=7,
        )
        if registry["events"]
        else "<p>No event yet.</p>"
    )
    return f"<h2>Registry: versions</h2>{versions}<h2>Registry: history</h2>{events}"


def _forecasts_section(detail: Mapping[str, Any], links: Links) -> str:
    made = detail["forecast"]
    rows = detail["forecasts"]
    if not rows:
        return (
            "<h2>Forecasts</h2><p>No forecast yet: the forecast DAG runs after the first "
            "promotion.</p>"
        )
    show = Shown(made.get("unit", "") if made else "", int(made.get("decimals", 2)) if made else 2)
    levels = sorted({k for r in rows for k in r.get("bounds") or {}}, key=float)
    table = _table(
        [
            "time",
            "step",
            "forecast",
            *(f"{esc(key)}% interval" for key in levels),
            "actual",
            "error",
            "by",
            "made at",
        ],
        [
            [
                esc(when(r["time"])),
                str(r["step"]),
                esc(show.value(r["forecast"])),
                *(esc(show.interval((r.get("bounds") or {}).get(key))) for key in levels),
                esc(show.value(r["actual"])) if r["actual"] is not None else "not yet",
                esc(show.value(r["forecast"] - r["actual"])) if r["actual"] is not None else "",
                f"v{r['version']}",
                esc(when(r["made_at"])),
            ]
            for r in rows
        ],
        left=1,
    )
    picture = ""
    if made and made.get("scored"):
        forecast_id = detail["dag_ids"][1]
        src = links.files(detail["name"], "forecast", made["run_id"], "score") + "history.png"
        picture = (
            f'<img src="{esc(src, quote=True)}" alt="past forecasts against the actual values">'
            f"<p>{_a(links.report(forecast_id, made['run_id']), 'the latest forecast run')}</p>"
        )
    note = ""
    if all(r["actual"] is None for r in rows):
        note = (
            "<p>No actuals have arrived yet for these forecasts; they are scored once the data "
            "reaches their times.</p>"
        )
    return f"<h2>Forecasts (newest first)</h2>{picture}{note}{table}"


def _rollback_form(detail: Mapping[str, Any], links: Links) -> str:
    """A form that starts the rollback DAG through Airflow's REST API with the user's own
    login (the session cookie); Airflow checks the permission again."""
    registry = detail["registry"]
    versions = [v["version"] for v in registry["versions"]]
    if not versions:
        return ""
    rollback_id = detail["dag_ids"][2]
    options = "".join(
        f'<option value="{v}"{" selected" if v != registry["champion"] else ""}>v{v}</option>'
        for v in versions
    )
    endpoint = f"{links.api()}/dags/{_q(rollback_id)}/dagRuns"
    return f"""<h2>Roll back</h2>
<form class="rollback" id="rollback" data-endpoint="{esc(endpoint, quote=True)}"
 data-run-base="{esc(links.dag(rollback_id), quote=True)}/runs/">
<label>version <select name="version">{options}</select></label>
<label>reason <input name="reason" value="manual rollback from the UI" size="40" required></label>
<button type="submit">Start {esc(rollback_id)}</button>
<span id="rollback-result" role="status"></span>
</form>
<script>
document.getElementById("rollback").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const form = event.target, out = document.getElementById("rollback-result");
  const conf = {{version: Number(form.version.value), reason: form.reason.value}};
  out.textContent = "starting...";
  const response = await fetch(form.dataset.endpoint, {{
    method: "POST", credentials: "same-origin",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{logical_date: null, conf: conf}}),
  }});
  const body = await response.json().catch(() => ({{}}));
  if (response.ok) {{
    const link = document.createElement("a");
    link.href = form.dataset.runBase + encodeURIComponent(body.dag_run_id);
    link.target = "_top";
    link.textContent = "started run " + body.dag_run_id;
    out.replaceChildren(link);
  }} else {{
    out.textContent = "refused (" + response.status + "): " + (body.detail || "");
  }}
}});
</script>"""


def render_run_page(
    spec: PipelineSpec,
    kind: str,
    run: Mapping[str, Any],
    links: Links,
    *,
    note: str | None = None,
) -> str:
    """The Report tab of one run: the training report, the forecast report, or what a
    rollback did; or, while there is none, what the run did instead."""
    from freshcast.report import render_forecast, render_run

    run_id = run["run_id"]
    dag_id = pages.dag_ids(spec)[pages.RUN_KINDS.index(kind)]
    crumbs = (
        f'<nav class="crumbs">{_a(links.pipeline(spec), f"pipeline {spec.name}")}'
        f"{_a(links.dag(dag_id), dag_id)}{_a(links.run(dag_id, run_id), f'run {run_id}')}</nav>"
    )
    state = f"<p>Run state: {_state(run.get('state'))}" + (
        f" — {esc(note)}</p>" if note else "</p>"
    )
    body = ""
    if kind == "train":
        summary = pages.report_summary(spec, "train", run_id, "report")
        if summary is not None:
            body = render_run(summary, files=links.files(spec.name, "train", run_id, "report"))
        else:
            body = (
                "<p>This run has no report: it trained nothing, or its report task has not "
                "finished.</p>"
            )
    elif kind == "forecast":
        summary = pages.report_summary(spec, "forecast", run_id, "score")
        if summary is not None:
            body = render_forecast(
                summary, files=links.files(spec.name, "forecast", run_id, "score")
            )
        else:
            body = (
                "<p>This run has no forecast report: it forecast nothing (no champion yet), "
                "or it has not finished.</p>"
            )
    else:
        body = (
            "<p>A rollback run moves the champion pointer; the pipeline page shows the "
            "registry history.</p>"
        )
    title = f"freshcast: {spec.name}, {kind} run {run_id}"
    return page(title, crumbs + state + body)


def render_message(title: str, message: str, *, link: tuple[str, str] | None = None) -> str:
    """A short page for a refusal or a missing thing (401, 403, 404)."""
    extra = f"<p>{_a(*link)}</p>" if link else ""
    return page(title, f"<p>{esc(message)}</p>{extra}")
