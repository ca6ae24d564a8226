"Retraining: the published presets, training that lowers FID, exact resume (also after SIGKILL), reproducible eval, safe checkpoints."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from e2gan.utils import CheckpointError, load_checkpoint, save_atomic
from e2gan.searchspace import ARCH_PRESETS
from e2gan.bench import benchmark_training
from e2gan.retrain import (RETRAIN_PRESETS, RetrainConfig, evaluate_checkpoint, fixed_noise,
                           generate, load_generator, load_run_checkpoint, make_config, make_evaluator, read_search_result,
                           resolve_arch, retrain, sample_grid, load_training_data, train_from_options, run_config)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    "The session's cache (conftest sets $E2GAN_CACHE), so classifiers are trained once."
    return os.environ.get('E2GAN_CACHE') or str(tmp_path_factory.mktemp('cache'))


def tiny_config(cache_dir, **overrides) -> RetrainConfig:
    "16x16 shapes, width 16, 256 images: 8 D and 1-2 G steps per epoch, scored on 100 images every epoch."
    kw = dict(preset='cpu', num_images=256, bottom_width=2, gf_dim=16, df_dim=16, epochs=3, eval_every=1,
              eval_images=100, g_batch=32, d_batch=32, ema_decay=0.9, cache_dir=cache_dir, device='cpu', seed=3)
    return make_config('e2gan-cifar10', **(kw | overrides))


def assert_same_state(a, b, where='checkpoint'):
    "Exact equality of nested checkpoint contents (tensors bitwise)."
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f'{where}: keys {set(a) ^ set(b)}'
        for k in a: assert_same_state(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): assert_same_state(x, y, f'{where}[{i}]')
    elif isinstance(a, np.ndarray): assert np.array_equal(a, b), where
    else: assert a == b, f'{where}: {a!r} != {b!r}'


def metrics_lines(run_dir):
    "The logged evaluations without their wall-clock times."
    return [{k: v for k, v in json.loads(l).items() if k != 'eval_seconds'} for l in (Path(run_dir) / 'metrics.jsonl').read_text().splitlines()]


def assert_same_run(a, b):
    for name in ('last.pt', 'best.pt'):
        ca, cb = load_checkpoint(Path(a) / name), load_checkpoint(Path(b) / name)
        assert_same_state(ca, cb, name)
    assert metrics_lines(a) == metrics_lines(b)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory, cache_dir):
    "An uninterrupted 3-epoch tiny run."
    out = tmp_path_factory.mktemp('uninterrupted') / 'run'
    summary = retrain(tiny_config(cache_dir), out, progress=False)
    return out, summary


# --- configuration -------------------------------------------------------------------------------------------------

def test_presets_follow_the_published_recipe():
    c = make_config('e2gan-cifar10', dataset='cifar10')
    assert (c.gf_dim, c.df_dim, c.latent_dim, c.resolution, c.bottom_width) == (256, 128, 128, 32, 4)
    g = c.gan
    assert (g.g_batch, g.d_batch, g.n_critic, g.g_lr, g.d_lr, g.betas, g.ema_decay) == (128, 64, 5, 2e-4, 2e-4, (0.0, 0.9), 0.999)
    assert (c.epochs, c.eval_every, c.eval_images, c.eval_splits, c.lr_decay, c.best_by) == (500, 20, 50_000, 10, False, 'fid')
    assert c.arch == list(ARCH_PRESETS['e2gan-cifar10'])
    s = make_config('e2gan-cifar10', dataset='stl10')
    assert (s.resolution, s.bottom_width, s.split, s.gan.g_batch, s.gan.d_batch, s.gan.g_lr, s.gan.d_lr) == (48, 6, 'train+unlabeled', 32, 16, 5e-5, 5e-5)
    assert s.gan.n_critic == 5 and s.gan.ema_decay == 0.999
    # overrides reach the nested GAN recipe; lr sets both learning rates
    o = make_config('autogan-cifar10', dataset='shapes', preset='cpu', lr=1e-4, n_critic=2, epochs=3, amp=True)
    assert (o.gan.g_lr, o.gan.d_lr, o.gan.n_critic, o.epochs, o.gan.amp, o.dataset) == (1e-4, 1e-4, 2, 3, True, 'shapes')
    assert RetrainConfig.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    for bad in (dict(preset='imagenet'), dict(backend='tf1'), dict(best_by='loss'), dict(epochs=0), dict(colour=1)):
        with pytest.raises(ValueError): make_config('e2gan-cifar10', **bad)
    with pytest.raises(ValueError, match='ema_decay'): make_config('e2gan-cifar10', ema_decay=0)


def test_architecture_from_vector_preset_or_search(tmp_path):
    entries = [dict(vector=list(ARCH_PRESETS[k]), description='', **{'is': 1.0, 'fid': 2.0, 'score': 0.98})
               for k in ('autogan-cifar10', 'e2gan-cifar10')]
    (tmp_path / 'best_archs.json').write_text(json.dumps(entries))
    assert resolve_arch(from_search=tmp_path) == list(ARCH_PRESETS['autogan-cifar10'])
    assert resolve_arch(from_search=tmp_path, rank=2) == list(ARCH_PRESETS['e2gan-cifar10'])
    assert read_search_result(tmp_path / 'best_archs.json', 2)['vector'] == list(ARCH_PRESETS['e2gan-cifar10'])
    assert resolve_arch(arch_preset='e2gan-cifar10') == resolve_arch('0 1 0 1 0 1 2 1 0 0 1 0 1 2') == resolve_arch([0, 1, 0, 1, 0, 1, 2, 1, 0, 0, 1, 0, 1, 2])
    with pytest.raises(ValueError, match='rank must be in 1..2'): resolve_arch(from_search=tmp_path, rank=3)
    with pytest.raises(FileNotFoundError, match='best_archs.json'): resolve_arch(from_search=tmp_path / 'nope')
    with pytest.raises(ValueError, match='exactly one'): resolve_arch('e2gan-cifar10', arch_preset='e2gan-cifar10')
    with pytest.raises(ValueError, match='exactly one'): resolve_arch()
    with pytest.raises(ValueError, match='unknown architecture preset'): resolve_arch(arch_preset='biggan')
    (tmp_path / 'best_archs.json').write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match='list'): resolve_arch(from_search=tmp_path)


# --- training lowers FID; eval and sample reproduce what the run logged ----------------------------------------------

def decode_grid(path, n=64, nrow=8, pad=1) -> torch.Tensor:
    "The uint8 images (N, 3, H, W) of a grid PNG written by `save_png` (torchvision's make_grid layout)."
    grid = torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)
    size = (grid.shape[-1] - pad) // nrow - pad
    return torch.stack([grid[:, pad + r * (size + pad):pad + r * (size + pad) + size, pad + c * (size + pad):pad + c * (size + pad) + size]
                        for r, c in (divmod(i, nrow) for i in range(n))])


def test_training_halves_fid_and_eval_reproduces_the_log(tmp_path, cache_dir):
    cfg = make_config('e2gan-cifar10', preset='cpu', num_images=2000, bottom_width=2, gf_dim=32, df_dim=32, epochs=8,
                      eval_every=8, eval_images=500, g_batch=64, d_batch=32, ema_decay=0.9, cache_dir=cache_dir, device='cpu')
    out = tmp_path / 'run'
    summary = retrain(cfg, out, progress=False)
    log = metrics_lines(out)
    assert [r['epoch'] for r in log] == [0, 8] and summary['finished']
    untrained, trained = log
    assert trained['backend'] == 'classifier' and trained['num_images'] == 500
    assert trained['fid'] <= 0.5 * untrained['fid'], (untrained['fid'], trained['fid'])
    # epoch 0 is labelled, never the best; eval of the saved best checkpoint gives back exactly the logged numbers
    assert [r['epoch'] for r in log if r['best']] == [8] and [r['before_training'] for r in log] == [True, False]
    s = evaluate_checkpoint(out / 'best.pt')
    assert (s.is_mean, s.is_std, s.fid, s.backend, s.num_images) == (trained['is_mean'], trained['is_std'], trained['fid'], 'classifier', 500)
    # the grids are the EMA generator on fixed noise, and the trained grid is closer to the data than the untrained one
    before, after = decode_grid(out / 'samples' / 'epoch_0000.png'), decode_grid(out / 'samples' / 'epoch_0008.png')
    G = load_generator(out / 'last.pt')
    assert torch.equal(after, generate(G, fixed_noise(64, G.latent_dim)))
    assert torch.equal(decode_grid(sample_grid(out / 'last.pt', out=tmp_path / 'grid.png')), after)
    ev = make_evaluator(cfg, load_training_data(cfg))
    assert ev(after).fid < ev(before).fid
    assert any((out / 'tensorboard').iterdir()) and json.loads((out / 'config.json').read_text()) == cfg.to_dict()


# --- resume ----------------------------------------------------------------------------------------------------------

def test_resume_after_a_stop_gives_the_same_checkpoints(tmp_path, reference_run, cache_dir):
    ref_dir, ref_summary = reference_run
    out = tmp_path / 'run'
    first = retrain(tiny_config(cache_dir), out, progress=False, stop_after_epoch=1)
    assert first['epoch'] == 1 and not first['finished'] and load_run_checkpoint(out / 'last.pt')['epoch'] == 1
    # a kill between logging epoch 2's scores and writing its checkpoint leaves a line the checkpoint does not know
    with open(out / 'metrics.jsonl', 'a') as f: f.write(json.dumps(dict(epoch=2, fid=0.0)) + '\n')
    done = retrain(tiny_config(cache_dir), out, resume=True, progress=False)
    assert done['finished'] and done['best'] == ref_summary['best']
    assert_same_run(out, ref_dir)


def test_resume_after_sigkill_gives_the_same_checkpoints(tmp_path, reference_run, cache_dir):
    ref_dir, _ = reference_run
    out = tmp_path / 'run'
    # the same number of threads as this process: CPU kernels may round differently with another
    code = (f'import torch; torch.set_num_threads({torch.get_num_threads()})\n'
            'from test_retrain import tiny_config\nfrom e2gan.retrain import retrain\n'
            f'retrain(tiny_config({cache_dir!r}), {str(out)!r}, progress=True)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / 'tests'), str(ROOT)]))
    log = open(tmp_path / 'stderr.txt', 'w')
    proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while not (out / 'last.pt').exists():  # the first epoch's checkpoint: the run is now in epoch 2
            assert proc.poll() is None, (tmp_path / 'stderr.txt').read_text()[-3000:]
            assert time.monotonic() < deadline, 'the training subprocess wrote no checkpoint in time'
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill(); proc.wait(); log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_run_checkpoint(out / 'last.pt')['epoch']
    assert 1 <= killed_at < 3, f'the kill came after epoch {killed_at}; the comparison needs a run stopped before epoch 3'
    retrain(None, out, resume=True, progress=False)  # the config comes from the checkpoint
    assert_same_run(out, ref_dir)


def test_bad_checkpoints_and_runs_fail_clearly(tmp_path, reference_run, cache_dir):
    ref_dir, _ = reference_run
    good = load_checkpoint(ref_dir / 'last.pt')
    broken = tmp_path / 'broken.pt'; broken.write_bytes((ref_dir / 'last.pt').read_bytes()[:2000])
    with pytest.raises(CheckpointError, match='broken.pt'): load_generator(broken)
    with pytest.raises(CheckpointError, match='no checkpoint'): evaluate_checkpoint(tmp_path / 'missing.pt')
    other = tmp_path / 'other.pt'; save_atomic(dict(good, kind='e2gan-search'), other)
    with pytest.raises(CheckpointError, match='not a retraining checkpoint'): load_generator(other)
    mismatched = tmp_path / 'mismatched.pt'
    save_atomic(dict(good, config=dict(good['config'], arch=list(ARCH_PRESETS['autogan-cifar10']))), mismatched)
    with pytest.raises(CheckpointError, match='does not fit'): load_generator(mismatched)
    # a finished run is not overwritten, and is resumed only with a compatible config
    run = tmp_path / 'run'; shutil.copytree(ref_dir, run)
    with pytest.raises(FileExistsError, match='resume'): retrain(tiny_config(cache_dir), run, progress=False)
    with pytest.raises(ValueError, match='gf_dim'): retrain(tiny_config(cache_dir, gf_dim=32), run, resume=True, progress=False)
    shutil.copy(mismatched, run / 'last.pt')
    with pytest.raises(CheckpointError, match='does not fit'): retrain(None, run, resume=True, progress=False)


def test_train_back_end_resumes_and_extends_a_run(tmp_path, reference_run, cache_dir):
    ref_dir, _ = reference_run
    run = tmp_path / 'run'; shutil.copytree(ref_dir, run)
    with pytest.raises(ValueError, match='only .*epochs.* not gf_dim'): train_from_options(run, resume=True, gf_dim=8)
    with pytest.raises(ValueError, match='give the architecture'): train_from_options(tmp_path / 'new', dataset='shapes')
    with pytest.raises(ValueError, match='nothing to resume'): train_from_options(tmp_path / 'new', resume=True)
    summary = train_from_options(run, resume=True, epochs=4, progress=False)  # one more epoch of the finished run
    assert summary['epoch'] == 4 and run_config(run).epochs == 4
    log = metrics_lines(run)
    assert [r['epoch'] for r in log] == [0, 1, 2, 3, 4] and log[:4] == metrics_lines(ref_dir)
    assert log[-1]['g_steps'] > log[-2]['g_steps']


def test_benchmark_reports_step_rates():
    b = benchmark_training(gf_dim=16, df_dim=16, bottom_width=2, g_batch=16, d_batch=8, steps=2, warmup=1, device='cpu')
    assert b['device'] == 'cpu' and b['resolution'] == 16 and len(b['results']) == 1
    r = b['results'][0]
    assert r['d_steps_per_s'] > 0 and r['g_steps_per_s'] > 0
    d_per_epoch = b['train_images'] // b['d_batch']
    assert r['epoch_seconds'] == pytest.approx(d_per_epoch / r['d_steps_per_s'] + d_per_epoch // 5 / r['g_steps_per_s'])


def test_the_train_command_passes_the_recipe_flags_and_rejects_bad_ones(tmp_path, cache_dir, capsys):
    from e2gan.cli import main
    base = ['train', '--arch-preset', 'e2gan-cifar10', '--dataset', 'shapes', '--epochs', '1', '--num-images', '64',
            '--gf-dim', '8', '--df-dim', '8', '--bottom-width', '2', '--eval-every', '0', '--quiet']
    assert main(base + ['--out', str(tmp_path / 'bad'), '--ema-decay', '1.5']) == 2
    assert 'ema_decay must be between 0 and 1' in capsys.readouterr().err
    assert main(base + ['--out', str(tmp_path / 'run'), '--lr', '1e-4', '--d-lr', '3e-4', '--g-batch', '16', '--d-batch', '8',
                        '--n-critic', '2', '--ema-decay', '0.99', '--ema-warmup', '--latent-dim', '32', '--best-by', 'is']) == 0
    c = run_config(tmp_path / 'run')
    assert (c.gan.g_lr, c.gan.d_lr, c.gan.g_batch, c.gan.d_batch, c.gan.n_critic) == (1e-4, 3e-4, 16, 8, 2)
    assert (c.gan.ema_decay, c.gan.ema_warmup, c.latent_dim, c.best_by, c.resolution) == (0.99, True, 32, 'is', 16)
    assert load_run_checkpoint(tmp_path / 'run' / 'last.pt')['trainer']['g_steps'] == 64 // 8 // 2   # the flags trained it


# --- best.pt comes from training (issue 12) --------------------------------------------------------------------------
from e2gan.metrics import Scores
import e2gan.retrain as R


class ScriptedEvaluator:
    "Stands in for the run's evaluator: FID `fids[k]` at the k-th evaluation; records the determinism flag."
    def __init__(self, fids): self.fids, self.calls, self.deterministic = list(fids), 0, []
    def __call__(self, G):
        self.deterministic.append(torch.are_deterministic_algorithms_enabled())
        fid = self.fids[self.calls]; self.calls += 1
        return Scores(2.0, 0.1, fid, 'classifier', 100, 'scripted')


def test_a_short_run_never_hands_over_the_untrained_generator(tmp_path, cache_dir, monkeypatch):
    ev = ScriptedEvaluator([10.0, 50.0, 40.0])                            # the untrained generator scores best
    monkeypatch.setattr(R, 'make_evaluator', lambda *a, **k: ev)
    with pytest.warns(UserWarning, match=r'untrained generator \(epoch 0, before training\) scored better.*epoch, 2'):
        summary = retrain(tiny_config(cache_dir, epochs=2), tmp_path / 'run', progress=False)
    assert summary['best']['epoch'] == 2 and summary['untrained']['fid'] == 10.0 and summary['untrained_better']
    assert any('untrained' in n for n in summary['notes'])
    best = load_checkpoint(tmp_path / 'run' / 'best.pt')
    assert best['epoch'] == 2 and best['trainer']['g_steps'] > 0
    log = metrics_lines(tmp_path / 'run')
    assert [(r['epoch'], r['before_training'], r['best']) for r in log] == [(0, True, False), (1, False, True), (2, False, True)]


def test_a_run_that_improves_says_nothing_and_its_best_is_trained(reference_run):
    ref_dir, summary = reference_run
    assert summary['best']['epoch'] >= 1 and not summary['untrained_better'] and summary['untrained']['epoch'] == 0
    assert load_checkpoint(ref_dir / 'best.pt')['epoch'] == summary['best']['epoch']


def test_resuming_an_older_run_whose_best_was_epoch_0(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(R, 'make_evaluator', lambda *a, **k: ScriptedEvaluator([10.0, 50.0, 40.0]))
    out = tmp_path / 'run'
    with pytest.warns(UserWarning, match='untrained'): retrain(tiny_config(cache_dir), out, progress=False, stop_after_epoch=1)
    ck = load_checkpoint(out / 'last.pt')
    save_atomic(dict(ck, best=ck['untrained'], untrained=None), out / 'last.pt')   # as a run before this fix saved it
    monkeypatch.setattr(R, 'make_evaluator', lambda *a, **k: ScriptedEvaluator([30.0, 20.0]))
    with pytest.warns(UserWarning, match='FID 10 vs 20'): summary = retrain(None, out, resume=True, progress=False)
    assert summary['best']['epoch'] == 3 and summary['untrained']['epoch'] == 0 and summary['untrained_better']
    assert load_checkpoint(out / 'best.pt')['epoch'] == 3


# --- deterministic switch, another device, missing weights, the wrong kind of file (issues 12, 16) ---------------------

def test_deterministic_runs_deterministically_and_restores_the_setting(tmp_path, cache_dir, monkeypatch):
    ev = ScriptedEvaluator([100.0, 50.0])
    monkeypatch.setattr(R, 'make_evaluator', lambda *a, **k: ev)
    assert not torch.are_deterministic_algorithms_enabled()
    cfg = tiny_config(cache_dir, epochs=1, deterministic=True)
    assert RetrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).deterministic
    retrain(cfg, tmp_path / 'run', progress=False)
    assert ev.deterministic == [True, True] and not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(R, 'make_evaluator', lambda *a, **k: ScriptedEvaluator([40.0]))
    retrain(tiny_config(cache_dir, epochs=2), tmp_path / 'run', resume=True, progress=False)   # may change on resume


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu(tmp_path, reference_run, cache_dir):
    "The trainer's noise generator and the global CUDA state of a GPU run cannot be restored on a CPU: re-seeded, noted."
    out = tmp_path / 'run'
    retrain(tiny_config(cache_dir), out, progress=False, stop_after_epoch=1)
    ck = load_checkpoint(out / 'last.pt')
    philox = torch.tensor([3] + [0] * 15, dtype=torch.uint8)
    ck['trainer']['rng'] = dict(device='cuda', state=philox)
    ck['rng_states'] = dict(ck['rng_states'], cuda=[philox], cuda_devices=[0])
    save_atomic(ck, out / 'last.pt')
    runs = []
    for k in range(2):                                                     # twice: the re-seeding is reproducible
        run = tmp_path / f'resumed{k}'; shutil.copytree(out, run)
        with pytest.warns(UserWarning, match='re-seeded'):
            summary = retrain(None, run, resume=True, progress=False)
        assert summary['finished'] and len(summary['notes']) == 2, summary['notes']
        assert any('saved on cuda cannot be restored on cpu' in n for n in summary['notes'])
        assert any('CUDA device(s) [0] not restored' in n for n in summary['notes'])
        runs.append(run)
    assert_same_run(*runs)
    assert not torch.equal(load_checkpoint(runs[0] / 'last.pt')['trainer']['G']['stem.weight'],
                           load_checkpoint(reference_run[0] / 'last.pt')['trainer']['G']['stem.weight'])


def test_missing_inception_weights_stop_the_run_before_training(tmp_path, cache_dir, monkeypatch):
    import urllib.error, urllib.request
    from e2gan.metrics import INCEPTION_ENV, InceptionWeightsError
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.setattr(urllib.request, 'urlopen', lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError('offline')))
    with pytest.raises(InceptionWeightsError, match='--inception-weights PATH'):
        retrain(tiny_config(cache_dir, backend='inception', eval_at_start=False), tmp_path / 'run', progress=False)
    assert not (tmp_path / 'run' / 'last.pt').exists()


def test_a_search_checkpoint_is_named_as_such(tmp_path):
    search = tmp_path / 'checkpoint.pt'
    save_atomic(dict(agent={}, next_trajectory=3, n_records=3, config={}, rng={}), search)
    for f in (load_generator, load_run_checkpoint, evaluate_checkpoint):
        with pytest.raises(CheckpointError, match=r'search checkpoint \(written by `e2gan search`\).*best\.pt or last\.pt.*'
                                                  r'e2gan train --from-search DIR'):
            f(search)
    other = tmp_path / 'other.pt'; save_atomic(dict(weights=torch.zeros(2)), other)
    with pytest.raises(CheckpointError, match=r'lacks kind.*expects a retraining checkpoint \(best\.pt or last\.pt'):
        load_generator(other)
