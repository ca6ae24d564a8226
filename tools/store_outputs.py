"""Execute notebooks top to bottom and store their outputs, so that a reader sees every figure, table and printed
result on GitHub or in a course without running anything.

    python tools/store_outputs.py                 # every notebook in nbs/
    python tools/store_outputs.py 04_metrics 20   # notebooks whose names start with these

Run it after any change that alters what a notebook shows, then `nbdev_clean` (which keeps outputs: `clear_all =
False` in settings.ini) and commit. Figures are stored as PNG at a modest resolution; the tests execute every
notebook again, so a stored output never stands in for a run.
"""
import os, sys, time
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

def store(path: Path) -> float:
    "Execute `path` in a fresh shell from the repository root, store its outputs; returns seconds."
    nb, start = read_nb(path), time.perf_counter()
    shell = CaptureShell(path)
    shell.run(SETUP)
    os.chdir(ROOT)
    shell.run_all(nb, exc_stop=True)
    write_nb(nb, path)
    return time.perf_counter() - start

def main(prefixes: list[str]) -> None:
    paths = sorted((ROOT / 'nbs').glob('*.ipynb'))
    if prefixes: paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    for p in paths:
        print(f'{p.name:40s}', end=' ', flush=True)
        print(f'{store(p):6.1f} s, {p.stat().st_size / 1e3:7.0f} kB', flush=True)

if __name__ == '__main__': main(sys.argv[1:])
