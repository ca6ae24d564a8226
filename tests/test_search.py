"The search loop: logs, hand-over files, and resume after a kill reproducing an uninterrupted run."
import json
import pytest
from e2gan.cli import main
from e2gan.mdp import GanSearchEnv, ProxyTaskConfig
from e2gan.search import SearchConfig, TIME_KEYS, run_search, search_config
from e2gan.searchspace import arch_from_vector
from e2gan.training import GanConfig

MICRO = ProxyTaskConfig(num_images=128, reference_images=1000, bottom_width=2, gf_dim=8, df_dim=8, latent_dim=16,
                        eval_images=100, eval_splits=2, gan=GanConfig(d_batch=32, g_batch=32))


def records(out):
    return [{k: v for k, v in json.loads(l).items() if k not in TIME_KEYS} for l in open(out / 'search.jsonl')]


@pytest.mark.parametrize('agent', ['sac', 'reinforce'])
def test_resume_after_a_kill_reproduces_the_uninterrupted_records(tmp_path, agent):
    cfg = SearchConfig(proxy=MICRO, agent=agent, trajectories=4, seed=7)
    env = GanSearchEnv(MICRO, device='cpu')
    run_search(tmp_path / 'full', cfg, env=env, progress=False)
    # killed after the checkpoint of trajectory 2, in the middle of trajectory 3 (one step already logged)
    run_search(tmp_path / 'killed', cfg, env=env, progress=False, stop_after=2)
    partial = json.loads(open(tmp_path / 'full' / 'search.jsonl').readlines()[6])
    with open(tmp_path / 'killed' / 'search.jsonl', 'a') as f: f.write(json.dumps(dict(partial, reward=123.0)) + '\n')
    with pytest.raises(FileExistsError): run_search(tmp_path / 'killed', cfg, env=env, progress=False)
    run_search(tmp_path / 'killed', cfg, env=env, progress=False, resume=True)
    assert records(tmp_path / 'killed') == records(tmp_path / 'full')
    full_best = json.loads((tmp_path / 'full' / 'best_archs.json').read_text())
    assert json.loads((tmp_path / 'killed' / 'best_archs.json').read_text()) == full_best
    other = SearchConfig(proxy=MICRO, agent=agent, trajectories=5, seed=7)
    with pytest.raises(Exception, match='another configuration'):
        run_search(tmp_path / 'killed', other, env=env, progress=False, resume=True)


def test_quick_search_from_the_command_line_writes_consistent_outputs(tmp_path, capsys):
    out = tmp_path / 'quick'
    assert main(['search', '--preset', 'quick', '--trajectories', '4', '--out', str(out), '--quiet']) == 0
    printed = capsys.readouterr().out
    recs = [json.loads(l) for l in open(out / 'search.jsonl')]
    best = json.loads((out / 'best_archs.json').read_text())
    summary = json.loads((out / 'summary.json').read_text())
    assert len(recs) == 4 * 3 and [r['step'] for r in recs] == [0, 1, 2] * 4
    assert [r['phase'] for r in recs[::3]] == ['explore'] * 3 + ['exploit']       # 70% of 4 trajectories explore
    for r in recs:
        assert {'trajectory', 'step', 'phase', 'action', 'arch', 'is', 'fid', 'reward', 'd_loss', 'g_loss', 'seconds'} <= set(r)
        assert len(r['arch']) == 4 + 5 * r['step']                                 # the architecture so far
    finals = [r for r in recs if r['terminated']]
    exploit = {tuple(r['arch']): r for r in finals if r['phase'] == 'exploit'}
    assert best and {tuple(b['vector']) for b in best} <= set(exploit)             # read off the exploitation phase
    assert summary['handover'] == 'best mean observed in exploitation' and "by the rule 'best mean observed in exploitation'" in printed
    for b in best:
        assert b['description'] == arch_from_vector(b['vector']).describe()
        assert b['score'] == pytest.approx(b['is'] - summary['alpha'] * b['fid'])
    assert [b['score'] for b in best] == sorted((b['score'] for b in best), reverse=True)
    assert summary['trajectories'] == 4 and summary['proxy_epochs'] == 12 and summary['best'] == best[0]
    assert summary['backend'] == 'classifier'
    assert ' '.join(map(str, best[0]['vector'])) in printed and f'e2gan train --from-search {out} --preset cpu --dataset shapes' in printed
    for phase, n in (('explore', 3), ('exploit', 1)):
        scores = [r['score'] for r in finals if r['phase'] == phase]
        assert len(scores) == n and summary['mean_score'][phase] == pytest.approx(sum(scores) / n)
    assert f"{summary['mean_score']['exploit']:.3f} while exploiting" in printed
    from PIL import Image
    assert Image.open(out / 'search.png').size[0] > 400                           # the plot of every trajectory


def test_presets_and_overrides():
    paper = search_config('paper')
    assert (paper.proxy.dataset, paper.proxy.backend, paper.proxy.alpha, paper.trajectories) == ('cifar10', 'inception', 0.01, 100)
    assert (paper.proxy.gf_dim, paper.proxy.df_dim, paper.proxy.eval_images, paper.explore_fraction) == (128, 64, 5000, 0.7)
    assert search_config('paper-is').proxy.alpha == 0.0
    q = search_config('quick', agent='random', dataset='fashion-mnist', trajectories=3)
    assert (q.agent, q.proxy.dataset, q.trajectories) == ('random', 'fashion-mnist', 3)
    assert search_config('quick').proxy.dataset == 'shapes'            # overrides do not leak into the preset
    with pytest.raises(ValueError, match='unknown agent'): search_config('quick', agent='ppo')
    with pytest.raises(ValueError, match='unknown preset'): search_config('huge')


def test_the_search_and_the_benchmark_hand_over_the_same_architecture(tmp_path):
    "run_search's best_archs.json and benchmark_agents rank the same records by the same rule, for every kind of rule."
    from e2gan.surrogate import SurrogateEnv
    from e2gan.bench import benchmark_agents
    for agent in ('sac-categorical', 'random'):
        cfg = SearchConfig(agent=agent, trajectories=20, seed=3)
        summary = run_search(tmp_path / agent, cfg, env=SurrogateEnv(seed=3), progress=False)
        run = benchmark_agents(lambda: SurrogateEnv(seed=3), [agent], seeds=[3], trajectories=20)[agent][0]
        assert summary['best']['vector'] == run['arch'] and summary['handover'] == run['rule']
        best = json.loads((tmp_path / agent / 'best_archs.json').read_text())
        assert best[0]['vector'] == run['arch']


def test_rescoring_spends_the_end_of_the_budget_on_the_best_candidates_for_any_agent():
    import numpy as np
    from e2gan.agents import make_agent
    from e2gan.loop import rank_architectures, run_loop, search_and_rescore, trajectory_summaries
    from e2gan.surrogate import SurrogateEnv
    env = SurrogateEnv(seed=4)
    for name in ('random', 'sac'):      # a discrete agent and one on the continuous 14-logit wrapper
        agent = make_agent(name, env.observation_space, env.action_space, seed=1)
        records, rule = search_and_rescore(env, agent, trajectories=30, rescore=6, repeats=2, seed=1)
        summaries = trajectory_summaries(records)
        assert len(summaries) == 30 and rule == 'rescored-mean'                        # the budget is the same
        search, rescored = summaries[:24], summaries[24:]
        assert all(t['phase'] == 'rescore' for t in rescored) and [t['trajectory'] for t in rescored] == list(range(24, 30))
        top3 = [tuple(e['vector']) for e in rank_architectures(records[:-18], 'shrunk-mean', top_k=3)]
        assert [t['arch'] for t in rescored] == top3 * 2                                 # the 3 best candidates, twice each
        handed = rank_architectures(records, rule, top_k=1)[0]
        means = {a: np.mean([t['score'] for t in rescored if t['arch'] == a]) for a in top3}
        assert tuple(handed['vector']) == max(means, key=means.get) and handed['count'] == 2   # fresh observations only
        same = make_agent(name, env.observation_space, env.action_space, seed=1)
        assert trajectory_summaries(run_loop(env, same, 24, seed=1)) == search          # the agent neither acts nor learns in them


def test_rescoring_builds_every_candidate_of_a_round_on_the_same_seed():
    "Common random numbers: a seed's luck shared by every architecture (on the real task most of the noise) cancels between candidates."
    from e2gan.agents import make_agent
    from e2gan.loop import rescore_candidates, run_loop, trajectory_seed
    from e2gan.surrogate import SurrogateEnv

    class SeedLog(SurrogateEnv):
        def __init__(self, *args, **kwargs): self.seeds = []; super().__init__(*args, **kwargs)
        def reset(self, *, seed=None, options=None): self.seeds.append(seed); return super().reset(seed=seed, options=options)

    env = SeedLog(seed=4)
    records = run_loop(env, make_agent('random', env.observation_space, env.action_space, seed=1), 24, seed=1)
    searched, env.seeds = env.seeds, []
    paired = rescore_candidates(env, records, 6, 24, seed=1, repeats=2)
    assert env.seeds == [trajectory_seed(1, 24)] * 3 + [trajectory_seed(1, 25)] * 3 and not set(env.seeds) & set(searched)
    assert [r['trajectory'] for r in paired if 'score' in r] == list(range(24, 30))     # the records keep their own indices
    env.seeds = []
    unpaired = rescore_candidates(env, records, 6, 24, seed=1, repeats=2, paired=False)
    assert env.seeds == [trajectory_seed(1, i) for i in range(24, 30)]                   # a fresh seed per build
    assert [r['arch'] for r in unpaired if 'score' in r] == [r['arch'] for r in paired if 'score' in r]


def test_shrunk_mean_counts_a_lone_draw_half():
    from e2gan.loop import rank_architectures
    rec = lambda i, arch, score: dict(trajectory=i, phase='explore', arch=arch, score=score, explore=True)
    a, b = [0] * 14, [1] * 14
    records = [rec(0, a, 10.0), rec(1, b, 9.5), rec(2, b, 9.5), rec(3, b, 9.5), rec(4, [0, 1] * 7, 0.0)]
    ranked = rank_architectures(records, 'shrunk-mean')
    prior = 38.5 / 5
    assert ranked[0]['vector'] == b and ranked[0]['score'] == pytest.approx((28.5 + prior) / 4)   # three 9.5s beat one 10
    assert ranked[1]['score'] == pytest.approx((10 + prior) / 2)
    assert rank_architectures(records, 'best-observed')[0]['vector'] == a


def test_bench_search_on_a_split_pairs_each_run_with_its_member_and_seed_and_takes_runner_functions():
    from e2gan.bench import benchmark_search
    from e2gan.loop import run_loop
    from e2gan.agents import make_agent
    def mine(env, seed, trajectories):
        agent = make_agent('random', env.observation_space, env.action_space, seed=seed)
        return run_loop(env, agent, trajectories, seed=seed), 'best-observed'
    bench = benchmark_search(seeds=2, trajectories=12, split='report', agents=('random', mine), rescore=4)
    assert [(r['landscape'], r['seed']) for r in bench['results']['random']] == [(1000, 2000), (1001, 2001)]
    assert [r['arch'] for r in bench['results']['mine']] == [r['arch'] for r in bench['results']['random']]   # the same search
    rows = {r['agent']: r for r in bench['rows']}
    assert rows['random']['vs_random'] == 1 and rows['mine']['rule'] == 'best mean of the re-scoring trajectories'
    assert all(len(r['trajectory_regrets']) == 12 for r in bench['results']['mine'])
