"Checkpoints that survive a crash, load safely and keep the file mode a user expects."
import os, stat
import numpy as np
import pytest
import torch
from e2gan.utils import CheckpointError, get_rng_states, load_checkpoint, save_atomic, set_rng_states


def test_round_trip_keeps_tuples_arrays_and_rng_states(tmp_path):
    obj = dict(w=torch.arange(3.), pair=(1, 2), arr=np.arange(4, dtype=np.int16), rng=get_rng_states())
    save_atomic(obj, tmp_path / 'ck.pt')
    back = load_checkpoint(tmp_path / 'ck.pt', required=('w', 'rng'))
    assert back['pair'] == (1, 2) and back['arr'].dtype == np.int16 and torch.equal(back['w'], obj['w'])
    a = torch.rand(3); set_rng_states(back['rng']); torch.manual_seed(0); set_rng_states(obj['rng'])
    assert torch.equal(torch.rand(3), a)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_and_no_debris(tmp_path):
    path = tmp_path / 'ck.pt'
    save_atomic(dict(step=1), path)
    class Unpicklable:
        def __reduce__(self): raise RuntimeError('the process died here')
    with pytest.raises(RuntimeError, match='died'): save_atomic(dict(step=2, bad=Unpicklable()), path)
    assert load_checkpoint(path)['step'] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ['ck.pt']


def test_the_file_gets_the_mode_a_plain_open_would_give(tmp_path):
    save_atomic(dict(step=1), tmp_path / 'ck.pt')
    (tmp_path / 'plain').write_bytes(b'')
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    assert mode(tmp_path / 'ck.pt') == mode(tmp_path / 'plain')


def test_bad_checkpoints_raise_checkpoint_errors_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match='no checkpoint'): load_checkpoint(tmp_path / 'missing.pt')
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='junk.pt'): load_checkpoint(tmp_path / 'junk.pt')
    save_atomic(dict(step=1), tmp_path / 'ck.pt')
    with pytest.raises(CheckpointError, match='lacks agent'): load_checkpoint(tmp_path / 'ck.pt', required=('agent',))
