"""The console (/ui/) in a real browser: Debian's chromium driven by Playwright, against one
`jobnode dev --secure` cluster of 3 nodes shared by the module (auth and TLS on, as an
operator would run it).

The tests run in file order and the last one kills the leader, so the cluster is whole for
all the others. With JOBNODE_SCREENSHOTS=<dir> set they also write the README's screenshots
there (docs/img); without it they write nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobnode.auth.passwords import hash_password
from jobnode.client import AsyncClient, NotFoundError
from jobnode.dev.embedded import free_port, free_port_range
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("JOBNODE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SESSION_KEY = "jobnode.console.session"
VIEWER, USER = ("viewer", "viewer-password-7Qx"), ("alice", "alice-password-9Wz")
WIDE, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None

if async_playwright is None:
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run tries it)", allow_module_level=True)


def screenshot_dir() -> Path | None:
    target = os.environ.get("JOBNODE_SCREENSHOTS")
    return Path(target) if target else None


async def screenshot(page: Page, name: str) -> None:
    target = screenshot_dir()
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(target / f"{name}.png"))


class DevCluster:
    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log_path: Path) -> None:
        self.process = process
        self.info = info
        self.log_path = log_path
        self.ca_file = info["ca_file"]
        self.admin = info["admin"]

    def url(self, node_id: str) -> str:
        return next(node["url"] for node in self.info["nodes"] if node["id"] == node_id)

    def pid(self, node_id: str) -> int:
        return next(node["pid"] for node in self.info["nodes"] if node["id"] == node_id)

    def client(self, node_id: str = "node-1", token: str | None = None) -> AsyncClient:
        return AsyncClient(self.url(node_id), token=token or self.admin["token"], ca_file=self.ca_file)

    async def leader(self, avoid: str | None = None) -> str:
        for node in self.info["nodes"]:
            if node["id"] != avoid:
                async with self.client(node["id"]) as client:
                    return (await client.leader())["leader_id"]
        raise AssertionError("no node to ask")


def write_users_file(path: Path) -> None:
    users = {name: {"role": role, "password": hash_password(password, log2_n=10)}
             for (name, password), role in ((VIEWER, "worker"), (USER, "user"))}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"users": users}, out)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevCluster]:
    root = tmp_path_factory.mktemp("console")
    users_file = root / "users.json"
    write_users_file(users_file)
    port = free_port_range(3)
    metrics_port = free_port_range(3)
    assert port and metrics_port, "no 3 free ports in a row"
    data_dir = root / "dev"
    command = [sys.executable, "-m", "jobnode", "dev", "--secure", "--nodes", "3", "--port", str(port),
               "--metrics-port", str(metrics_port), "--data-dir", str(data_dir), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI", "JWT_SECRET",
                                                             "ADMIN_PASSWORD", "ADMIN_USERNAME")}
    env |= {"USERS_FILE": str(users_file), "THROUGHPUT_SAMPLE_INTERVAL": "1"}
    log_path = root / "dev.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        cluster_file = data_dir / "cluster.json"
        await wait_until(lambda: cluster_file.exists() or process.poll() is not None, timeout_s=90,
                         message="jobnode dev never became ready")
        assert process.poll() is None, log_path.read_text()[-3000:]
        dev = DevCluster(process, json.loads(cluster_file.read_text()), log_path)
        async with dev.client() as client:  # something for the queue and throughput pages to show
            await client.submit_batch([{"type": "sleep", "payload": {"seconds": 0.2}, "priority": band}
                                       for band in ("high", "normal", "low") for _ in range(6)])
        yield dev
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """One browser tab on the console, with what it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.traffic: list[str] = []  # what the tab asked its node and got, for a failure's message
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.traffic.append(f"{r.method} {r.url} failed: {r.failure}"))
        page.on("response", lambda r: self.traffic.append(f"{r.request.method} {r.url} -> {r.status}"))

    async def describe(self) -> str:
        """The tab's state in words: what a failed wait on it should print."""
        live = await self.page.get_attribute("#live", "data-state")
        body = (await self.page.inner_text("body"))[:600]
        return (f"#live={live!r}\nbody: {body}\nproblems: {self.problems}\n"
                f"traffic: " + "\n  ".join(self.traffic[-30:]))

    def policy_violations(self) -> list[str]:
        return [text for text in self.problems if "Content Security Policy" in text or "uncaught" in text]


async def open_console(browser: Browser, base_url: str, viewport: dict[str, int] = WIDE) -> Console:
    context = await browser.new_context(ignore_https_errors=True, viewport=viewport)
    page = await context.new_page()
    console = Console(page)
    await page.goto(f"{base_url}/ui/")
    return console


async def log_in(console: Console, username: str, password: str) -> None:
    page = console.page
    await page.wait_for_selector("#login-form", state="visible")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#nav", state="visible")


async def token_of(page: Page) -> str:
    return await page.evaluate(f"JSON.parse(sessionStorage.getItem('{SESSION_KEY}')).token")


async def forged(page: Page, method: str, path: str) -> int:
    """A request the page's user did not get a button for, sent with that user's own token."""
    return await page.evaluate(
        """async ([method, path, key]) => {
            const token = JSON.parse(sessionStorage.getItem(key)).token;
            const answer = await fetch(path, {method, headers: {Authorization: `Bearer ${token}`}});
            return answer.status;
        }""", [method, path, SESSION_KEY])


async def test_the_console_shows_every_node_and_marks_the_leader(cluster, browser):
    leader = await cluster.leader()
    console = await open_console(browser, cluster.url("node-1"))
    page = console.page
    await log_in(console, cluster.admin["username"], cluster.admin["password"])
    rows = page.locator("#nodes tbody tr[data-node]")
    await expect(rows).to_have_count(3)  # (wait_for_function would need the eval the page's policy forbids)
    assert sorted(await rows.evaluate_all("rows => rows.map(r => r.dataset.node)")) == ["node-1", "node-2", "node-3"]
    marked = page.locator("#nodes tbody tr.is-leader")
    assert await marked.count() == 1
    assert await marked.get_attribute("data-node") == leader
    assert "leader" in await marked.locator(".badge").inner_text()
    await page.wait_for_selector("#elections li strong")  # the history names the leader
    await page.wait_for_selector("#live[data-state=live]")
    await screenshot(page, "console-cluster")

    assert console.policy_violations() == []
    await page.context.close()


async def test_a_job_submitted_through_the_api_appears_and_completes_live(cluster, browser):
    console = await open_console(browser, cluster.url("node-2"))
    page = console.page
    await log_in(console, cluster.admin["username"], cluster.admin["password"])
    await page.click("#nav a[data-view=jobs]")
    await page.wait_for_selector("#jobs tbody tr[data-job]")
    await page.evaluate("window.jobnodeNotReloaded = true")
    async with cluster.client() as client:
        job = await client.submit("sleep", {"seconds": 2}, idempotency_key="console-live-job")
    row = f"#jobs tbody tr[data-job='{job['id']}']"
    await page.wait_for_selector(row, timeout=15_000)
    await page.wait_for_selector(f"{row}[data-status=completed]", timeout=20_000)
    assert await page.evaluate("window.jobnodeNotReloaded") is True
    await screenshot(page, "console-jobs")

    # The filter by idempotency key finds it alone; its page shows payload, result and timeline.
    await page.fill("#filter-key", "console-live-job")
    await page.click("#job-filters button[type=submit]")
    await expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(1)
    await page.click(f"{row} a")
    await page.wait_for_selector("#job-status:text('completed')")
    assert json.loads(await page.inner_text("#job-result")) == {"slept_seconds": 2}
    await page.wait_for_selector("#job-timeline li[data-event='job.completed']")
    await screenshot(page, "console-job")

    await page.click("#nav a[data-view=queues]")
    await page.wait_for_selector("#queues tbody tr[data-queue=default]")
    # The node's own hour of samples: one point so far draws a path of no size, hence "attached".
    await page.wait_for_selector("#throughput svg path.line", state="attached")
    if screenshot_dir() is not None:  # a picture worth showing has a line of two points or more
        await page.wait_for_selector("#throughput svg path.line", state="visible", timeout=30_000)
    await screenshot(page, "console-queues")
    assert console.policy_violations() == []
    await page.context.close()


async def test_cancel_retry_and_delete_from_the_page_one_or_many(cluster, browser):
    console = await open_console(browser, cluster.url("node-1"))
    page = console.page
    await log_in(console, cluster.admin["username"], cluster.admin["password"])
    async with cluster.client() as client:
        job = await client.submit("sleep", {"seconds": 120})
        await page.goto(f"{cluster.url('node-1')}/ui/#jobs")
        row = f"#jobs tbody tr[data-job='{job['id']}']"
        await page.wait_for_selector(row)
        await page.click(f"{row} button[data-action=cancel]")
        await page.wait_for_selector(f"{row}[data-status=cancelled]")
        assert (await client.get(job["id"]))["status"] == "cancelled"
        await page.click(f"{row} button[data-action=retry]")
        await wait_until(lambda: _status(client, job["id"], not_in={"cancelled"}), timeout_s=10,
                         message="the retried job stayed cancelled")
        await page.wait_for_selector(f"{row} button[data-action=cancel]")  # it can be cancelled again

        # Many at once: select two jobs, cancel them, then delete them (after the page asks).
        more = [job, await client.submit("sleep", {"seconds": 120})]
        rows = [f"#jobs tbody tr[data-job='{one['id']}']" for one in more]
        await page.wait_for_selector(rows[1])
        for selector in rows:
            await page.check(f"{selector} input[type=checkbox]")
        await page.click("#bulk button[data-bulk=cancel]")
        for selector in rows:
            await page.wait_for_selector(f"{selector}[data-status=cancelled]")
        for selector in rows:
            await page.check(f"{selector} input[type=checkbox]")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#bulk button[data-bulk=delete]")
        for selector in rows:
            await page.wait_for_selector(selector, state="detached")
        for one in more:
            assert await _gone(client, one["id"])
    await page.context.close()


async def _gone(client: AsyncClient, job_id: str) -> bool:
    try:
        await client.get(job_id)
    except NotFoundError:
        return True
    return False


async def _status(client: AsyncClient, job_id: str, not_in: set[str]) -> bool:
    return (await client.get(job_id))["status"] not in not_in


async def test_schedules_and_limits_are_listed_and_paused_and_resumed_from_the_page(cluster, browser):
    # They stay afterwards (active), so that the viewer's test below meets rows without buttons.
    name, queue = "console-nightly", "console-reports"
    async with cluster.client() as client:
        created = await client.create_schedule({"name": name, "cron": "30 2 * * *", "timezone": "Europe/Paris",
                                                "job": {"type": "sleep", "payload": {"seconds": 0.1}}})
        await client.set_limit("queue", queue, rate={"count": 5, "per": "minute"}, concurrency=2)

        console = await open_console(browser, cluster.url("node-3"))
        page = console.page
        await log_in(console, cluster.admin["username"], cluster.admin["password"])
        await page.click("#nav a[data-view=schedules]")
        schedule_row = f"#schedules tbody tr[data-schedule='{name}']"
        limit_row = f"#limits tbody tr[data-limit='queue/{queue}']"
        await page.wait_for_selector(f"{schedule_row}[data-paused=false]")
        await page.wait_for_selector(f"{limit_row}[data-paused=false]")
        assert await page.inner_text(f"{schedule_row} [data-field=timing]") == "30 2 * * *"
        assert await page.inner_text(f"{schedule_row} [data-field=timezone]") == "Europe/Paris"
        assert await page.get_attribute(f"{schedule_row} [data-field=next] time", "datetime") == created["next_fire_at"]
        assert (await page.inner_text(f"{schedule_row} [data-field=next]")).startswith("in ")
        assert await page.inner_text(f"{limit_row} [data-field=rate]") == "5 per minute"
        assert await page.inner_text(f"{limit_row} [data-field=concurrency]") == "2"
        assert await page.inner_text(f"{limit_row} [data-field=waiting]") == "0"

        await page.click(f"{schedule_row} button[data-action=pause]")
        await page.wait_for_selector(f"{schedule_row}[data-paused=true] button[data-action=resume]")
        assert (await client.schedule(name))["paused"] is True
        await page.click(f"{schedule_row} button[data-action=resume]")
        await page.wait_for_selector(f"{schedule_row}[data-paused=false] button[data-action=pause]")
        resumed = await client.schedule(name)
        assert resumed["paused"] is False and resumed["next_fire_at"] is not None

        await page.click(f"{limit_row} button[data-action=pause]")
        await page.wait_for_selector(f"{limit_row}[data-paused=true] button[data-action=resume]")
        assert (await client.limit("queue", queue))["paused"] is True
        await screenshot(page, "console-schedules")  # one schedule active, one limit paused
        await page.click(f"{limit_row} button[data-action=resume]")
        await page.wait_for_selector(f"{limit_row}[data-paused=false] button[data-action=pause]")
        limit = await client.limit("queue", queue)
        assert limit["paused"] is False and limit["rate"] == {"count": 5, "per": "minute"}  # the rest stays
    assert console.policy_violations() == []
    await page.context.close()


async def test_a_viewer_sees_no_actions_and_forged_actions_are_refused(cluster, browser):
    async with AsyncClient(cluster.url("node-1"), ca_file=cluster.ca_file) as anonymous:
        alice_token = (await anonymous.login(*USER))["access_token"]
    async with cluster.client(token=alice_token) as alice:
        job = await alice.submit("sleep", {"seconds": 120})

    # A worker-role account only reads cluster state: no job list, no button anywhere.
    console = await open_console(browser, cluster.url("node-3"))
    page = console.page
    await log_in(console, *VIEWER)
    assert await page.inner_text("#who") == "viewer (worker)"
    await page.wait_for_selector("#nodes tbody tr[data-node]")
    for view in ("jobs", "queues", "schedules", "cluster"):
        await page.click(f"#nav a[data-view={view}]")
        await page.wait_for_timeout(300)  # let the section render what it read
        if view == "schedules":  # the schedule and limit the admin's test left, drawn without buttons
            await page.wait_for_selector("#limits tbody tr[data-limit]")
        assert await page.locator("main button[data-action], main button[data-bulk]:visible").count() == 0, view
    await page.click("#nav a[data-view=jobs]")
    await page.wait_for_selector("#jobs-denied", state="visible")
    assert await forged(page, "POST", f"/api/v1/jobs/{job['id']}/cancel") == 403
    assert await forged(page, "DELETE", f"/api/v1/jobs/{job['id']}") == 403
    assert await forged(page, "POST", "/api/v1/limits/queue/console-reports/pause") == 403
    await page.context.close()

    # A user sees its own job with Cancel, but neither Retry nor Delete, which the server refuses.
    console = await open_console(browser, cluster.url("node-3"))
    page = console.page
    await log_in(console, *USER)
    await page.click("#nav a[data-view=jobs]")
    row = f"#jobs tbody tr[data-job='{job['id']}']"
    await page.wait_for_selector(f"{row} button[data-action=cancel]")
    assert await page.locator("button[data-action=retry], button[data-action=delete]").count() == 0
    assert await forged(page, "DELETE", f"/api/v1/jobs/{job['id']}") == 403
    assert await forged(page, "POST", f"/api/v1/jobs/{job['id']}/retry") == 403
    async with cluster.client() as admin:
        assert (await admin.get(job["id"]))["status"] != "cancelled"  # nothing forged went through
        await admin.cancel(job["id"])
    await page.context.close()


async def test_login_and_logout_with_secure(cluster, browser):
    console = await open_console(browser, cluster.url("node-2"), viewport=PHONE)
    page = console.page
    response = await page.goto(f"{cluster.url('node-2')}/ui/")
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    await page.wait_for_selector("#login-form", state="visible")
    assert await page.locator("#nav").is_hidden()
    await screenshot(page, "console-login-phone")

    await page.fill("#login-username", cluster.admin["username"])
    await page.fill("#login-password", "not-the-password")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#login-error:text('wrong username or password')")
    await log_in(console, cluster.admin["username"], cluster.admin["password"])
    token = await token_of(page)
    assert token and token not in page.url
    await page.reload()  # the session outlives a reload of the tab
    await page.wait_for_selector("#nav", state="visible")
    await page.click("#logout")
    await page.wait_for_selector("#login-form", state="visible")
    assert await page.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')") is None
    await page.reload()
    await page.wait_for_selector("#login-form", state="visible")
    assert console.policy_violations() == []
    await page.context.close()


async def test_killing_the_leader_shows_the_new_leader_without_a_reload(cluster, browser):
    old = await cluster.leader()
    watcher = next(node["id"] for node in cluster.info["nodes"] if node["id"] != old)
    console = await open_console(browser, cluster.url(watcher))
    page = console.page
    await log_in(console, cluster.admin["username"], cluster.admin["password"])
    await page.wait_for_selector(f"#nodes tbody tr.is-leader[data-node='{old}']")
    await page.wait_for_selector("#live[data-state=live]")
    # A second tab on the leader itself loses its stream with it, and says so.
    doomed = await open_console(browser, cluster.url(old))
    # The page's boot ends by clearing any session its first (token-less) request was refused
    # for: plant the token only once it has, or the boot removes it again.
    await doomed.page.wait_for_selector("#login-form", state="visible")
    await doomed.page.evaluate(f"sessionStorage.setItem('{SESSION_KEY}', JSON.stringify({{token: "
                               f"{json.dumps(cluster.admin['token'])}, role: 'admin', user: 'admin'}}))")
    await doomed.page.reload()
    try:
        await doomed.page.wait_for_selector("#live[data-state=live]")
    except PlaywrightTimeout:
        raise AssertionError(f"the tab on {old} never went live:\n{await doomed.describe()}") from None
    await page.evaluate("window.jobnodeNotReloaded = true")

    os.kill(cluster.pid(old), signal.SIGKILL)
    await page.wait_for_selector(f"#nodes tbody tr.is-leader:not([data-node='{old}'])", timeout=20_000)
    new = await page.get_attribute("#nodes tbody tr.is-leader", "data-node")
    assert new != old and new == await cluster.leader(avoid=old)
    assert await page.evaluate("window.jobnodeNotReloaded") is True
    await doomed.page.wait_for_selector("#live[data-state=lost]", timeout=10_000)
    assert "reconnecting" in (await doomed.page.inner_text("#live")).lower()
    await doomed.page.context.close()
    await page.context.close()
