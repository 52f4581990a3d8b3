"""What tests/e2e/test_pages.py checks on a page in Chromium, and how it watches the page.

- `visit()` opens a fresh browser context (its own cookies; the page's CSP enforced, never
  bypassed) with a `securitypolicyviolation` recorder installed as an init script (reporting
  through a binding, so no document of a flow is missed), and records
  console errors, uncaught exceptions and the main frame's documents.
- `axe_results()` runs axe-core (WCAG 2.2 AA tags) on the page as it is.
- `problems()` turns all of it, and a check that the page does not scroll sideways (WCAG
  1.4.10 Reflow, which axe does not check), into readable lines, empty when the page is clean.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from tests.e2e.conftest import AXE_CORE, RunningServer

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Response,
        StorageState,
    )

REPO = Path(__file__).resolve().parents[2]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
VIEWPORT_HEIGHT = 800
TIMEOUT_MS = 10_000  # Playwright's 30 s default hides a hang for too long
TARGETS_SHOWN = 3  # selectors listed per axe violation
FAILED_TO_LOAD = "Failed to load resource: the server responded with a status of"

# Runs before any of the page's own code, in every document of the context. Init scripts are
# evaluated through DevTools, so a CSP without script-src does not block them (the self-check
# in test_pages.py proves it on a page whose CSP allows no script at all). Each violation is
# kept on `window` (read synchronously from the document shown) and handed to Python through
# a binding (asynchronous, but it outlives the document), so those of the documents a flow
# passes through on its way to the page are reported too.
CSP_BINDING = "__idpTestCspViolation"
CSP_LISTENER = f"""
window.__cspViolations = [];
window.__cspDocument = performance.timeOrigin + "-" + Math.random();  // this document
window.addEventListener("securitypolicyviolation", (e) => {{
  const violation = {{
    id: window.__cspDocument,
    document: document.URL,
    directive: e.effectiveDirective,
    blocked: e.blockedURI,
    source: e.sourceFile,
    line: e.lineNumber,
    sample: e.sample,
    disposition: e.disposition,
  }};
  window.__cspViolations.push(violation);
  window.{CSP_BINDING}(violation);
}}, true);
"""

# axe-core measures contrast against white wherever no element declares a background, even
# when the page asks for `color-scheme: dark` and Chromium paints the canvas dark (axe-core
# issues #3605, #4608): light text then reads as "needs review" and light links as failures,
# while dark-on-dark text passes unseen. So for a page that leaves its background to the
# canvas, the canvas colour is written out on <html> (CSSOM, which CSP does not govern): the
# same pixels, now visible to axe. Returns that colour, or null when the page has its own.
CANVAS_MADE_EXPLICIT = """
() => {
  const transparent = (el) => {
    const style = getComputedStyle(el);
    const color = style.backgroundColor;  // computed: rgba(r, g, b, 0) when transparent
    return style.backgroundImage === "none" &&
      (color === "transparent" || (color.startsWith("rgba(") && color.endsWith(", 0)")));
  };
  const root = document.documentElement;
  if (!transparent(root) || (document.body && !transparent(document.body))) return null;
  root.style.backgroundColor = "Canvas";
  return getComputedStyle(root).backgroundColor;
}
"""

AXE_RUN = """
async (tags) => {
  const results = await axe.run(document, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  const brief = (v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target, summary: n.failureSummary || ""})),
  });
  return {violations: results.violations.map(brief), incomplete: results.incomplete.map(brief)};
}
"""


def axe_version() -> str:
    package = AXE_CORE / "package.json"
    return str(json.loads(package.read_text())["version"]) if package.is_file() else "missing"


def artefact(kind: str, name: str) -> Path:
    """Where a test artefact goes: `kind`/`name` under $IDP_TEST_OUTPUT_DIR, else under
    test-output/ at the repo root (git-ignored)."""
    configured = os.environ.get("IDP_TEST_OUTPUT_DIR")
    folder = (Path(configured) if configured else REPO / "test-output") / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@dataclass(frozen=True)
class Variant:
    """How the person's browser is set up: color scheme and viewport width."""

    scheme: Literal["light", "dark"]
    width: int

    @property
    def id(self) -> str:
        return f"{self.scheme}-{self.width}"


@dataclass
class Visit:
    """A page in a fresh context, with what it logged and where it navigated."""

    page: Page
    server: RunningServer
    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, url)
    csp_events: list[dict[str, Any]] = field(default_factory=list)  # of every document
    csp_console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    documents: list[tuple[str, int]] = field(default_factory=list)  # main frame: (url, status)

    def url(self, path: str, **params: str) -> str:
        return f"{self.server.issuer}{path}" + (f"?{urlencode(params)}" if params else "")

    def document(self) -> tuple[str, int]:
        """The URL and HTTP status of the document shown now."""
        assert self.documents, "no document was loaded"
        return self.documents[-1]

    def csp_violations(self) -> list[dict[str, Any]]:
        """The `securitypolicyviolation` events of every document this page has shown: the
        earlier ones as the binding delivered them, this one's as it kept them."""
        shown, recorded = self.page.evaluate("[window.__cspDocument, window.__cspViolations]")
        assert recorded is not None, "the CSP listener did not run in this document"
        earlier = [x for x in self.csp_events if x["id"] != shown]
        return [*earlier, *recorded]

    def on_csp_violation(self, source: Any, violation: dict[str, Any]) -> None:
        self.csp_events.append(violation)

    def on_console(self, message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        if "Content Security Policy" in message.text:  # reported with the CSP violations
            self.csp_console.append(f"{message.text} ({url})")
        elif message.type == "error":
            self.console_errors.append((message.text, url))

    def on_response(self, response: Response) -> None:
        if response.request.is_navigation_request() and response.frame == self.page.main_frame:
            self.documents.append((response.url, response.status))


@dataclass
class _Shared:
    """A browser context kept for one viewport and color scheme: making a context costs a
    quarter of a second, so each visit gets a new page in it, with no cookies or permissions
    from the visit before. The CSP binding goes to the visit in progress."""

    context: BrowserContext
    current: list[Visit] = field(default_factory=list)

    def on_csp_violation(self, source: Any, violation: dict[str, Any]) -> None:
        if self.current:
            self.current[-1].on_csp_violation(source, violation)


_CONTEXTS: dict[tuple[int, str, int], _Shared] = {}


def _context_for(chromium: Browser, variant: Variant) -> _Shared:
    key = (id(chromium), variant.scheme, variant.width)
    shared = _CONTEXTS.get(key)
    if shared is None or shared.context.browser is not chromium:
        context = chromium.new_context(
            color_scheme=variant.scheme,
            viewport={"width": variant.width, "height": VIEWPORT_HEIGHT},
        )
        context.set_default_timeout(TIMEOUT_MS)
        shared = _CONTEXTS[key] = _Shared(context)
        context.expose_binding(CSP_BINDING, shared.on_csp_violation)
        context.add_init_script(CSP_LISTENER)
    return shared


@contextmanager
def visit(
    chromium: Browser,
    server: RunningServer,
    variant: Variant,
    storage_state: StorageState | None = None,
) -> Iterator[Visit]:
    """A fresh page (CSP enforced) with the CSP recorder and the console, page-error and
    navigation recorders attached, in a context with no cookies but those of
    `storage_state` (an earlier sign-in) and no permissions granted."""
    shared = _context_for(chromium, variant)
    context = shared.context
    context.clear_cookies()
    context.clear_permissions()
    if storage_state:
        # A stored cookie has every field a cookie to set takes.
        cookies: list[Any] = list(storage_state["cookies"])
        context.add_cookies(cookies)
    page = context.new_page()
    try:
        watched = Visit(page, server)
        shared.current.append(watched)
        page.on("console", watched.on_console)
        page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
        page.on("response", watched.on_response)
        yield watched
    finally:
        shared.current.clear()
        for open_page in context.pages:  # the visit's page, and any it opened
            open_page.close()


def axe_results(v: Visit, axe_source: str) -> dict[str, Any]:
    """axe-core's WCAG 2.2 AA violations and "needs review" items for the page as it is now,
    and `canvas`: the canvas colour written out for axe (None: the page has a background)."""
    canvas = v.page.evaluate(CANVAS_MADE_EXPLICIT)
    v.page.evaluate(axe_source)  # DevTools evaluation: the page's CSP stays as it is
    results: dict[str, Any] = v.page.evaluate(AXE_RUN, AXE_TAGS)
    return {"axe": axe_version(), "canvas": canvas, **results}


def describe_axe(violations: list[dict[str, Any]]) -> list[str]:
    lines = []
    for violation in violations:
        nodes = violation["nodes"]
        targets = [" ".join(node["target"]) for node in nodes[:TARGETS_SHOWN]]
        more = f" (+{len(nodes) - TARGETS_SHOWN} more)" if len(nodes) > TARGETS_SHOWN else ""
        summary = " ".join(nodes[0]["summary"].split()) if nodes else ""
        lines += [
            f"  - {violation['id']} ({violation['impact']}): {violation['help']}",
            f"      at {', '.join(targets)}{more}",
            f"      {summary}",
            f"      {violation['helpUrl']}",
        ]
    return lines


def unexpected_console_errors(v: Visit, expected_status: int) -> list[str]:
    """Console errors, less the one line Chromium logs for a document served with a 4xx
    status when that status is the point of the page (an error page, a refused password)."""
    url, status = v.document()
    served_as_meant = f"{FAILED_TO_LOAD} {status} ("
    return [
        f"{text} ({where})"
        for text, where in v.console_errors
        if not (
            status >= 400
            and status == expected_status
            and where == url
            and text.startswith(served_as_meant)
        )
    ]


def reflow_problem(v: Visit) -> str | None:
    """WCAG 1.4.10 Reflow, which axe-core does not check: at a viewport 320 CSS px wide (or
    wider) the page does not scroll sideways."""
    content, viewport = v.page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    if content <= viewport:
        return None
    return (
        f"WCAG 1.4.10 Reflow: the page is {content} px wide in a {viewport} px viewport "
        "and scrolls sideways"
    )


def problems(v: Visit, expected_status: int, axe: dict[str, Any]) -> list[str]:
    """Everything wrong with the page, as readable lines; empty when it is clean."""
    found: list[str] = []
    reflow = reflow_problem(v)
    if reflow:
        found.append(reflow)
    if axe["violations"]:
        canvas = f", measured on the canvas colour {axe['canvas']}" if axe["canvas"] else ""
        found.append(
            f"axe-core {axe['axe']}, WCAG 2.2 AA: {len(axe['violations'])} violation(s){canvas}"
        )
        found += describe_axe(axe["violations"])
    console = unexpected_console_errors(v, expected_status)
    if console:
        found += ["console errors:", *(f"  - {m}" for m in console)]
    if v.page_errors:
        found += ["uncaught exceptions:", *(f"  - {e}" for e in v.page_errors)]
    violations = v.csp_violations()
    if violations or v.csp_console:
        found.append("CSP violations (securitypolicyviolation events, then the console):")
        found += [
            f"  - {x['directive']} blocked {x['blocked']!r} ({x['disposition']}) "
            f"at {x['source']}:{x['line']} {x['sample']!r}, in {x['document']}"
            for x in violations
        ]
        found += [f"  - {m}" for m in v.csp_console]
    return found
