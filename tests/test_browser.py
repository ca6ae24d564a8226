"""The stepping widget in a real browser: JupyterLab on localhost, Playwright driving Debian's Chromium, runs the
stepping notebook, clicks the agent's step and waits for the progressive images; a screenshot is kept as an artefact.

`.ci/browser-deps.sh` installs what this needs (`chromium` from Debian, the `playwright` Python package; no browser
download). Where either is missing the test is skipped with the reason."""
import importlib, json, os, secrets, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import pytest

CHROMIUM = Path(os.environ.get('E2GAN_CHROMIUM', '/usr/bin/chromium'))
ARTIFACTS = Path(os.environ.get('E2GAN_TEST_ARTIFACTS', Path(__file__).resolve().parent / 'artifacts')) / 'browser'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
NOTEBOOK = 'stepping.ipynb'
CELLS = [
    "# The stepping widget on the tiny shapes task: press \"Agent's step\" to add the agent's next cell.",
    "from e2gan.widgets import SearchStepper\nstepper = SearchStepper.for_shapes(tiny=True, seed=0)\nstepper",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def write_notebook(path: Path) -> None:
    cells = [dict(cell_type='markdown', metadata={}, source=CELLS[0])]
    cells += [dict(cell_type='code', metadata={}, source=src, outputs=[], execution_count=None) for src in CELLS[1:]]
    nb = dict(nbformat=4, nbformat_minor=5, cells=cells, metadata=dict(
        kernelspec=dict(name='python3', display_name='Python 3 (ipykernel)', language='python')))
    path.write_text(json.dumps(nb, indent=1))


def run_all_cells(page, tries: int = 4) -> None:
    "Run > Run All Cells, as a user would; try again while the kernel was not ready to take the request."
    prompt = page.locator('.jp-CodeCell .jp-InputPrompt').first
    for _ in range(tries):
        page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
        page.locator('.jp-Notebook').first.click()
        page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
        item = page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first
        item.wait_for(state='visible'); item.click()
        try:
            page.wait_for_function(r'p => /\[(\*|\d+)\]/.test(p.textContent)', arg=prompt.element_handle(), timeout=15_000)
            return
        except Exception: page.keyboard.press('Escape')
    raise AssertionError(f'the notebook did not start running after {tries} tries of Run > Run All Cells')


def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise RuntimeError(f'JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f'JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}')


def missing(reason: str):
    "Skip where the browser stack is absent; fail instead in CI (E2GAN_REQUIRE_BROWSER=1), where a skip would hide it."
    if os.environ.get('E2GAN_REQUIRE_BROWSER') == '1': pytest.fail(reason)
    pytest.skip(reason)


def needed(module: str, reason: str):
    try: return importlib.import_module(module)
    except ImportError: missing(reason)


@pytest.fixture
def jupyterlab():
    "A JupyterLab server on a free localhost port, with its own settings and a folder holding the stepping notebook."
    needed('jupyterlab', 'JupyterLab is not installed (pip install -e ".[dev]")')
    tmp = Path(tempfile.mkdtemp(prefix='e2gan-browser-'))
    root = tmp / 'root'; root.mkdir()
    write_notebook(root / NOTEBOOK)
    news = tmp / 'settings' / '@jupyterlab' / 'apputils-extension' / 'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True); news.write_text(json.dumps(dict(fetchNews='false')))   # no news prompt, no network
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / 'config'), JUPYTER_RUNTIME_DIR=str(tmp / 'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'),
               IPYTHONDIR=str(tmp / 'ipython'), MPLBACKEND='Agg')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', f'--ServerApp.token={token}',
           '--ServerApp.ip=127.0.0.1', f'--ServerApp.root_dir={root}', '--ServerApp.port_retries=0',
           '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')
    log = tmp / 'jupyterlab.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        wait_for_server(f'{base}/api/status?token={token}', proc, log)
        yield dict(base=base, token=token, root=root, log=log)
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_stepping_notebook_runs_in_jupyterlab_and_a_click_shows_the_progressive_images(jupyterlab):
    sync_api = needed('playwright.sync_api', 'playwright is not installed: run .ci/browser-deps.sh')
    if not CHROMIUM.exists(): missing(f'no Chromium at {CHROMIUM}: run .ci/browser-deps.sh (apt-get install chromium)')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"{jupyterlab['base']}/lab/tree/{NOTEBOOK}?token={jupyterlab['token']}"
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory(prefix='e2gan-chromium-') as profile:
        browser = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                                       viewport=dict(width=1400, height=1800))
        page = browser.new_page()
        page.set_default_timeout(120_000)
        try:
            page.goto(url)
            page.locator('.jp-Notebook .jp-Cell').first.wait_for()
            run_all_cells(page)
            # the widget renders; the button is enabled once the stem has been evaluated
            stepper = page.locator('.e2gan-stepper')
            stepper.wait_for()
            assert 'GAN on ' in stepper.inner_text()
            button = stepper.get_by_role('button', name="Agent's step")
            images = stepper.locator('img.e2gan-stage-image')
            images.first.wait_for()                                   # the stem's outputs
            assert images.count() == 1
            button.click()                                           # Playwright waits until the button is enabled
            page.wait_for_function("document.querySelectorAll('.e2gan-stepper img.e2gan-stage-image').length >= 2")
            # every stage image has loaded, and the first step shows up in the history
            page.wait_for_function("[...document.querySelectorAll('.e2gan-stepper img.e2gan-stage-image')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            page.locator('.e2gan-history tr').nth(1).wait_for()
            widths = images.evaluate_all('els => els.map(e => e.naturalWidth)')
            assert len(widths) == 2 and widths[0] < widths[1]
            assert 'trajectory 0</b>, 1 of 3 cells built' in stepper.inner_html()
            stepper.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / 'stepper.png'), full_page=True)
            stepper.screenshot(path=str(ARTIFACTS / 'stepper-widget.png'))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / 'failure.png'), full_page=True)
            (ARTIFACTS / 'jupyterlab.log').write_text(jupyterlab['log'].read_text())
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / 'stepper.png').stat().st_size > 10_000
