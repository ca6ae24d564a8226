"""The course site and the stepping page in a real browser (Playwright driving Debian's Chromium, as test_browser.py):
every page of the site loads from a local server with no request to another host, equations are rendered by KaTeX,
stored figures are displayed, every internal link and anchor resolves; `e2gan step` serves the stepper without code,
a click advances the trajectory, and Ctrl-C stops the server. Screenshots go to the test artefacts."""
import http.server, os, re, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path
from urllib.parse import urldefrag, urlparse
import pytest

from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port, missing, needed
from test_site import ROOT, built


def browser_page(p, profile: str):
    if not CHROMIUM.exists(): missing(f'no Chromium at {CHROMIUM}: run .ci/browser-deps.sh (apt-get install chromium)')
    ctx = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                               viewport=dict(width=1300, height=1500))
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return ctx, page


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture
def served_site():
    "The teacher edition on a local HTTP server (127.0.0.1, a free port)."
    site = built('teacher')
    server = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()), lambda *a: Quiet(*a, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try: yield f'http://127.0.0.1:{server.server_address[1]}/'
    finally: server.shutdown(); server.server_close()


def test_site_in_chromium_loads_locally_renders_math_and_figures_and_every_link_resolves(served_site):
    sync_api = needed('playwright.sync_api', 'playwright is not installed: run .ci/browser-deps.sh')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = served_site
    elsewhere, failed = [], []
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory(prefix='e2gan-chromium-') as profile:
        ctx, page = browser_page(p, profile)
        # every request of every page: to this server only, and answered
        ctx.on('request', lambda r: None if r.url.startswith((base, 'data:', 'blob:')) else elsewhere.append(r.url))
        ctx.on('requestfinished', lambda r: failed.append(r.url) if (r.response() and r.response().status >= 400) else None)
        ctx.on('requestfailed', lambda r: failed.append(r.url))
        try:
            # the home page and lesson 2 (SAC): equations rendered by KaTeX, none left as TeX; a stored figure displayed
            for name in ('index.html', '21_lesson_sac.html'):
                page.goto(base + name, wait_until='load')
                page.wait_for_function("document.querySelectorAll('.math').length === 0 || document.querySelectorAll('.math .katex').length > 0")
            lesson = page
            n_math = lesson.locator('.math').count()
            assert n_math > 10 and lesson.locator('.math .katex').count() == n_math      # every equation, by KaTeX's DOM
            assert lesson.locator('.katex-error').count() == 0
            assert lesson.evaluate("[...document.querySelectorAll('.math')].every(e => !/\\\\[\\(\\[]/.test(e.innerText))")
            figures = lesson.locator('.cell_output img')
            assert figures.count() >= 2
            lesson.wait_for_function("[...document.querySelectorAll('.cell_output img')].every(i => i.complete && i.naturalWidth > 0)")
            # the answers are folded until opened
            fold = lesson.locator('details.e2gan-answers')
            assert fold.count() == 1 and not fold.evaluate('d => d.open')
            assert not fold.locator('.cell_output').first.is_visible()
            lesson.screenshot(path=str(ARTIFACTS / 'site-lesson.png'))
            lesson.locator('div.math').first.scroll_into_view_if_needed()
            lesson.screenshot(path=str(ARTIFACTS / 'site-lesson-math.png'))
            fold.locator('summary').click()
            assert fold.evaluate('d => d.open') and fold.locator('.cell_output').first.is_visible()
            # crawl: every page reachable from the home page, every internal link and anchor on it
            seen, todo, anchors, ids = set(), ['index.html'], [], {}
            while todo:
                name = todo.pop()
                if name in seen: continue
                seen.add(name)
                response = page.goto(base + name, wait_until='load')
                assert response is not None and response.ok, f'{name}: {response and response.status}'
                ids[name] = set(page.evaluate("[...document.querySelectorAll('[id]')].map(e => e.id)"))
                for href in page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"):
                    url, fragment = urldefrag(href)
                    if not url.startswith(base): continue
                    target = urlparse(url).path[1:] or 'index.html'
                    if target.endswith('/'): target += 'index.html'
                    if target.endswith('.html'):
                        todo.append(target)
                        if fragment: anchors.append((name, target, fragment))
                    elif page.request.get(url).status != 200: failed.append(url)    # downloads, images
            missing_anchors = [(src, t, f) for src, t, f in anchors if f not in ids.get(t, set())]
            assert missing_anchors == [], f'links to anchors that do not exist: {missing_anchors[:10]}'
            assert {'index.html', 'syllabus.html', '21_lesson_sac.html', 'api/index.html', 'api/widgets.html'} <= seen
            assert len(seen) > 30
        except Exception:
            page.screenshot(path=str(ARTIFACTS / 'site-failure.png'), full_page=True)
            raise
        finally:
            ctx.close()
    assert elsewhere == [], f'requests to other hosts: {sorted(set(elsewhere))[:10]}'
    assert failed == [], f'requests that failed: {sorted(set(failed))[:10]}'


def test_step_page_serves_the_stepper_without_code_a_click_steps_and_ctrl_c_stops_it():
    sync_api = needed('playwright.sync_api', 'playwright is not installed: run .ci/browser-deps.sh')
    needed('voila', 'Voila is not installed (pip install -e ".[docs]")')
    if not CHROMIUM.exists(): missing(f'no Chromium at {CHROMIUM}: run .ci/browser-deps.sh (apt-get install chromium)')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix='e2gan-step-test-') as tmp:
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(Path(tmp) / 'config'), JUPYTER_RUNTIME_DIR=str(Path(tmp) / 'runtime'),
                   IPYTHONDIR=str(Path(tmp) / 'ipython'), MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
        log = Path(tmp) / 'step.log'
        with open(log, 'w') as out:
            proc = subprocess.Popen([sys.executable, '-m', 'e2gan.cli', 'step', '--surrogate', '--seed', '0', '--port', str(port)],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        elsewhere = []
        try:
            deadline = time.monotonic() + 120
            while f'http://127.0.0.1:{port}/' not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory(prefix='e2gan-chromium-') as profile:
                ctx, page = browser_page(p, profile)
                page.set_default_timeout(120_000)
                ctx.on('request', lambda r: None if urlparse(r.url).hostname in ('127.0.0.1', None) else elsewhere.append(r.url))
                try:
                    page.goto(f'http://127.0.0.1:{port}/')
                    stepper = page.locator('.e2gan-stepper')
                    stepper.wait_for()
                    assert 'SearchStepper' not in page.inner_text('body')                 # no code, only what it shows
                    assert page.locator('.jp-InputArea-editor:visible, .jp-Editor:visible').count() == 0
                    assert '0 of 3 cells built' in stepper.inner_text()
                    state = stepper.locator('img').first
                    before = state.get_attribute('src')
                    stepper.get_by_role('button', name="Agent's step").click()
                    page.wait_for_function("document.querySelector('.e2gan-stepper').innerText.includes('1 of 3 cells built')")
                    page.wait_for_function("document.querySelectorAll('.e2gan-history tr').length === 2")
                    row = stepper.locator('.e2gan-history tr').nth(1).inner_text()
                    assert re.search(r'agent \(sample\)\s.*conv.*\s[+-]\d+\.\d{3}\s', row), row        # the new cell and its reward
                    assert stepper.locator('ol li').count() == 1                                       # the trajectory's cell
                    page.wait_for_function("s => document.querySelector('.e2gan-stepper img').src !== s", arg=before)
                    assert 'cell 1' in stepper.inner_text() and state.evaluate('i => i.naturalWidth') > 0   # the state vectors
                    page.screenshot(path=str(ARTIFACTS / 'step-page.png'), full_page=True)
                finally:
                    ctx.close()
            assert elsewhere == [], f'requests to other hosts: {elsewhere[:10]}'
            proc.send_signal(signal.SIGINT)                                                   # Ctrl-C
            assert proc.wait(60) == 0, log.read_text()[-3000:]
            assert 'stopping the page' in log.read_text()
            with pytest.raises(OSError):
                import socket
                socket.create_connection(('127.0.0.1', port), timeout=2).close()
        finally:
            if proc.poll() is None: proc.kill(); proc.wait(10)
