"""The catalogue page (``GET /``) in a real browser: the system Chromium driven by Playwright, against the real
Node server (``node_api/dist/src/server.js``, or the file ``$NODE_API_SERVER`` names) serving the demo artifacts.

- typing in the search box lists the API's ``GET /tracks?q=`` answer; opening a track (by mouse and by
  keyboard) shows exactly ``GET /tracks/:id/nearest?k=10`` (ids, order, ranks, scores; each score shown to 3
  decimals), also with exclude-same-album on, and the track's cluster as ``GET /tracks/:id/cluster`` names it;
  the view is in the URL (a direct link opens it, the back button returns to the previous track); Tab moves
  from the search box to the results with a visible focus ring;
- ``/report`` renders with every image decoded (``naturalWidth > 0``);
- a preview plays: the ``<audio>`` element's ``currentTime`` advances (skipped, with the reason, while the demo
  folder has no ``previews/previews.json``);
- at 360 px wide the page needs no horizontal scrolling;
- no console error and no uncaught page error anywhere (a 404 of ``/tracks/:id/preview`` is the one allowed
  error, and only for a track that ``previews.json`` lists no preview for: the page asks before showing a
  play button, and Chromium logs every 404 it receives).

Screenshots (the page on a desktop and on a 360 px phone, the report) are written to
``tests/artifacts/browser/`` (git-ignored) for a person to look at. The browser is the system's ``chromium``
(Debian's package; ``scripts/ensure_chromium.sh`` installs it when root): without one on PATH the test skips
with that reason. Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.node_server import REPO, get_json, node_server_js, running_server

pytestmark = pytest.mark.slow

DEMO = REPO / "artifacts" / "v1_model_fusion-musicnn-msd_musicnn-mtt"
SHOTS = REPO / "tests" / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-quic",
]
#: the page's neighbour count (web/page.ts NEIGHBOURS_K) and search page size (SEARCH_LIMIT)
K, SEARCH_LIMIT = 10, 20
QUERY = "bach"
#: the longest a page waits for an answer it is about to show (ms)
WAIT_MS = 15_000
PREVIEW_404 = re.compile(r"^/tracks/([^/]+)/preview$")


def _previews() -> dict | None:
    path = DEMO / "previews" / "previews.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The real Node server on the demo artifacts, on a free loopback port; its base URL."""
    if not (DEMO / "embeddings" / "embeddings_meta.json").is_file():
        pytest.skip("the demo artifacts are not there: run `make demo` first (the README's first command)")
    with running_server(DEMO) as base:
        status, body = _get(base + "/")
        if status == 503:
            pytest.fail(f"{node_server_js()} serves no page: {body[:300]!r} (`make node-build` builds it)")
        yield base


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 (loopback URL built by the test)
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system Chromium under Playwright (skips, saying why, when there is none)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "chromium is not on PATH: the browser test drives the system Chromium "
            "(`apt-get install -y chromium`, or scripts/ensure_chromium.sh as root)"
        )
    # a dev dependency (pyproject): missing, it is an install error, not a reason to skip
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A browser page whose console errors and uncaught errors are collected (allowed preview 404s aside)."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        previews = _previews()
        self.with_preview = {t["track_id"] for t in previews["tracks"]} if previews else set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = urllib.parse.urlsplit(msg.location.get("url") or "")
        m = PREVIEW_404.match(url.path)
        if "404" in msg.text and m and urllib.parse.unquote(m.group(1)) not in self.with_preview:
            return  # the page's HEAD /tracks/:id/preview for a track without a preview
        self.errors.append(f"console error: {msg.text} ({msg.location})")

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, f"GET {path}: {response and response.status}"
        return response

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any, server: str) -> Iterator[Callable[..., Watched]]:
    """Open watched pages; after the test, none of them may have logged an error."""
    pages: list[Watched] = []

    def open_page(**context: Any) -> Watched:
        context.setdefault("viewport", {"width": 1280, "height": 900})
        w = Watched(browser, server, **context)
        pages.append(w)
        return w

    yield open_page
    errors = [e for w in pages for e in w.errors]
    for w in pages:
        w.close()
    assert errors == [], "\n".join(errors)


def api(base: str, path: str) -> dict:
    status, body = get_json(base + path)
    assert status == 200, f"GET {path}: {status} {body}"
    return body


def nearest(base: str, track_id: str, exclude_same_album: bool) -> dict:
    flag = "&exclude_same_album=true" if exclude_same_album else ""
    return api(base, f"/tracks/{urllib.parse.quote(track_id, safe='')}/nearest?k={K}{flag}")


def shown_neighbours(page: Any) -> list[dict]:
    return page.eval_on_selector_all(
        "#neighbours li[data-track-id]",
        """els => els.map(li => ({id: li.dataset.trackId, rank: li.dataset.rank, score: li.dataset.score,
             rankText: li.querySelector('.rank').textContent, title: li.querySelector('.open').textContent,
             scoreText: li.querySelector('.score').textContent}))""",
    )


def wait_for_neighbours(page: Any, track_id: str, ids: list[str]) -> None:
    """Until the page shows track ``track_id`` with exactly the neighbour ids ``ids`` (in order)."""
    page.wait_for_function(
        """([id, ids]) => document.querySelector('#track')?.dataset.trackId === id &&
             JSON.stringify([...document.querySelectorAll('#neighbours li[data-track-id]')]
               .map(li => li.dataset.trackId)) === JSON.stringify(ids)""",
        arg=[track_id, ids],
    )


def assert_neighbours_equal_api(page: Any, body: dict) -> None:
    """The list shown is the API's answer: ids, order, ranks, exact scores, titles, scores to 3 decimals."""
    shown = shown_neighbours(page)
    hits = body["hits"]
    assert len(hits) == K
    assert [s["id"] for s in shown] == [h["track_id"] for h in hits]
    for s, h in zip(shown, hits, strict=True):
        assert int(s["rank"]) == h["rank"] and s["rankText"] == str(h["rank"])
        assert float(s["score"]) == h["score"], (s, h)
        assert s["title"] == h["title"]
        assert re.fullmatch(r"-?\d\.\d{3}", s["scoreText"]), s["scoreText"]
        assert abs(float(s["scoreText"]) - h["score"]) <= 0.0005 + 1e-12, (s["scoreText"], h["score"])


def view_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


def test_search_open_a_track_and_follow_its_neighbours(watched: Callable[..., Watched], server: str) -> None:
    w = watched()
    page = w.page
    w.goto("/")
    models = api(server, "/models")
    summary = api(server, "/eval/summary")
    page.wait_for_selector("#eval-headline")
    p_at_k = summary["overall"]["metrics"]["precision_at_k"]
    assert f"P@{summary['k']} {p_at_k:.3f}" in page.inner_text("#eval-headline")
    assert models["artifact_version"] in page.inner_text("#model")
    assert models["model"]["name"] in page.inner_text("#model")
    assert page.get_attribute("#report-link", "href") == "/report"

    # typing: the debounced search lists the API's answer
    found = api(server, f"/tracks?q={QUERY}&limit={SEARCH_LIMIT}")
    assert found["total"] > 1, f"the demo catalogue has no track matching {QUERY!r}"
    page.locator("#q").press_sequentially(QUERY, delay=40)
    expected = [t["track_id"] for t in found["tracks"]]
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#results li[data-track-id]')]"
        ".map(li => li.dataset.trackId)) === JSON.stringify(ids)",
        arg=expected,
    )
    assert str(found["total"]) in page.inner_text("#search-status")
    assert view_of(page.url)["q"] == [QUERY]

    # Tab from the search box reaches the first result's button, and its focus ring shows
    first = expected[0]
    page.focus("#q")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        """() => { const e = document.activeElement, s = getComputedStyle(e);
             return {track: e.closest('li')?.dataset.trackId, tag: e.tagName, outline: s.outlineStyle,
                     width: parseFloat(s.outlineWidth)}; }"""
    )
    assert focused["track"] == first and focused["tag"] == "BUTTON", focused
    assert focused["outline"] != "none" and focused["width"] >= 2, focused

    # open the first result with the mouse
    page.click(f'#results li[data-track-id="{first}"] button.open')
    body = nearest(server, first, exclude_same_album=False)
    wait_for_neighbours(page, first, [h["track_id"] for h in body["hits"]])
    assert_neighbours_equal_api(page, body)
    assert page.inner_text("#track-title") == body["query"]["title"]
    assert view_of(page.url)["track"] == [first]
    assert page.get_attribute(f'#results li[data-track-id="{first}"]', "aria-current") == "true"
    status, cluster = get_json(f"{server}/tracks/{urllib.parse.quote(first, safe='')}/cluster")
    if status == 200:
        page.wait_for_selector("#cluster:not([hidden])")
        assert cluster["name"] in page.inner_text("#cluster")
        assert f"{cluster['confidence']:.2f}" in page.inner_text("#cluster")
    else:
        assert status == 404, (status, cluster)
        assert page.is_hidden("#cluster")

    # exclude the same album: the API's other-album answer, none from the query's album
    page.check("#exclude-album")
    other = nearest(server, first, exclude_same_album=True)
    wait_for_neighbours(page, first, [h["track_id"] for h in other["hits"]])
    assert_neighbours_equal_api(page, other)
    assert all(h["album_id"] != other["query"]["album_id"] for h in other["hits"])
    assert [h["track_id"] for h in other["hits"]] != [h["track_id"] for h in body["hits"]], (
        f"exclude-same-album changes nothing for {first}: pick a query whose neighbours share its album"
    )
    assert view_of(page.url)["exclude_same_album"] == ["1"]
    page.screenshot(path=str(_shot("page_desktop.png")), full_page=True)

    # follow the second neighbour with the keyboard (a real button: focus, Enter)
    second = other["hits"][1]["track_id"]
    page.focus(f'#neighbours li[data-track-id="{second}"] button.open')
    page.keyboard.press("Enter")
    then = nearest(server, second, exclude_same_album=True)
    wait_for_neighbours(page, second, [h["track_id"] for h in then["hits"]])
    assert_neighbours_equal_api(page, then)
    assert view_of(page.url)["track"] == [second]
    assert page.evaluate("document.activeElement.id") == "track-title", "focus moves to the opened track"

    # back: the previous track with the toggle still on
    page.go_back()
    wait_for_neighbours(page, first, [h["track_id"] for h in other["hits"]])
    assert page.is_checked("#exclude-album")
    assert view_of(page.url)["track"] == [first]


def test_a_link_opens_its_track(watched: Callable[..., Watched], server: str) -> None:
    w = watched()
    ids = json.loads((DEMO / "embeddings" / "track_ids.json").read_text())["track_ids"]
    track = ids[len(ids) // 2]
    w.goto(f"/?track={urllib.parse.quote(track, safe='')}&exclude_same_album=1")
    body = nearest(server, track, exclude_same_album=True)
    wait_for_neighbours(w.page, track, [h["track_id"] for h in body["hits"]])
    assert_neighbours_equal_api(w.page, body)
    assert w.page.is_checked("#exclude-album")


def test_a_phone_screen_needs_no_horizontal_scrolling(watched: Callable[..., Watched], server: str) -> None:
    w = watched(viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True)
    ids = json.loads((DEMO / "embeddings" / "track_ids.json").read_text())["track_ids"]
    w.goto(f"/?q={QUERY}&track={urllib.parse.quote(ids[0], safe='')}")
    body = nearest(server, ids[0], exclude_same_album=False)
    wait_for_neighbours(w.page, ids[0], [h["track_id"] for h in body["hits"]])
    w.page.wait_for_selector("#eval-headline")
    w.page.wait_for_selector("#results li[data-track-id]")
    width = w.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px screen"
    # every control stays on the screen
    overflow = w.page.eval_on_selector_all(
        "button, input, a",
        "els => els.filter(e => e.getBoundingClientRect().right > 360).map(e => e.outerHTML)",
    )
    assert overflow == []
    w.page.screenshot(path=str(_shot("page_phone.png")), full_page=True)


def test_the_report_shows_every_figure(watched: Callable[..., Watched], server: str) -> None:
    w = watched()
    w.goto("/report")
    w.page.wait_for_load_state("load")
    images = w.page.eval_on_selector_all(
        "img",
        "els => els.map(i => ({src: i.currentSrc.slice(0, 60), complete: i.complete, width: i.naturalWidth}))",
    )
    assert images, "the report has no <img>"
    broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert broken == [], broken
    w.page.screenshot(path=str(_shot("report.png")), full_page=True)


def test_a_preview_plays(watched: Callable[..., Watched], server: str) -> None:
    previews = _previews()
    if previews is None:
        pytest.skip(f"{DEMO.name} has no previews/previews.json yet (the previews step writes it)")
    assert previews["tracks"], "previews.json lists no preview"
    track = previews["tracks"][0]["track_id"]
    w = watched()
    w.goto(f"/?track={urllib.parse.quote(track, safe='')}")
    from playwright.sync_api import expect

    # locators, not element handles: they are found again at each use, so a re-rendered track view is no race
    button = w.page.locator("#track-actions button.play")
    audio = "#track-actions audio"
    button.wait_for()
    assert w.page.get_attribute(audio, "preload") == "none"
    assert w.page.eval_on_selector(audio, "a => new URL(a.src).pathname") == (
        f"/tracks/{urllib.parse.quote(track, safe='')}/preview"
    )
    button.click()
    # a function, not an expression string: the page's CSP forbids the eval Playwright uses for strings
    w.page.wait_for_function("sel => document.querySelector(sel).currentTime > 0.5", arg=audio)
    expect(button).to_have_attribute("aria-pressed", "true")
    button.click()
    w.page.wait_for_function("sel => document.querySelector(sel).paused", arg=audio)
    expect(button).to_have_attribute("aria-pressed", "false")


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / name
