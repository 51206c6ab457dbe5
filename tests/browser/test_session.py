"""Signing in and out of the dashboard, and what a browser without a session gets."""

from __future__ import annotations

from urllib.parse import urlsplit

from conftest import ADMIN_KEY, shot, sign_in

PAGES = ["", "traces", "keys", "audit", "settings"]


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_sign_in_through_the_form(context, gateway):
    page = context.new_page()
    page.goto(gateway.ui())
    assert path_of(page.url) == "/ui/login", "no session: the overview sends to the login page"
    assert page.locator("form#login input[name=admin_key]").get_attribute("type") == "password"
    shot(page, "login")

    page.fill("form#login input[name=admin_key]", "tga-not-the-admin-key")
    with page.expect_response(lambda r: r.request.method == "POST") as wrong:
        page.click("form#login button[type=submit]")
    assert wrong.value.status == 401
    page.wait_for_selector("#login-error")
    assert "accepted" in page.inner_text("#login-error").lower()
    assert page.locator("form#login input[name=admin_key]").count() == 1, "the form again"
    shot(page, "login-wrong-key")

    page.fill("form#login input[name=admin_key]", ADMIN_KEY)
    with page.expect_navigation():
        page.click("form#login button[type=submit]")
    assert path_of(page.url) == "/ui/"
    assert page.title() == "tollgate — Overview"
    cookie = next(c for c in context.cookies() if c["name"] == "tollgate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert ADMIN_KEY not in cookie["value"] and ADMIN_KEY not in page.url

    # Every nav link leads to its page, signed in.
    for link, title in (
        ("nav-traces", "Traces"),
        ("nav-keys", "Keys"),
        ("nav-audit", "Audit"),
        ("nav-settings", "Settings"),
        ("nav-overview", "Overview"),
    ):
        with page.expect_navigation():
            page.click(f"nav#nav a#{link}")
        assert page.title() == f"tollgate — {title}", link
        assert page.locator("main#content").count() == 1
        assert page.locator("form#logout button#logout-button").count() == 1


def test_no_session_no_pages(context, gateway):
    """A fresh browser (no cookie) sees only the login page, and the JSON endpoint says 401."""
    page = context.new_page()
    for name in PAGES:
        page.goto(gateway.ui(name))
        assert path_of(page.url) == "/ui/login", f"/ui/{name} without a session"
    assert page.locator("form#login").count() == 1

    status = context.request.get(gateway.ui("audit/verify"), max_redirects=0).status
    assert status == 401, "the verify-progress JSON without a session"

    # A made-up session cookie is no session either.
    context.add_cookies(
        [{"name": "tollgate_session", "value": "A" * 43, "url": gateway.ui()}]
    )
    page.goto(gateway.ui("traces"))
    assert path_of(page.url) == "/ui/login"


def test_mutations_need_the_csrf_token_and_origin(context, gateway):
    """Signed in, a POST without the form's csrf token, or from another origin, is 403."""
    page = context.new_page()
    sign_in(page, gateway)
    token = page.locator("form#logout input[name=csrf]").get_attribute("value")
    assert token
    keys_before = gateway.query("SELECT count(*) FROM client_keys")[0][0]
    origin = gateway.url

    def post(form: dict, headers: dict) -> int:
        return context.request.post(
            gateway.ui("keys"), form=form, headers=headers, max_redirects=0
        ).status

    assert post({"name": "csrf-missing"}, {"origin": origin}) == 403
    assert post({"name": "csrf-wrong", "csrf": "x" + token[1:]}, {"origin": origin}) == 403
    assert post({"name": "csrf-other-origin", "csrf": token}, {"origin": "http://evil.example"}) == 403
    assert post({"name": "csrf-no-origin", "csrf": token}, {}) == 403
    assert gateway.query("SELECT count(*) FROM client_keys")[0][0] == keys_before

    # Sign-out is a mutation too: without the token it is refused and the session lives.
    assert context.request.post(
        gateway.ui("logout"), form={}, headers={"origin": origin}, max_redirects=0
    ).status == 403
    page.goto(gateway.ui("traces"))
    assert path_of(page.url) == "/ui/traces"


def test_logout_ends_the_session(context, browser, gateway):
    page = context.new_page()
    sign_in(page, gateway)
    old = next(c for c in context.cookies() if c["name"] == "tollgate_session")

    with page.expect_navigation():
        page.click("form#logout button#logout-button")
    assert path_of(page.url) == "/ui/login"
    assert not [c for c in context.cookies() if c["name"] == "tollgate_session" and c["value"]]
    page.goto(gateway.ui())
    assert path_of(page.url) == "/ui/login"

    # The old cookie, replayed from another browser, is dead on the server too.
    other = browser.new_context()
    try:
        other.add_cookies([{**old}])
        p2 = other.new_page()
        p2.goto(gateway.ui("traces"))
        assert path_of(p2.url) == "/ui/login"
    finally:
        other.close()


def test_wrong_keys_are_throttled(browser, tmp_path_factory, mock_upstream):
    """Its own gateway, allowing two failures per address: the third wrong key gets
    429 with Retry-After, and so does the right one while the address is blocked."""
    from conftest import start_gateway

    gw = start_gateway(
        tmp_path_factory.mktemp("throttled"),
        mock_upstream.base_url,
        "[auth]\nfailed_burst = 2\nfailed_per_minute = 1\n",
    )
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(gw.ui("login"))
        statuses = []
        for key in ("tga-wrong-1", "tga-wrong-2", "tga-wrong-3", ADMIN_KEY):
            page.fill("form#login input[name=admin_key]", key)
            with page.expect_response(lambda r: r.request.method == "POST") as resp:
                page.click("form#login button[type=submit]")
            statuses.append(resp.value.status)
            retry_after = resp.value.headers.get("retry-after")
        assert statuses == [401, 401, 429, 429]
        assert retry_after and int(retry_after) >= 1
        assert path_of(page.url) == "/ui/login"
        shot(page, "login-throttled")
    finally:
        ctx.close()
        assert gw.proc.terminate() == 0
