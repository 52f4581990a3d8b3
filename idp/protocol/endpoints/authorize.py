"""GET|POST /authorize: RFC 6749 §4.1.1, OIDC Core §3.1.2.1 (both methods MUST be supported);
GET /authorize/resume: where login and consent send the browser back to, by interaction id."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.protocol.authorization import Browser, NeedsInteraction, Outcome, authorize
from idp.protocol.interaction import resume
from idp.runtime import Runtime

router = APIRouter()

# Where each step owed is done; the pages advance the interaction and send the browser back.
STEP_PAGES = {
    "login": "/login",
    "factor": "/login/factor",
    "enrol": "/login/enrol",
    "new_password": "/account/password",
    "consent": "/consent",
}


def respond(outcome: Outcome, runtime: Runtime, browser: Browser, status: int) -> Response:
    """A redirect to the relying party, or to the page of the step owed (only the id travels).
    `status` is 303 after a POST, so the browser follows with a GET (RFC 9110 §15.4.4)."""
    if isinstance(outcome, NeedsInteraction):
        query = urlencode({"interaction": outcome.interaction_id})
        response = RedirectResponse(f"{STEP_PAGES[outcome.step]}?{query}", status_code=status)
        deps.bind_browser(response, runtime, browser)
        return response
    return RedirectResponse(outcome.location, status_code=status)


@router.api_route("/authorize", methods=["GET", "POST"], include_in_schema=False)
async def authorization_endpoint(
    request: Request, params: deps.PageParams, browser: deps.Browser, runtime: deps.Rt
) -> Response:
    outcome = await deps.in_transaction(runtime, lambda db: authorize(db, runtime, params, browser))
    return respond(outcome, runtime, browser, 303 if request.method == "POST" else 302)


@router.get("/authorize/resume", include_in_schema=False)
async def resume_endpoint(request: Request, browser: deps.Browser, runtime: deps.Rt) -> Response:
    interaction_id = request.query_params.get("interaction")
    outcome = await deps.in_transaction(
        runtime, lambda db: resume(db, runtime, interaction_id, browser)
    )
    return respond(outcome, runtime, browser, 302)
