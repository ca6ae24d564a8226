"The tabulated proxy task: replay equals live, resumable building, refused files, the shipped tables."
import json, os, signal, subprocess, sys, time, zipfile
from pathlib import Path
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from e2gan.mdp import GanSearchEnv, ProxyTaskConfig
from e2gan.training import GanConfig
from e2gan.searchspace import action_from_cell, arch_from_index, cell_from_index, options_at, space_size
from e2gan.tabular import (SHIPPED_TABLES, TableError, TabularSearchEnv, load_table, save_table, table_path, tabulate,
                           tabular_protocol)

TINY = dict(num_images=64, reference_images=256, classifier_images=256, gf_dim=4, df_dim=4, latent_dim=8,
            eval_images=64, eval_splits=2, sample_count=2, gan=GanConfig(d_batch=16, g_batch=16))


def tiny_proxy(n_cells: int) -> ProxyTaskConfig:
    return tabular_protocol(ProxyTaskConfig(**TINY, n_cells=3, bottom_width=2), n_cells)


@pytest.fixture(scope='module')
def env2():
    return GanSearchEnv(tiny_proxy(2), device='cpu')


@pytest.fixture(scope='module')
def env1():
    return GanSearchEnv(tiny_proxy(1), device='cpu')


@pytest.fixture(scope='module')
def table1(env1, tmp_path_factory):
    "A complete one-cell table of two GAN seeds."
    return tabulate(env1.config, tmp_path_factory.mktemp('t1') / 'one.npz', seeds=2, env=env1, progress=False)


def live_trajectory(env, seed, arch):
    obs, info = env.reset(seed=seed)
    out = [(obs, None, False, info)]
    for cell in arch:
        obs, reward, terminated, _, info = env.step(np.array(action_from_cell(cell, len(arch))))
        out.append((obs, reward, terminated, info))
        if terminated: break
    return out


def assert_same(live, replay):
    assert len(live) == len(replay)
    for (o1, r1, d1, i1), (o2, r2, d2, i2) in zip(live, replay):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2 and d1 == d2
        for key in set(i1) - {'samples'}: assert i1[key] == i2[key], key


def test_two_cell_replay_equals_live(env2, tmp_path):
    "Stage 1 trained once and continued for every second cell gives what the live environment gives, bit for bit."
    table = tabulate(env2.config, tmp_path / 'two.npz', seeds=[5, 11], first_cells=[7, 30], env=env2, progress=False)
    assert table.done.sum() == 4 and not table.complete
    replay = TabularSearchEnv.__new__(TabularSearchEnv)       # a partial table: replay its entries without the scores
    rng = np.random.default_rng(0)
    for k, seed in enumerate(table.gan_seeds):
        for first in (7, 30):
            for second in rng.choice(options_at(1), 2, replace=False):
                arch = arch_from_index(first * options_at(1) + int(second), 2)
                assert_same(live_trajectory(env2, seed, arch), replay_trajectory(table, k, arch))


def replay_trajectory(table, k, arch):
    "The table's entries of one (GAN seed index, architecture), as a TabularSearchEnv steps through them."
    env = TabularSearchEnv.__new__(TabularSearchEnv)
    env.table, env.seeds, env.n_cells = table, [k], table.n_cells
    p = table.meta['protocol']
    env.alpha, env.fid_scale, env.state_dim, env.divergence_penalty = p['alpha'], p['fid_scale'], p['gf_dim'], p['divergence_penalty']
    from e2gan.mdp import search_spaces
    env.observation_space, env.action_space = search_spaces(env.n_cells, env.state_dim)
    env.head_sizes = env.action_space.nvec
    env._scores, env._best = np.zeros(space_size(env.n_cells)), 0
    env._t = None
    obs, info = env.reset(seed=0)
    out = [(obs, None, False, info)]
    for cell in arch:
        obs, reward, terminated, _, info = env.step(np.array(action_from_cell(cell, len(arch))))
        info = {k_: v for k_, v in info.items() if k_ not in ('true_score', 'regret', 'gan_seed')}
        out.append((obs, reward, terminated, info))
        if terminated: break
    return out


def test_replay_equals_live_env(table1, env1):
    "reset(seed=s) replays the GAN that the live environment of the table trains for reset(seed=s)."
    replay = TabularSearchEnv(table1)
    live = replay.live_env(device='cpu', data=env1.data, evaluator=env1.evaluator)
    rng = np.random.default_rng(1)
    for seed in (3, 4, 10**6 + 7):
        arch = arch_from_index(int(rng.integers(space_size(1))), 1)
        got = live_trajectory(replay, seed, arch)
        assert_same(live_trajectory(live, seed, arch), [(o, r, d, {k: v for k, v in i.items() if k not in ('true_score', 'regret', 'gan_seed')})
                                                        for o, r, d, i in got])
        assert live.gan_seed == got[0][3]['gan_seed']
    assert {live_trajectory(replay, s, arch)[0][3]['gan_seed'] for s in range(20)} == set(table1.gan_seeds)


def test_true_score_regret_and_optimum(table1, env1):
    "The true score is the mean final IS - alpha FID over the GAN seeds; regret and the optimum are exact."
    env = TabularSearchEnv(table1)
    arch = arch_from_index(17, 1)
    finals = []
    for seed in table1.gan_seeds:
        *_, (_, _, _, info) = live_trajectory(env1, seed, arch)
        finals.append(info['is'] - env1.alpha * info['fid'])
    assert env.true_score(arch) == pytest.approx(np.mean(finals), abs=1e-12)
    best, best_score = env.optimum()
    assert env.regret(best) == 0 and best_score == env.all_scores().max()
    assert env.regret(arch) == pytest.approx(best_score - env.true_score(arch))
    assert (env.all_scores() <= best_score).all()
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array(action_from_cell(arch[0], 1)))
    assert terminated and info['regret'] == pytest.approx(env.regret(arch))


KILLED_RUN = r'''
import os, signal, sys
import e2gan.tabular as tabular
from e2gan.mdp import GanSearchEnv
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from test_tabular import tiny_proxy
saves, replace = [0], os.replace
def replace_then_die(src, dst):
    saves[0] += 1
    if saves[0] == int(sys.argv[3]): os.kill(os.getpid(), signal.SIGKILL)   # the new file written, not yet in place
    replace(src, dst)
tabular.os.replace = replace_then_die
tabular.tabulate(tiny_proxy(1), sys.argv[1], seeds=2, env=GanSearchEnv(tiny_proxy(1), device='cpu'), progress=False)
'''


def test_tabulate_resumes_after_sigkill(table1, env1, tmp_path):
    "A run killed (SIGKILL) while saving leaves the last complete file; the same call finishes it to the uninterrupted table."
    path = tmp_path / 'killed.npz'
    proc = subprocess.run([sys.executable, '-c', KILLED_RUN, str(path), __file__, '5'], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = load_table(path)
    assert partial.done.sum() == 4                      # four saves in place, the fifth killed before its rename
    assert len(list(tmp_path.glob('killed.npz.*.tmp'))) == 1    # the cut save
    resumed = tabulate(env1.config, path, seeds=2, env=env1, progress=False)
    assert not list(tmp_path.glob('*.tmp')) and resumed.complete and load_table(path).meta['content_sha256'] == table1.meta['content_sha256']
    for name, a in table1.arrays.items():
        if not name.startswith(('train_seconds', 'eval_seconds', 'task_seconds')): np.testing.assert_array_equal(a, resumed[name])


def test_another_protocol_is_refused(table1, tmp_path):
    path = tmp_path / 'other.npz'
    save_table(table1, path)
    with pytest.raises(TableError, match='another'):
        tabulate(tiny_proxy(2), path, seeds=2, env=GanSearchEnv(tiny_proxy(2), device='cpu'), progress=False)


def one_line_error(path) -> str:
    with pytest.raises(TableError) as e: load_table(path)
    assert isinstance(e.value, ValueError) and '\n' not in str(e.value) and str(path) in str(e.value)
    return str(e.value)


def test_corrupt_and_foreign_files_are_refused(table1, tmp_path):
    good = save_table(table1, tmp_path / 'good.npz')
    assert load_table(good).meta['sha256'] == table1.meta['sha256']
    # a changed entry under the old checksum
    with np.load(good) as z: arrays = {k: z[k] for k in z.files}
    arrays['is1'] = arrays['is1'].copy(); arrays['is1'][0, 3] += 1e-9
    np.savez(tmp_path / 'edited.npz', **arrays)
    assert 'checksum' in one_line_error(tmp_path / 'edited.npz')
    # damaged bytes, a truncated file, a text file, an npz of something else
    raw = bytearray(good.read_bytes()); raw[len(raw) // 2] ^= 0xFF
    (tmp_path / 'flipped.npz').write_bytes(bytes(raw))
    one_line_error(tmp_path / 'flipped.npz')
    (tmp_path / 'cut.npz').write_bytes(good.read_bytes()[:1000])
    one_line_error(tmp_path / 'cut.npz')
    (tmp_path / 'text.npz').write_text('hello')
    one_line_error(tmp_path / 'text.npz')
    np.savez(tmp_path / 'foreign.npz', x=np.arange(3))
    assert 'not an e2gan table' in one_line_error(tmp_path / 'foreign.npz')
    np.savez(tmp_path / 'future.npz', meta=np.frombuffer(json.dumps(dict(table1.meta, version=99)).encode(), np.uint8))
    assert 'version 99' in one_line_error(tmp_path / 'future.npz')


def test_bottom_width_keeps_the_output_resolution():
    quick = ProxyTaskConfig(n_cells=3, bottom_width=2)
    assert tabular_protocol(quick, 2).bottom_width == 4 and tabular_protocol(quick, 3).bottom_width == 2
    with pytest.raises(ValueError): tabular_protocol(quick, 5)


def test_shipped_tables_load_and_pass_check_env():
    assert table_path('tabular-shapes').is_file(), 'the design table ships with the package'
    for name in SHIPPED_TABLES:
        if not table_path(name).is_file(): continue        # the report table ships once it is made
        env = TabularSearchEnv(name)
        p = env.table.protocol
        assert (p.n_cells, p.bottom_width * 2**p.n_cells) == (2, 16)      # two cells at the quick preset's output resolution
        assert len(env.table.meta['evaluator_sha256']) == 64 and env.table.meta['torch_version']
        assert np.isfinite(env.all_scores()).all() and env.regret(env.optimum()[0]) == 0
        check_env(env, skip_render_check=True)


def test_recommended_agent_beats_random_search_on_the_design_table():
    """What the recommended agent builds once it exploits beats random search's architectures on the shipped design table.
    Measured with 30 seeds each (benchmarks/bench_tabular.py, 5 GAN seeds): the mean true regret of the exploitation
    trajectories was 0.54-1.36 per sac-categorical seed and 2.37-3.04 per random-search seed, so three seeds of each
    separate on any floating-point path. Its *hand-over* beats random search's by less (median 1.08 against 1.26, the
    ratio's 95% interval 0.57-1.11): no handful of seeds can assert that, and the README reports it as measured."""
    from e2gan.bench import benchmark_agents
    from e2gan.loop import n_exploring
    env = TabularSearchEnv('tabular-shapes')
    runs = benchmark_agents(lambda: env, ['sac-categorical', 'random'], range(3), 100)
    exploiting = {a: np.mean([np.mean(r['trajectory_regrets'][n_exploring(100):]) for r in rs]) for a, rs in runs.items()}
    assert exploiting['sac-categorical'] < 0.75 * exploiting['random'], exploiting
    assert all(r['regret'] == env.regret(r['arch']) for rs in runs.values() for r in rs)


def test_search_on_a_table_from_the_command_line(capsys, tmp_path):
    "`e2gan search --table` replays the table: the hand-over's true score and regret are the table's, and options that set the live task are refused."
    from e2gan.cli import main
    out = tmp_path / 'on-table'
    assert main(['search', '--table', 'tabular-shapes', '--agent', 'random', '--trajectories', '20', '--quiet', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    summary, env = json.loads((out / 'summary.json').read_text()), TabularSearchEnv('tabular-shapes')
    vector = summary['best']['vector']
    assert len(vector) == 9 and f'arch vector: {" ".join(map(str, vector))}' in printed
    assert f'true score {env.true_score(vector):.3f}' in printed and f'regret {env.regret(vector):.3f}' in printed
    assert json.loads((out / 'config.json').read_text())['proxy']['n_cells'] == 2      # the table's protocol is recorded
    assert main(['search', '--table', 'tabular-shapes', '--dataset', 'shapes', '--quiet', '--out', str(tmp_path / 'refused')]) == 2
    assert '--dataset' in capsys.readouterr().err and not (tmp_path / 'refused').exists()


def test_the_stepping_widget_on_a_table(capsys, tmp_path):
    "The widget steps on the table with the table's scores; `e2gan step --table` refuses an unreadable table in one line."
    from e2gan.cli import main
    from e2gan.widgets import SearchStepper, step_page_notebook
    stepper = SearchStepper.for_table('tabular-shapes', agent='random', seed=1, background=False)
    stepper.finish_button.click()
    last, env = stepper.history[-1], TabularSearchEnv('tabular-shapes')
    assert last['terminated'] and last['regret'] == env.regret(last['arch']) and f"regret {last['regret']:.3f}" in stepper.status.value
    assert "SearchStepper.for_table('tabular-shapes'" in step_page_notebook(table='tabular-shapes')['cells'][1]['source']
    (tmp_path / 'junk.npz').write_bytes(b'not a table')
    assert main(['step', '--table', str(tmp_path / 'junk.npz'), '--port', '0']) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_tabulating_your_own_images_says_what_it_needs(capsys, tmp_path):
    "A folder of images is tabulated with --dataset folder --data-root DIR --backend inception; each missing piece is one line, and nothing is written."
    from e2gan.cli import main
    out = tmp_path / 'own.npz'
    assert main(['bench', 'tabulate', '--dataset', 'folder', '--seeds', '1', '--out', str(out)]) == 2
    assert '--data-root' in capsys.readouterr().err
    (tmp_path / 'images').mkdir()
    from PIL import Image
    for i in range(8): Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(tmp_path / 'images' / f'{i}.png')
    assert main(['bench', 'tabulate', '--dataset', 'folder', '--data-root', str(tmp_path / 'images'), '--seeds', '1', '--out', str(out)]) == 2
    assert 'inception' in capsys.readouterr().err and not out.exists()
