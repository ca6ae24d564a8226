"""The course site: `e2gan site` builds both editions from the stored notebooks (offline, nothing executed); the student
edition holds no answer, the teacher edition folds them; every internal link resolves; no page loads anything from
another host; the API reference and the stepper's static snapshot. The browser checks are in test_site_browser.py."""
import functools, html.parser, json, os, re, subprocess, sys, tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
from e2gan.site import (ANSWERS, answer_flags, api_page, lesson_times, lessons, module_notebooks,  # noqa: E402
                        site_cells, student_notebook)


def unavailable(reason: str):
    "Skip where the docs extra or KaTeX is missing; fail in CI (which installs both), where a skip would hide a broken site."
    if os.environ.get('CI'): pytest.fail(reason)
    pytest.skip(reason)


def needs_docs_extra():
    for m in ('sphinx', 'myst_nb', 'sphinx_book_theme'):
        try: __import__(m)
        except ImportError: unavailable(f'{m} is missing: pip install -e ".[docs]"')
    if not (Path(os.environ.get('E2GAN_KATEX', '/usr/share/javascript/katex')) / 'katex.min.js').exists():
        unavailable('no local KaTeX: apt-get install libjs-katex')


@functools.lru_cache(maxsize=None)
def built(edition: str) -> Path:
    "The site of `edition` built once per test process by the command a user types (the student run also writes the handout)."
    needs_docs_extra()
    tmp = Path(tempfile.mkdtemp(prefix=f'e2gan-site-{edition}-'))
    cmd = [sys.executable, '-m', 'e2gan.cli', 'site', '--out', str(tmp / 'site'), '--edition', edition]
    if edition == 'student': cmd += ['--student-notebooks', str(tmp / 'handout')]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'WARNING' not in res.stderr and 'ERROR' not in res.stderr, res.stderr[-3000:]   # a page that does not build cleanly fails
    return tmp / 'site'


class Page(html.parser.HTMLParser):
    "What the link and answer checks need from a page: its URLs by tag, its ids, its text, and the text inside the answer folds."
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.urls, self.ids, self.text, self.folded, self._fold_depth, self._depth = [], set(), [], [], None, 0
        self.feed(text)
        self.text, self.folded = ''.join(self.text), ''.join(self.folded)   # code is split into spans: glue it back

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        for key in ('href', 'src'):
            if a.get(key) and tag in ('a', 'img', 'link', 'script', 'source'): self.urls.append((tag, a[key]))
        if tag == 'details':
            self._depth += 1
            if 'e2gan-answers' in (a.get('class') or '') and self._fold_depth is None: self._fold_depth = self._depth

    def handle_endtag(self, tag):
        if tag == 'details':
            if self._fold_depth == self._depth: self._fold_depth = None
            self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._fold_depth is not None: self.folded.append(data)


def page(site: Path, name: str) -> Page: return Page((site / name).read_text(encoding='utf-8'))


def squash(s: str) -> str: return re.sub(r'\s+', ' ', s).strip()


PLAIN = re.compile(r"^[A-Za-z0-9 ,.;:()?!]+$")     # prose a page shows letter for letter (no markup, no quotes to curl)


def answer_lines(nb: dict) -> list[str]:
    """Lines of the answers that appear nowhere else in the notebook, so that finding one on a page means an answer is
    there: lines of their code, and lines of their prose without markup."""
    flags = answer_flags(nb['cells'])
    elsewhere = squash('\n'.join(''.join(c['source']) for c, a in flags if not a))
    lines = {(c['cell_type'], squash(l)) for c, a in flags if a for l in ''.join(c['source']).splitlines()}
    return sorted(l for kind, l in lines if len(l) > 25 and l not in elsewhere and not l.startswith('#')
                  and (kind == 'code' or PLAIN.match(l)))


# ---- marking the answers ----

def test_every_lesson_marks_its_answers_once_after_its_exercises():
    assert [p.stem[:2] for p in lessons(NBS)] == ['20', '21', '22', '23', '24', '25']
    for path in lessons(NBS):
        nb = json.loads(path.read_text())
        flags = answer_flags(nb['cells'])
        answers = [c for c, a in flags if a]
        assert answers and ANSWERS.match(''.join(answers[0]['source']).splitlines()[0]), f'{path.name}: no "## Answers" section'
        before = '\n'.join(''.join(c['source']) for c, a in flags[:flags.index((answers[0], True))])
        assert '## Exercises' in before, f'{path.name}: the answers do not follow an "## Exercises" section'
        assert answer_lines(nb), f'{path.name}: nothing in the answers for the tests to look for'


def test_answers_run_from_the_heading_to_the_next_heading_and_a_shared_cell_is_split():
    md = lambda s: dict(cell_type='markdown', id=s[:6], metadata={}, source=s)
    code = lambda s: dict(cell_type='code', id=s[:6], metadata={}, source=s, outputs=[], execution_count=None)
    cells = [md('# Lesson\n\ntext'), md('## Exercises\n\n1. Why?\n\n## Answers\n\n**1.** Because.\n\n### A detail\nmore'),
             code('answer_code = 1'), md('## After the answers\n\nkept'), code('kept_code = 2')]
    flags = answer_flags(cells)
    assert [(c['source'].splitlines()[0], a) for c, a in flags] == [
        ('# Lesson', False), ('## Exercises', False), ('## Answers', True), ('answer_code = 1', True),
        ('## After the answers', False), ('kept_code = 2', False)]
    assert len({c['id'] for c, _ in flags}) == len(flags)                 # the split cell's parts get ids of their own
    student = student_notebook(dict(cells=cells, metadata={}, nbformat=4, nbformat_minor=5))
    text = '\n'.join(c['source'] for c in student['cells'])
    assert 'Because' not in text and 'answer_code' not in text and 'Why?' in text and 'kept_code' in text
    teacher = [c['source'] for c in site_cells(dict(cells=cells), 'teacher')]
    start, end = teacher.index('## Answers'), teacher.index('</details>')
    assert teacher[start + 1].startswith('<details class="e2gan-answers">')
    assert '**A detail**' in teacher[start + 2] and 'answer_code = 1' in teacher[start + 3] and end == start + 4
    assert teacher[end + 1].startswith('## After the answers')
    with pytest.raises(ValueError, match='edition'): site_cells(dict(cells=cells), 'reviewer')


def test_syllabus_gives_every_lesson_its_cpu_time():
    times = lesson_times((NBS / 'syllabus.md').read_text())
    assert set(times) == {p.stem for p in lessons(NBS)} and all(re.search(r'\d', t) for t in times.values())


def test_api_reference_lists_functions_classes_and_patched_methods_with_signatures():
    text = api_page(ROOT / 'e2gan' / 'widgets.py', '17_widgets')
    assert '{py:class} SearchStepper(env: gym.Env, agent,' in text
    assert '{py:method} step(action: Sequence[int] | None=None, wait: bool=True) -> SearchStepper' in text   # a @patch'd method
    assert '{py:classmethod} for_surrogate(' in text and '{py:property} depth' in text
    assert 'Take the agent\'s action (or `action`, one int per head) as the buttons do.' in text          # its docstring
    assert '{py:function} static_html(w: W.Widget) -> str' in text and '_repr_mimebundle_' not in text   # private names left out


# ---- the built site ----

def test_both_editions_build_with_every_page():
    for edition in ('teacher', 'student'):
        site = built(edition)
        expected = ['index', 'syllabus', 'api/index'] + [p.stem for p in lessons(NBS) + module_notebooks(NBS)]
        expected += ['api/' + m for m in ('utils', 'sac', 'widgets', 'site', 'cli')]
        assert [n for n in expected if not (site / f'{n}.html').exists()] == []
        assert f'{edition} edition' in page(site, 'index.html').text
    home = page(built('teacher'), 'index.html')
    for name in [p.stem for p in lessons(NBS)] + ['syllabus', 'api/index']:
        assert ('a', f'{name}.html') in home.urls, f'the home page does not link {name}'


def test_student_edition_holds_no_answer_and_teacher_edition_folds_them():
    teacher, student = built('teacher'), built('student')
    for path in lessons(NBS):
        nb, name = json.loads(path.read_text()), f'{path.stem}.html'
        lines, t, s = answer_lines(nb), page(teacher, name), page(student, name)
        assert [l for l in lines if l in squash(s.text)] == [], f'{name}: answers in the student edition'
        assert [l for l in lines if l not in squash(t.folded)] == [], f'{name}: answers not folded in the teacher edition'
        assert 'Exercises' in s.text and 'Show the worked answers' not in s.text
        handout = json.loads((student.parent / 'handout' / path.name).read_text())
        assert handout == student_notebook(nb)                                    # the notebooks to hand out
        source = '\n'.join(''.join(c['source']) for c in handout['cells'])
        assert [l for l in lines if l in squash(source)] == []


def test_lesson_pages_say_how_to_run_them_with_their_cpu_time_and_goals():
    times = lesson_times((NBS / 'syllabus.md').read_text())
    for edition in ('teacher', 'student'):
        site = built(edition)
        for path in lessons(NBS):
            p = page(site, f'{path.stem}.html')
            assert 'Run this lesson' in p.text and f'jupyter lab nbs/{path.stem}.ipynb' in p.text
            assert squash(f'Time on a laptop CPU: {times[path.stem]}') in squash(p.text)
            assert 'Learning goals' in p.text
            downloads = [u for tag, u in p.urls if tag == 'a' and u.endswith(f'{path.stem}.ipynb')]
            assert downloads, f'{path.name}: no notebook to download'
            got = json.loads((site / unquote(downloads[0])).read_text())
            want = json.loads(path.read_text())
            assert got == (student_notebook(want) if edition == 'student' else want)


def test_every_internal_link_resolves_and_nothing_loads_from_another_host():
    for edition in ('teacher', 'student'):
        site = built(edition)
        pages = {p.relative_to(site).as_posix(): page(site, p.relative_to(site).as_posix()) for p in site.rglob('*.html')
                 if '_static' not in p.relative_to(site).parts}     # the theme's template fragments are not pages
        broken, remote = [], []
        for name, p in pages.items():
            for tag, url in p.urls:
                parts = urlparse(url)
                if parts.scheme in ('http', 'https') or url.startswith('//'):
                    if tag != 'a': remote.append((name, url))        # a link out is fine; loading from elsewhere is not
                    continue
                if parts.scheme in ('mailto', 'data', 'javascript'): continue
                target, fragment = parts.path, parts.fragment
                resolved = (site / name).parent / unquote(target) if target else site / name
                resolved = resolved.resolve()
                if resolved.is_dir(): resolved = resolved / 'index.html'
                if not resolved.exists(): broken.append((name, url)); continue
                if fragment and resolved.suffix == '.html':
                    key = resolved.relative_to(site.resolve()).as_posix()
                    if fragment not in pages[key].ids: broken.append((name, url))
        assert broken == [], f'{edition}: {len(broken)} broken internal links, e.g. {broken[:10]}'
        assert remote == [], f'{edition}: pages load from other hosts: {remote[:10]}'
        assert len(pages) > 30


def test_math_is_marked_for_the_local_katex_and_the_stepper_shows_its_snapshot():
    site = built('teacher')
    lesson = (site / '21_lesson_sac.html').read_text()
    assert '_static/katex/e2gan-katex.js' in lesson and '<span class="math notranslate nohighlight">' in lesson
    assert (site / '_static' / 'katex' / 'katex.min.js').exists() and any((site / '_static' / 'katex' / 'fonts').glob('*.woff2'))
    widgets = (site / '17_widgets.html').read_text()
    assert widgets.count('class="e2gan-stepper-static"') >= 3          # the surrogate stepper, after its steps, the GAN stepper
    bare = [p.name for p in site.glob('*.html') if 'VBox(children=' in p.read_text()]
    assert bare == [], f'stored widgets shown as their repr: {bare}'    # a widget without a snapshot says what it is


# ---- the pieces of the stepper's static view and of its page ----

def test_stepper_snapshot_is_what_the_widget_shows_and_rides_in_its_mime_bundle():
    from e2gan.widgets import SearchStepper
    s = SearchStepper.for_surrogate(seed=1, background=False)
    s.step()
    bundle = s._repr_mimebundle_()
    assert 'application/vnd.jupyter.widget-view+json' in bundle          # Jupyter and Voila keep the live widget
    snap = bundle['text/html']
    assert s.status.value in snap and '1 of 3 cells built' in snap and s.history_html.value in snap
    assert s.cells_text.value in snap and s.beliefs_box.value in snap
    assert snap.count('<img src="data:image/png;base64,') == 2          # the state vectors and the IS/FID/reward plots
    assert f'<option>{s.dropdowns[0].label}</option>' in snap and 'disabled' in snap


def test_step_page_notebook_and_its_template_load_nothing_from_another_host(tmp_path):
    from e2gan.widgets import offline_voila_template, step_page_notebook
    pytest.importorskip('voila')
    nb = step_page_notebook(surrogate=False, dataset='fashion-mnist', agent='random', seed=4)
    code = nb['cells'][1]['source']
    assert "for_shapes(tiny=True, agent='random', seed=4, dataset='fashion-mnist')" in code and code.rstrip().endswith('stepper')
    name = offline_voila_template(tmp_path)
    text = (tmp_path / 'voila' / 'templates' / name / 'index.html.j2').read_text()
    assert not re.search(r'<(link|script)\b[^>]*(href|src)="https?://', text) and 'extends' in text


def test_site_and_step_commands_say_what_they_need():
    res = subprocess.run([sys.executable, '-m', 'e2gan.cli', 'site'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().count('\n') == 0 and '--out' in res.stderr
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / 'mine.txt').write_text('not a site')
        res = subprocess.run([sys.executable, '-m', 'e2gan.cli', 'site', '--out', tmp], cwd=ROOT, capture_output=True, text=True, timeout=120)
        if 'docs extra' not in res.stderr:
            assert res.returncode == 2 and 'is not an e2gan site' in res.stderr and (Path(tmp) / 'mine.txt').exists()
    pytest.importorskip('voila')
    import socket
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0)); taken.listen()
        res = subprocess.run([sys.executable, '-m', 'e2gan.cli', 'step', '--surrogate', '--port', str(taken.getsockname()[1])],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and 'is in use' in res.stderr and res.stderr.strip().count('\n') == 0
