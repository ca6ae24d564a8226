"Algorithm 1's schedule as the learner sees it, serially and from Ray workers' results: which steps explore, how many updates each step gets, and REINFORCE's batches."
import copy
import numpy as np
import pytest
import torch
from e2gan.agents import ReinforceAgent, make_agent
from e2gan.loop import phase_of, run_loop, run_trajectory
from e2gan.parallel import ActingAgent, learn_from_batch, reinforce_batch_update
from e2gan.sac import CategoricalSAC, SACConfig
from e2gan.surrogate import SurrogateEnv


class Spy(CategoricalSAC):
    "A categorical SAC agent that notes the `explore` flag of every act and every update."
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self.acts, self.updates = [], []
    def act(self, obs, explore): self.acts.append(explore); return super().act(obs, explore)
    def update_after_step(self, explore): self.updates.append(explore); return super().update_after_step(explore)


@pytest.fixture(scope='module')
def env(): return SurrogateEnv(state_dim=16)


def test_exploitation_acts_greedily_and_learns_with_the_exploitation_schedule(env):
    agent = Spy(env.observation_space, env.action_space, SACConfig(learning_starts=12, batch_size=16), seed=0)
    records = run_loop(env, agent, trajectories=10, explore_fraction=0.7, seed=0)
    expected = [phase_of(r['trajectory'], 10, 0.7) == 'explore' for r in records]
    assert agent.acts == expected and agent.updates == expected == [r['explore'] for r in records]
    assert expected.count(False) == 9                                   # trajectories 7, 8, 9 exploit
    learned = [r for r in records if 'updates' in r]
    assert learned and all(r['updates'] == (1 if r['explore'] else 10) for r in learned)
    # greedy: the exploitation trajectories are the policy's argmax, the same whatever the acting generator holds
    obs, _ = env.reset(seed=0)
    state = agent.generator.get_state()
    greedy = [agent.act(obs, False).tolist() for _ in range(5)]
    assert all(g == greedy[0] for g in greedy) and torch.equal(agent.generator.get_state(), state)


def results_of(env, agent, indices, explore):
    "What workers send back: each trajectory acted by a policy-only copy, with its transitions."
    out = []
    for i in indices:
        acting = ActingAgent(copy.deepcopy(agent))
        records = run_trajectory(env, acting, i, explore(i), seed=100 + i)
        out.append(dict(index=i, records=records, transitions=acting.transitions))
    return out


def test_the_parallel_learner_follows_algorithm_1s_schedule_in_index_order(env):
    agent = make_agent('sac-categorical', env.observation_space, env.action_space, seed=0, learning_starts=6, batch_size=8)
    explore = lambda i: i < 3
    results = results_of(env, agent, range(5), explore)
    records = learn_from_batch(agent, list(reversed(results)))          # arrival order does not matter: index order does
    assert [r['trajectory'] for r in records] == [i for i in range(5) for _ in range(3)]
    stored = agent.buffer.data['reward'][:len(agent.buffer)].tolist()
    assert stored == pytest.approx([t[2] for r in results for t in r['transitions']])
    for r in records[6:]:                                              # from the 6th transition on the buffer is large enough
        assert r['updates'] == (1 if r['explore'] else 10)
    assert all('updates' not in r for r in records[:5])
    assert all(r['trajectory_updates'] == 1 for r in records[2::3][2:])  # one full-buffer update per finished trajectory
    assert agent.n_updates == 2 * 1 + 3 * 1 + 6 * 10 + 3              # steps 6-8 explore, 9-14 exploit, 3 trajectory ends


def test_reinforce_learns_from_a_batch_of_its_own_exploration_samples(env):
    agent = make_agent('reinforce', env.observation_space, env.action_space, seed=0)
    results = results_of(env, agent, range(4), lambda i: i != 2)       # trajectory 2 is greedy: not a sample of the policy
    reference = copy.deepcopy(agent)
    stats = reinforce_batch_update(agent, results)
    # by hand: baseline = mean return of the batch (the first batch), loss = mean_i -(R_i - b) log pi(tau_i) - w H(tau_i)
    batch = [r for r in results if r['records'][0]['explore']]
    returns = [sum(t[2] for t in r['transitions']) for r in batch]
    b = float(np.mean(returns))
    loss = 0.0
    for r, R in zip(batch, returns):
        log_prob, entropy = reference._log_prob_and_entropy([[int(a) for a in t[1]] for t in r['transitions']])
        loss = loss + (-(R - b) * log_prob - reference.config.entropy_weight * entropy) / len(batch)
    reference.opt.zero_grad(); loss.backward(); reference.opt.step()
    assert stats['batch'] == 3 and agent.baseline == pytest.approx(b) and agent.n_updates == 1
    for p, q in zip(agent.controller.parameters(), reference.controller.parameters()): torch.testing.assert_close(p, q)
    assert learn_from_batch(agent, results[2:3])[-1].get('trajectory_batch') is None   # a batch of greedy trajectories teaches nothing
