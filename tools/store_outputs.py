"""Execute notebooks top to bottom and store their outputs, so that a reader sees every figure, table and printed
result on GitHub or in a course without running anything.

    python tools/store_outputs.py                 # every notebook in nbs/
    python tools/store_outputs.py 04_metrics 20   # notebooks whose names start with these
    python tools/store_outputs.py --shrink-only   # only re-encode the stored figures (smaller PNGs)

Run it after any change that alters what a notebook shows, then `nbdev_clean` (which keeps outputs: `clear_all =
False` in settings.ini) and commit. Figures are stored as PNG at a modest resolution; the tests execute every
notebook again, so a stored output never stands in for a run.
"""
import os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

SETUP = """
import matplotlib as mpl
mpl.rcParams.update({'figure.dpi': 72, 'savefig.dpi': 72})
try:
    from IPython.core.display_functions import display  # noqa: F401  (widgets render through display)
except ImportError: pass
"""

MAX_WIDTH = 720      # pixels: a figure reads well on a page at this width

def _small_png(b64: str) -> str:
    "A stored figure at most MAX_WIDTH wide, on white, with a palette of 256 colours: the same picture in a fraction of the bytes."
    import base64, io
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    if im.mode in ('RGBA', 'LA', 'P'):
        im = im.convert('RGBA'); bg = Image.new('RGB', im.size, 'white'); bg.paste(im, mask=im.split()[-1]); im = bg
    if im.width > MAX_WIDTH: im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)), Image.LANCZOS)
    buf = io.BytesIO(); im.convert('RGB').quantize(256).save(buf, format='PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode()

def shrink_figures(nb) -> None:
    for cell in nb.cells:
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if 'image/png' in data: data['image/png'] = _small_png(data['image/png'])

SKIP = re.compile(r'^#\|\s*(slow|notest|eval:\s*false)\s*$', re.M)   # what nbdev's tests skip is not run here either

def skipped(cell) -> bool: return cell.cell_type == 'code' and bool(SKIP.search(cell.source))

def store(path: Path) -> float:
    "Execute `path` in a fresh shell from the repository root, store its outputs; returns seconds."
    nb, start = read_nb(path), time.perf_counter()
    shell = CaptureShell(path)
    shell.run(SETUP)
    os.chdir(ROOT)
    shell.run_all(nb, exc_stop=True, preproc=skipped)
    shrink_figures(nb)
    write_nb(nb, path)
    return time.perf_counter() - start

def main(prefixes: list[str]) -> None:
    shrink_only = '--shrink-only' in prefixes      # re-encode the stored figures without running anything
    prefixes = [x for x in prefixes if x != '--shrink-only']
    paths = sorted((ROOT / 'nbs').glob('*.ipynb'))
    if prefixes: paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    if shrink_only:
        for p in paths: nb = read_nb(p); shrink_figures(nb); write_nb(nb, p)
        return
    for p in paths:
        print(f'{p.name:40s}', end=' ', flush=True)
        print(f'{store(p):6.1f} s, {p.stat().st_size / 1e3:7.0f} kB', flush=True)

if __name__ == '__main__': main(sys.argv[1:])
