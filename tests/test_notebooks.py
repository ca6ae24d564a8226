"Every notebook in nbs/ runs top to bottom (nbdev_test), as a user would run it on a CPU."
import os, subprocess, sys
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parent.parent / 'nbs'
NOTEBOOKS = sorted(p.name for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs(name):
    # the notebooks import the checkout under test (conftest puts it first on PYTHONPATH), not whatever is installed
    env = dict(os.environ, MPLBACKEND='Agg')
    assert env['PYTHONPATH'].split(os.pathsep)[0] == str(NBS.parent)
    code = ('import sys; from pathlib import Path; from nbdev.test import test_nb; '
            "ok, _ = test_nb(Path(sys.argv[1]), skip_flags=['notest', 'slow'], do_print=True); sys.exit(0 if ok else 1)")
    res = subprocess.run([sys.executable, '-c', code, str(NBS / name)],
                         cwd=NBS.parent, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
