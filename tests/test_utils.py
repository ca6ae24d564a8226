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


# --- random states across devices (issue 16) ------------------------------------------------------------------------
import warnings
from unittest import mock
import e2gan.utils as U
from e2gan.utils import (configure_threads, default_threads, derived_seed, generator_state, restore_determinism,
                         restore_generator, set_deterministic)


class FakeCuda:
    "Just enough of torch.cuda for the random-state functions, with `visible` GPUs and a record of what was called."
    def __init__(self, visible=2, initialised=True, current=0):
        self.visible, self.initialised, self.current = visible, initialised, current
        self.read, self.written, self.seeded = [], {}, {}

    def patches(self):
        c = torch.cuda
        def get_state(i=None): self.read.append(i); return torch.full((16,), i, dtype=torch.uint8)
        def get_all(): raise AssertionError('get_rng_state_all starts a context on every GPU')
        return [mock.patch.object(c, 'is_available', lambda: self.visible > 0),
                mock.patch.object(c, 'is_initialized', lambda: self.initialised),
                mock.patch.object(c, 'device_count', lambda: self.visible),
                mock.patch.object(c, 'current_device', lambda: self.current),
                mock.patch.object(c, 'get_rng_state', get_state), mock.patch.object(c, 'get_rng_state_all', get_all),
                mock.patch.object(c, 'set_rng_state', lambda s, i: self.written.__setitem__(i, s)),
                mock.patch.object(U, '_seed_cuda', lambda i, seed: self.seeded.__setitem__(i, seed))]

    def __enter__(self):
        self._p = self.patches()
        for p in self._p: p.start()
        return self

    def __exit__(self, *exc):
        for p in self._p: p.stop()


def test_cuda_states_are_saved_for_the_devices_in_use_only():
    assert 'cuda' not in U.get_rng_states()                     # this machine: no CUDA, nothing to save
    with FakeCuda(visible=4, initialised=False) as cuda:
        assert 'cuda' not in U.get_rng_states() and cuda.read == []   # CUDA not started: saving does not start it
    with FakeCuda(visible=4, initialised=True, current=2) as cuda:
        s = U.get_rng_states()
        assert s['cuda_devices'] == [2] and cuda.read == [2] and torch.equal(s['cuda'][0], torch.full((16,), 2, dtype=torch.uint8))
        s = U.get_rng_states(devices=['cuda:1', torch.device('cpu'), 'cuda:1'])
        assert s['cuda_devices'] == [1] and cuda.read[-1] == 1


def test_restoring_with_fewer_gpus_skips_with_a_note():
    with FakeCuda(visible=4) as cuda: states = U.get_rng_states(devices=['cuda:0', 'cuda:3'])
    old_format = dict(states, cuda=states['cuda']); del old_format['cuda_devices']  # a list for GPUs 0, 1 (pre-issue-16)
    with FakeCuda(visible=1) as cuda, pytest.warns(UserWarning, match=r'CUDA device\(s\) \[3\]'):
        notes = U.set_rng_states(states)
    assert cuda.written.keys() == {0} and len(notes) == 1
    with FakeCuda(visible=1) as cuda, pytest.warns(UserWarning, match=r'\[1\]'): U.set_rng_states(old_format)
    assert cuda.written.keys() == {0}
    with FakeCuda(visible=0) as cuda, pytest.warns(UserWarning, match='0 visible'): U.set_rng_states(states)
    assert cuda.written == {}


def test_a_state_saved_on_one_gpu_restores_onto_the_gpu_in_use():
    with FakeCuda(visible=2) as cuda: states = U.get_rng_states(devices=['cuda:1'])
    with FakeCuda(visible=1) as cuda:
        with warnings.catch_warnings(): warnings.simplefilter('error'); notes = U.set_rng_states(states, devices=['cuda:0'])
    assert notes == [] and torch.equal(cuda.written[0], states['cuda'][0])


def test_a_gpu_without_a_saved_state_is_reseeded_deterministically():
    states = U.get_rng_states()                                  # saved on this CPU-only machine
    seeds = []
    for _ in range(2):
        with FakeCuda(visible=1) as cuda, pytest.warns(UserWarning, match='re-seeded'):
            U.set_rng_states(states, devices=['cuda:0'])
        seeds.append(cuda.seeded[0])
    assert seeds[0] == seeds[1] == derived_seed(states['torch'], 'cuda', 0)


def test_a_generator_state_from_another_device_type_reseeds_deterministically():
    g = torch.Generator().manual_seed(5)
    saved = generator_state(g); x = torch.rand(4, generator=g)
    assert saved['device'] == 'cpu' and restore_generator(g, saved) is None and torch.equal(torch.rand(4, generator=g), x)
    assert restore_generator(g, saved['state']) is None and torch.equal(torch.rand(4, generator=g), x)  # bare (old) state
    philox = torch.tensor([9] + [0] * 15, dtype=torch.uint8)     # what a CUDA generator's get_state() returns
    draws = []
    for saved_cuda in (dict(device='cuda', state=philox), philox):   # with its device type, and bare (old checkpoints)
        with pytest.warns(UserWarning, match='saved on cuda cannot be restored on cpu'):
            note = restore_generator(g, saved_cuda)
        draws.append(torch.rand(4, generator=g))
        assert 'derived from the saved state' in note
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], torch.rand(4, generator=torch.Generator().manual_seed(derived_seed(philox))))


# --- threads (issue 12) ---------------------------------------------------------------------------------------------

@pytest.fixture
def threads(monkeypatch):
    "A clean slate: no thread variables, nothing configured; torch's setting restored afterwards."
    before = torch.get_num_threads()
    for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'E2GAN_THREADS'): monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(U, '_configured_threads', None)
    yield monkeypatch
    torch.set_num_threads(before)


def test_threads_default_to_one(threads):
    torch.set_num_threads(2)
    assert default_threads() == 1 and configure_threads() == 1 == torch.get_num_threads()
    assert configure_threads() == 1                                # idempotent


def test_threads_follow_e2gan_threads_or_an_explicit_count(threads):
    threads.setenv('E2GAN_THREADS', '3')
    assert configure_threads() == 3 == torch.get_num_threads() and default_threads() == 3
    assert configure_threads(2) == 2 == default_threads()          # an explicit count wins, and is remembered
    threads.setenv('E2GAN_THREADS', 'many'); threads.setattr(U, '_configured_threads', None)
    with pytest.raises(ValueError, match='E2GAN_THREADS'): configure_threads()
    with pytest.raises(ValueError, match='>= 1'): configure_threads(0)


@pytest.mark.parametrize('var', ['OMP_NUM_THREADS', 'MKL_NUM_THREADS'])
def test_threads_leave_the_users_omp_or_mkl_setting_alone(threads, var):
    torch.set_num_threads(2); threads.setenv(var, '2')
    assert configure_threads() == 2 == torch.get_num_threads()


# --- deterministic switch (issue 16) ----------------------------------------------------------------------------------

def test_set_deterministic_sets_and_clears_the_flags(monkeypatch):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, 'benchmark', True); monkeypatch.setattr(cudnn, 'deterministic', False)
    try:
        before = set_deterministic(True)
        assert before == dict(algorithms=False, warn_only=False, cudnn_deterministic=False, cudnn_benchmark=True,
                              cublas_workspace_config=None)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark and os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
    finally: set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and not cudnn.deterministic
    cudnn.benchmark = True; monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG')
    restore_determinism(set_deterministic(True))                        # back to exactly what it was
    assert not torch.are_deterministic_algorithms_enabled() and not cudnn.deterministic and cudnn.benchmark
    assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ
