"""The freshcast pages inside the Airflow UI, on a running Airflow (the four components started
as `make run` starts them) after real runs of the bundled seattle_weather pipeline:

- what a person reads there, in a real browser (Debian's chromium through chromedriver): log in,
  the Forecasts page, the pipeline's page, a run's Report tab, the rollback form; screenshots are
  saved (to $FRESHCAST_SCREENSHOTS, which is how the README's pictures are made);
- the login and permissions every page and JSON endpoint asks for (401, 403, 200), and the edit
  permission the rollback needs;
- that no pipeline name, run id or file name in a URL reaches outside the artifact store;
- what the runs say of themselves: DAG-run notes, the champion and forecast Assets' events.

Browser tests skip on a machine without chromium and chromedriver, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from freshcast.local import api, commands, config, processes
from tests.conftest import PROJECT_ROOT
from tests.e2e.restricted_auth import OUTSIDER
from tests.e2e.test_scheduler import free_port

pytestmark = pytest.mark.slow

PIPELINE = "seattle_weather"
TRAIN, FORECAST, ROLLBACK = (f"{k}_{PIPELINE}" for k in ("train", "forecast", "rollback"))
HOSTILE = "<script>alert('x')</script>"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """Airflow with the bundled seattle_weather spec and a spec whose description is markup;
    after two trainings (v1, then a second model compared with it), one that trains nothing,
    and forecasts made in the past (so actuals have arrived) and now."""
    tmp = tmp_path_factory.mktemp("ui")
    pipelines = tmp / "pipelines"
    pipelines.mkdir()
    shutil.copy(PROJECT_ROOT / "include" / "pipelines" / f"{PIPELINE}.yaml", pipelines)
    hostile = (pipelines / f"{PIPELINE}.yaml").read_text()
    hostile = re.sub(r"(?ms)^description: >.*?^source:", "source:", hostile)
    (pipelines / "hostile.yaml").write_text(f'description: "{HOSTILE}"\n{hostile}')
    af = config.Airflow(home=tmp / "airflow-home", port=free_port())
    env = {
        "AIRFLOW_HOME": str(af.home),
        "FRESHCAST_PIPELINES_DIR": str(pipelines),
        "FRESHCAST_ARTIFACT_ROOT": str(tmp / "artifacts"),
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.e2e.restricted_auth.RestrictedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,viewer:viewer,{OUTSIDER}:viewer",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        config.write_config(af, dags_folder=PROJECT_ROOT / "dags")
        try:
            said: list[str] = []
            code = commands.run_pipeline(
                af, PIPELINE, conf={}, pools={"training": 2}, say=said.append
            )
            assert code == 0, "\n".join(said)
            client = api.Client(af)
            runs = {"first": client.dag_runs(TRAIN)[-1]["dag_run_id"]}
            for name, conf in (("second", {"epochs": 5, "models": ["gru"]}), ("unchanged", {})):
                runs[name] = client.trigger(TRAIN, conf)
                assert client.follow(TRAIN, runs[name], say=lambda _: None) == "success"
            past_forecasts(client)
            runs["forecast"] = client.trigger(FORECAST, {})
            assert client.follow(FORECAST, runs["forecast"], say=lambda _: None) == "success"
            yield {"af": af, "client": client, "runs": runs, "said": said, "tmp": tmp}
        finally:
            processes.stop(af, say=lambda _: None)


def past_forecasts(client: api.Client) -> None:
    """Forecasts as if made on 29 and 30 December 2015 (a backfill of the forecast DAG): their
    targets are in the data, so the next forecast run scores them against the actuals."""
    backfill = client.create_backfill(
        FORECAST, start="2015-12-29", end="2015-12-30", reprocess="none"
    )["id"]
    deadline = time.monotonic() + 300
    while not client.backfill(backfill).get("completed_at"):
        assert time.monotonic() < deadline, "the forecast backfill did not finish"
        time.sleep(2)
    runs = [r for r in client.dag_runs(FORECAST) if r["run_type"] == "backfill"]
    assert [r["state"] for r in runs] == ["success", "success"]


def login(ui, user: str) -> httpx.Client:
    """An HTTP client with `user`'s session cookie, as the browser has it after logging in."""
    af = ui["af"]
    password = json.loads(af.passwords_file.read_text())[user]
    token = httpx.post(
        f"{af.url}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    return httpx.Client(base_url=af.url, cookies={"_token": token}, timeout=60)


def report_path(ui, dag_id: str, run: str) -> str:
    return f"/freshcast/dags/{dag_id}/runs/{quote(ui['runs'][run], safe='')}"


# ---------------------------------------------------------------- what the runs say


def test_make_run_ends_with_the_pipeline_page(ui):
    af = ui["af"]
    lines = ui["said"]
    assert lines[-2].startswith(f"Results:    {af.url}/dags/{TRAIN}/plugin/freshcast-pipeline")
    assert any(
        line.startswith("Report:     ") and "/plugin/freshcast-report" in line for line in lines
    )


def test_every_run_has_a_note_saying_what_it_did(ui):
    client, runs = ui["client"], ui["runs"]
    notes = {r["dag_run_id"]: r["note"] for r in client.dag_runs(TRAIN)}
    assert re.fullmatch(
        r"(lstm|gru) promoted to v1: mae \d\.\d\d °C, beats persistence, seasonal_naive_365 "
        r"and ridge \(no champion to compare\)",
        notes[runs["first"]],
    )
    assert re.match(
        r"(gru promoted to v2: mae .* vs champion v1|champion v1 kept: candidate gru)",
        notes[runs["second"]],
    )
    assert notes[runs["unchanged"]].startswith(
        f"trained nothing: data and spec are identical to run {runs['second']}"
    )
    assert "force=true" in notes[runs["unchanged"]]
    forecast_notes = {r["dag_run_id"]: r["note"] for r in client.dag_runs(FORECAST)}
    assert re.fullmatch(
        r"v[12] forecast 2016-01-01: -?\d+\.\d+ °C", forecast_notes[runs["forecast"]]
    )


def test_assets_say_what_is_in_service_and_what_was_forecast(ui):
    client = ui["client"]
    events = client.asset_events(limit=100)
    champion = [e for e in events if e["uri"] == f"x-freshcast://{PIPELINE}/champion"]
    assert champion[0]["extra"]["version"] == 1
    assert set(champion[0]["extra"]) >= {"model", "metric", "score", "unit", "version", "run_id"}
    assert (
        champion[0]["extra"]["run_id"] == ui["runs"]["first"]
        and champion[0]["extra"]["unit"] == "°C"
    )
    forecasts = [e for e in events if e["uri"] == f"x-freshcast://{PIPELINE}/forecast"]
    assert forecasts and forecasts[-1]["extra"]["first"].startswith("2016-01-01")


def test_the_trigger_form_has_no_internal_switch(ui):
    params = ui["client"].dag_details(TRAIN)["params"]
    assert set(params) == {"epochs", "models", "force"}


# ---------------------------------------------------------------- login and permissions


def protected_urls(ui) -> list[str]:
    first = ui["runs"]["first"]
    return [
        "/freshcast/",
        "/freshcast/api/pipelines",
        f"/freshcast/pipelines/{PIPELINE}",
        f"/freshcast/api/pipelines/{PIPELINE}",
        f"/freshcast/dags/{TRAIN}",
        report_path(ui, TRAIN, "first"),
        report_path(ui, FORECAST, "forecast"),
        f"/freshcast/files/{PIPELINE}/train/{quote(first, safe='')}/report/forecast.png",
    ]


def test_nothing_is_shown_without_a_login(ui):
    af = ui["af"]
    for url in protected_urls(ui):
        response = httpx.get(af.url + url, timeout=30)
        assert response.status_code == 401, url
        if "/api/" not in url and "/files/" not in url:
            assert "log in to Airflow" in response.text  # a page a person can act on
    forged = httpx.get(f"{af.url}/freshcast/", cookies={"_token": "not.a.token"}, timeout=30)
    assert forged.status_code in (401, 403)


def test_a_user_who_may_not_read_the_dags_is_refused(ui):
    outsider = login(ui, OUTSIDER)
    for url in protected_urls(ui)[2:]:
        assert outsider.get(url).status_code == 403, url
    assert outsider.get("/freshcast/api/pipelines").json() == []  # the overview lists nothing
    assert PIPELINE not in outsider.get("/freshcast/").text


def test_a_viewer_reads_everything_and_may_not_roll_back(ui):
    viewer = login(ui, "viewer")
    for url in protected_urls(ui):
        response = viewer.get(url)
        assert response.status_code == 200, url
    assert "Roll back" not in viewer.get(f"/freshcast/pipelines/{PIPELINE}").text
    refused = viewer.post(
        f"/api/v2/dags/{ROLLBACK}/dagRuns", json={"logical_date": None, "conf": {"version": 1}}
    )
    assert refused.status_code == 403  # Airflow's own API checks the edit permission too
    admin = login(ui, "admin")
    assert "Roll back" in admin.get(f"/freshcast/pipelines/{PIPELINE}").text


def test_the_json_endpoints_carry_the_pages_data(ui):
    admin = login(ui, "admin")
    rows = {r["name"]: r for r in admin.get("/freshcast/api/pipelines").json()}
    assert set(rows) == {PIPELINE, "hostile"}
    detail = admin.get(f"/freshcast/api/pipelines/{PIPELINE}").json()
    assert detail["champion"]["unit"] == "°C" and detail["champion"]["version"] in (1, 2)
    assert [r["run_id"] for r in detail["runs"]] == [ui["runs"]["first"], ui["runs"]["second"]]
    assert any(r["actual"] is not None for r in detail["forecasts"])  # the backfilled ones


@pytest.mark.parametrize(
    "url",
    [
        "/freshcast/pipelines/..",
        "/freshcast/pipelines/%2e%2e",
        "/freshcast/pipelines/..%2F..%2Fetc",
        "/freshcast/pipelines/%2Fetc%2Fpasswd",
        "/freshcast/api/pipelines/..%2Fseattle_weather",
        "/freshcast/dags/train_..",
        "/freshcast/dags/train_seattle_weather/runs/..",
        "/freshcast/dags/train_seattle_weather/runs/%2e%2e%2F%2e%2e",
        "/freshcast/files/seattle_weather/train/..%2F..%2Fregistry/report/forecast.png",
        "/freshcast/files/seattle_weather/train/%2e%2e/report/champion.json",
        "/freshcast/files/..%2F..%2Fetc/train/x/report/passwd",
        "/freshcast/files/seattle_weather/train/x/..%2F..%2F..%2Fregistry/champion.json",
        "/freshcast/files/seattle_weather/train/x/report/%2Fetc%2Fpasswd",
        "/freshcast/files/seattle_weather/../../registry/champion.json",
    ],
)
def test_urls_never_reach_outside_the_artifact_store(ui, url):
    """Sent as written (a browser or httpx would fold `..` before sending)."""
    import http.client

    af = ui["af"]
    admin = login(ui, "admin")
    connection = http.client.HTTPConnection(af.host, af.port, timeout=60)
    connection.request("GET", url, headers={"Cookie": f"_token={admin.cookies['_token']}"})
    response = connection.getresponse()
    body = response.read().decode(errors="replace")
    assert response.status in (404, 405), (url, response.status)
    assert '"version"' not in body and "root:" not in body


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1300",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("FRESHCAST_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def plugin_frame_text(driver, *, expect: str, timeout: float = 60) -> str:
    """The text of the plugin page inside the Airflow UI's frame, once it shows `expect`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    WebDriverWait(driver, timeout).until(
        ec.frame_to_be_available_and_switch_to_it((By.CSS_SELECTOR, "iframe[src*='freshcast']"))
    )
    WebDriverWait(driver, timeout).until(
        lambda d: expect in d.find_element(By.TAG_NAME, "body").text
    )
    return driver.find_element(By.TAG_NAME, "body").text


def test_a_person_sees_the_results_in_the_airflow_ui(ui, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    af, runs = ui["af"], ui["runs"]
    password = json.loads(af.passwords_file.read_text())["admin"]
    browser.get(f"{af.url}/plugin/forecasts")  # not logged in: Airflow's login page first
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.NAME, "password"))
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(lambda d: "/auth/login" not in d.current_url)

    # One click: the "Forecasts" entry of Airflow's navigation.
    browser.switch_to.default_content()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "a[href$='plugin/forecasts']")
    )
    browser.find_element(By.CSS_SELECTOR, "a[href$='plugin/forecasts']").click()
    text = plugin_frame_text(browser, expect="Live accuracy")
    assert PIPELINE in text and re.search(r"Champion\s+v[12] (lstm|gru), mae \d\.\d\d °C", text)
    assert re.search(r"Latest forecast\s+2016-01-01: -?\d+\.\d+ °C", text)
    # The served forecast's interval, and whether the champion's live error drifted.
    assert re.search(r"80%: -?\d+\.\d+ to -?\d+\.\d+ °C", text), text
    assert "Drift check" in text
    assert re.search(r"v1: MAE \d+\.\d\d °C over \d+ forecast steps", text)
    assert HOSTILE in text  # the markup in a spec's description is shown as text, not run
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "forecasts.png"))

    # Two clicks: the pipeline's page, a tab of its training DAG.
    plugin_frame_text(browser, expect="Live accuracy")
    browser.find_element(By.LINK_TEXT, PIPELINE).click()
    browser.switch_to.default_content()
    WebDriverWait(browser, 60).until(lambda d: "freshcast-pipeline" in d.current_url)
    text = plugin_frame_text(browser, expect="Registry: history")
    assert "Leaderboard over runs" in text
    for name in ("lstm", "gru", "persistence", "ridge", "seasonal_naive_365"):
        assert name in text
    assert re.search(r"v1( \(serving\))? (lstm|gru) \((lstm|gru)\) mae \d\.\d\d °C", text)
    assert f"{runs['unchanged']} success: trained nothing" in text  # the last run, in words
    # Each forecast with its 80 % and 95 % intervals, and the actual value beside it.
    interval = r"-?\d+\.\d\d to -?\d+\.\d\d °C"
    assert re.search(
        rf"2015-12-3\d\s+1\s+-?\d+\.\d\d °C\s+{interval}\s+{interval}\s+-?\d+\.\d\d °C", text
    ), text
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "pipeline.png"))
    plugin_frame_text(browser, expect="Leaderboard over runs")
    chart = browser.find_element(By.XPATH, "//h2[starts-with(., 'Leaderboard over runs')]")
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "pipeline-runs.png"))

    # The rollback form starts the rollback DAG through Airflow's API, with this login.
    plugin_frame_text(browser, expect="Roll back")
    browser.find_element(By.CSS_SELECTOR, "#rollback button[type=submit]").click()
    WebDriverWait(browser, 60).until(
        lambda d: "started run" in d.find_element(By.ID, "rollback-result").text
    )
    started = browser.find_element(By.ID, "rollback-result").text.removeprefix("started run ")
    assert ui["client"].follow(ROLLBACK, started, say=lambda _: None) == "success"

    # A run's Report tab.
    browser.switch_to.default_content()
    browser.get(
        f"{af.url}/dags/{TRAIN}/runs/{quote(runs['first'], safe='')}/plugin/freshcast-report"
    )
    text = plugin_frame_text(browser, expect="Leaderboard")
    assert "MAE (°C)" in text and "skill vs persistence" in text
    assert re.search(r"Gate: promoted: (lstm|gru) is now champion v1", text)
    # Each model's seeds under its ensemble with their spread, tuned ridge, the seasonal MASE.
    assert "lstm-s1 (seed 42)" in text and "gru-s3 (seed 44)" in text and "±" in text
    assert "ridge (alpha " in text and "MASE (seasonal)" in text
    # Each forecaster's prediction intervals on the test split, and why the run started.
    assert "Prediction intervals" in text and "Run started by: manual" in text
    assert "test coverage (%)" in text and re.search(r"ensemble\s+80\s+\d+\.\d", text), text
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "report.png"))

    # A run that trained nothing says why, in its tab.
    browser.get(
        f"{af.url}/dags/{TRAIN}/runs/{quote(runs['unchanged'], safe='')}/plugin/freshcast-report"
    )
    text = plugin_frame_text(browser, expect="has no report")
    assert "trained nothing: data and spec are identical" in text

    # The forecast run's tab: the forecast with its date, and accuracy where actuals arrived.
    browser.get(
        f"{af.url}/dags/{FORECAST}/runs/{quote(runs['forecast'], safe='')}/plugin/freshcast-report"
    )
    text = plugin_frame_text(browser, expect="Accuracy per model version")
    assert re.search(r"2016-01-01 00:00\s+1\s+-?\d+\.\d+", text)
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "forecast.png"))

    # A registry problem is on the Forecasts page, in red, until a run (or registry-check)
    # repairs it: here a lost champion pointer, put back afterwards.
    pointer = ui["tmp"] / "artifacts" / PIPELINE / "registry" / "champion.json"
    kept = pointer.read_bytes()
    pointer.unlink()
    try:
        browser.switch_to.default_content()
        browser.get(f"{af.url}/plugin/forecasts")
        text = plugin_frame_text(browser, expect="registry problem")
        assert re.search(r"Champion\s+v[12] (lstm|gru)", text)  # the history's, not "none yet"
        assert re.search(
            r"registry problem: champion\.json is missing; the history says v[12]", text
        )
    finally:
        pointer.write_bytes(kept)
