"`e2gan bench proxy`: real searches, what they hand over re-scored by fresh proxy trainings; every field, fresh seeds, resume."
import json
import numpy as np
import pytest
import e2gan.bench as bench_mod
from e2gan.bench import RESCORE_SEED, benchmark_proxy, proxy_score, rescore_seeds
from e2gan.cli import main
from e2gan.loop import trajectory_seed
from e2gan.mdp import GanSearchEnv, ProxyTaskConfig
from e2gan.search import SEARCH_PRESETS, SearchConfig, run_search
from e2gan.searchspace import action_from_cell, parse_arch
from e2gan.training import GanConfig

MICRO = ProxyTaskConfig(num_images=128, reference_images=1000, bottom_width=2, gf_dim=8, df_dim=8, latent_dim=16,
                        eval_images=100, eval_splits=2, gan=GanConfig(d_batch=32, g_batch=32))
TINY = SearchConfig(proxy=MICRO, trajectories=2)
RUN_FIELDS = {'agent', 'seed', 'arch', 'description', 'rule', 'search_score', 'rescores', 'true_score', 'rescore_diverged',
              'seconds', 'trajectories', 'proxy_epochs', 'out_dir', 'regret'}
ROW_FIELDS = {'agent', 'runs', 'scored', 'seconds_median', 'seconds_total'} | {
    f'{what}_{stat}' for what in ('true', 'regret') for stat in ('median', 'q25', 'q75', 'min', 'max')}
BENCH_FIELDS = {'preset', 'dataset', 'backend', 'alpha', 'agents', 'seeds', 'trajectories', 'rescore', 'rescore_seeds', 'retrain',
                'workers', 'best', 'rows', 'search_seconds', 'rescore_seconds', 'seconds', 'out_dir', 'plot', 'task'}


@pytest.fixture
def tiny_preset(monkeypatch):
    monkeypatch.setitem(SEARCH_PRESETS, 'tiny', TINY)
    return 'tiny'


def test_the_command_writes_every_field_and_the_regret_is_against_the_best_run(tmp_path, tiny_preset, capsys):
    out = tmp_path / 'bench'
    assert main(['bench', 'proxy', '--preset', tiny_preset, '--agents', 'sac,random', '--seeds', '1', '--trajectories', '2',
                 '--rescore', '1', '--out', str(out), '--json']) == 0
    printed = json.loads(capsys.readouterr().out)
    bench = json.loads((out / 'bench.json').read_text())
    assert BENCH_FIELDS <= set(printed) and BENCH_FIELDS | {'runs'} <= set(bench)
    assert (bench['agents'], bench['seeds'], bench['trajectories'], bench['rescore']) == (['sac', 'random'], 1, 2, 1)
    assert [r['agent'] for r in bench['rows']] == ['sac', 'random'] and all(ROW_FIELDS <= set(r) for r in bench['rows'])
    assert len(bench['runs']) == 2 and all(RUN_FIELDS <= set(r) for r in bench['runs'])
    best = max(r['true_score'] for r in bench['runs'])
    assert bench['best']['true_score'] == best
    for run, row in zip(bench['runs'], bench['rows']):
        summary = json.loads((out / 'runs' / f"{run['agent']}-seed0" / 'summary.json').read_text())
        assert summary['finished'] and run['arch'] == summary['best']['vector'] and run['seconds'] == summary['seconds']
        assert run['true_score'] == np.mean([s['score'] for s in run['rescores']])
        assert run['regret'] == pytest.approx(best - run['true_score']) and run['regret'] >= 0
        assert row['true_median'] == run['true_score'] and row['regret_median'] == run['regret']     # one seed: its own
    from PIL import Image
    assert Image.open(out / 'proxy.png').size[0] > 400


def test_a_rescore_is_a_fresh_proxy_training_scored_as_the_search_scores(tmp_path):
    bench = benchmark_proxy(tmp_path, agents=['random'], seeds=1, rescore=2, config=TINY, device='cpu')
    run = bench['runs'][0]
    searched = {trajectory_seed(0, i) for i in range(TINY.trajectories)}
    assert [s['seed'] for s in run['rescores']] == rescore_seeds(2) == [RESCORE_SEED, RESCORE_SEED + 1]
    assert not searched & set(rescore_seeds(2))
    env = GanSearchEnv(MICRO, device='cpu')
    for s in run['rescores']:                           # the direct evaluation: train the cells one per step, score the last
        env.reset(seed=s['seed'])
        for cell in parse_arch(run['arch']):
            _, _, done, _, info = env.step(np.array(action_from_cell(cell, 3)))
        assert s['score'] == pytest.approx(info['is'] - MICRO.alpha * info['fid'], abs=1e-9) and not s['diverged']
    assert run['rescores'][0]['score'] != run['rescores'][1]['score']          # another seed, another training
    # the same protocol as the reward: with the seed of the search's trajectory, the re-score reproduces its observed score
    final = next(json.loads(l) for l in open(tmp_path / 'runs' / 'random-seed0' / 'search.jsonl')
                 if 'score' in json.loads(l) and json.loads(l)['arch'] == run['arch'])
    again = proxy_score(env, run['arch'], trajectory_seed(0, final['trajectory']))
    assert again['score'] == pytest.approx(final['score'], abs=1e-9)


def test_a_rerun_continues_and_redoes_nothing_finished(tmp_path, monkeypatch):
    out = tmp_path / 'bench'
    # a benchmark stopped in the middle of its first search: one trajectory of two done
    cfg = SearchConfig(proxy=MICRO, trajectories=2, agent='sac', seed=0)
    run_search(out / 'runs' / 'sac-seed0', cfg, device='cpu', progress=False, stop_after=1)
    first = open(out / 'runs' / 'sac-seed0' / 'search.jsonl').read()
    bench = benchmark_proxy(out, agents=['sac'], seeds=1, rescore=1, config=TINY, device='cpu')
    assert open(out / 'runs' / 'sac-seed0' / 'search.jsonl').read().startswith(first)   # trajectory 0 kept, not redone
    assert bench['runs'][0]['trajectories'] == 2
    calls = []
    monkeypatch.setattr(bench_mod, 'run_search', lambda *a, **k: pytest.fail('a finished search ran again'))
    monkeypatch.setattr(bench_mod, 'proxy_score', lambda env, arch, seed: calls.append(seed) or dict(
        seed=seed, score=1.0, diverged=False, **{'is': 2.0, 'fid': 100.0}))
    again = benchmark_proxy(out, agents=['sac'], seeds=1, rescore=2, config=TINY, device='cpu')
    assert calls == [RESCORE_SEED + 1]                   # only the new re-score trains
    assert again['runs'][0]['rescores'][0] == bench['runs'][0]['rescores'][0]
    with pytest.raises(FileExistsError, match='another task'):
        benchmark_proxy(out, agents=['sac'], seeds=1, rescore=1, config=SearchConfig(proxy=MICRO, trajectories=3), device='cpu')


def test_runs_on_ray_workers_give_the_serial_benchmark(tmp_path):
    serial = benchmark_proxy(tmp_path / 'serial', agents=['random'], seeds=2, rescore=1, config=TINY, device='cpu')
    parallel = benchmark_proxy(tmp_path / 'parallel', agents=['random'], seeds=2, rescore=1, config=TINY, device='cpu', workers=2)
    assert parallel['workers'] == 2 and len(parallel['runs']) == 2
    untimed = lambda scores: [{k: v for k, v in s.items() if k != 'seconds'} for s in scores]
    for a, b in zip(serial['runs'], parallel['runs']):
        assert (a['arch'], untimed(a['rescores']), a['true_score']) == (b['arch'], untimed(b['rescores']), b['true_score'])


def test_retraining_adds_the_fid_of_each_architecture_and_resumes(tmp_path, monkeypatch):
    from e2gan.retrain import RETRAIN_PRESETS
    monkeypatch.setitem(RETRAIN_PRESETS, 'cpu', dict(dataset='shapes', num_images=256, gf_dim=8, df_dim=8, latent_dim=16, epochs=2,
                                                      eval_every=1, eval_images=200, backend='classifier',
                                                      gan=dict(g_batch=32, d_batch=32, ema_decay=0.9)))
    bench = benchmark_proxy(tmp_path, agents=['random'], seeds=1, rescore=1, config=TINY, device='cpu', retrain=True)
    run = bench['runs'][0]
    key = '-'.join(map(str, run['arch']))
    metrics = [json.loads(l) for l in open(tmp_path / 'retrain' / key / 'metrics.jsonl')]
    trained = [m for m in metrics if not m['before_training']]
    assert run['fid'] == min(m['fid'] for m in trained) and run['last_fid'] == trained[-1]['fid']   # best.pt's FID, and the last
    assert bench['rows'][0]['fid_median'] == run['fid']
    import e2gan.retrain
    monkeypatch.setattr(e2gan.retrain, 'retrain', lambda *a, **k: pytest.fail('a finished retraining ran again'))
    again = benchmark_proxy(tmp_path, agents=['random'], seeds=1, rescore=1, config=TINY, device='cpu', retrain=True)
    assert again['runs'][0]['fid'] == run['fid']
