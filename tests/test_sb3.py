"The Stable-Baselines3 peer: SAC from SB3 on the package's 14-logit wrapper, judged like the package's agents."
import os, sys
import numpy as np
import pytest
from e2gan.agent import SearchAgent
from e2gan.bench import regret_table, sb3_sac_run
from e2gan.loop import HANDOVER_RULES, handed_over_architecture, trajectory_seed
from e2gan.searchspace import action_from_cell, arch_from_vector
from e2gan.surrogate import SurrogateEnv

if os.environ.get('CI'): import stable_baselines3  # noqa: F401  (CI installs the extra: a missing one fails, never skips)
else: pytest.importorskip('stable_baselines3')


class CountingSurrogate(SurrogateEnv):
    "The surrogate, counting the steps and finished episodes that SB3 makes it play."
    def __init__(self, **kw):
        super().__init__(**kw); self.steps = self.episodes = 0
    def step(self, action):
        out = super().step(action)
        self.steps += 1; self.episodes += out[2]
        return out


def test_sb3_sac_spends_the_budget_exactly_and_its_records_agree_with_the_true_scores():
    envs = []
    def make_env(): envs.append(CountingSurrogate(seed=0)); return envs[-1]
    run = sb3_sac_run(make_env, seed=3, trajectories=100, keep_records=True)
    env, records = envs[0], run['records']
    assert len(envs) == 1 and (env.episodes, env.steps) == (100, 300)
    finals = [r for r in records if 'score' in r]
    assert [r['trajectory'] for r in finals] == list(range(100)) and len(records) == 300
    assert [r['phase'] for r in finals] == ['explore'] * 70 + ['exploit'] * 30
    best = env.optimum()[1]
    for r in finals:                    # the true regret of every trajectory is the env's, and its true score's distance to the optimum
        assert r['regret'] == pytest.approx(env.regret(r['arch'])) == pytest.approx(best - r['true_score'])
    assert run['trajectory_regrets'] == [r['regret'] for r in finals]
    assert run['incumbent_regrets'][-1] == max(finals, key=lambda r: r['score'])['regret']
    assert tuple(run['arch']) == handed_over_architecture(records, SearchAgent.handover)[0]
    assert run['rule'] == HANDOVER_RULES[SearchAgent.handover] and run['regret'] == pytest.approx(env.regret(run['arch']))
    assert tuple(run['arch']) in {tuple(r['arch']) for r in finals if r['phase'] == 'exploit'}
    # each trajectory saw the loop's seed for its index: replaying its cells reproduces its observed score
    replay = SurrogateEnv(seed=0)
    for r in finals[::17]:
        replay.reset(seed=trajectory_seed(3, r['trajectory']))
        for cell in arch_from_vector(r['arch']): _, _, _, _, info = replay.step(np.array(action_from_cell(cell, 3)))
        assert r['score'] == pytest.approx(info['is'] - replay.alpha * info['fid'])
    assert regret_table({'sb3-sac': [run]})[0]['median'] == run['regret']          # the package's table takes the run


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'stable_baselines3', None)
    with pytest.raises(ImportError, match=r'pip install "e2gan\[sb3\]"'):
        sb3_sac_run(lambda: SurrogateEnv(seed=0), seed=0, trajectories=2)
