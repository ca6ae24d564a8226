"Search agents: SAC's losses match their equations, the schedule of Algorithm 1, exact resume, and SAC beating random search."
import itertools, math
import numpy as np
import pytest
import torch
import gymnasium as gym
from e2gan.utils import save_atomic, load_checkpoint
from e2gan.surrogate import SurrogateEnv
from e2gan.sac import SACAgent, SACConfig, joint_actions, joint_probs, head_entropies, depth_of, active_head_mask
from e2gan.baselines import (AGENTS, make_agent, run_search_on, handed_over_architecture, ReinforceAgent, n_exploring)

HEADS = (2, 3, 3, 2, 2, 2)


@pytest.fixture(scope='module')
def env_factory():
    SurrogateEnv(state_dim=16)          # builds (and caches) the landscape once
    return lambda **kw: SurrogateEnv(state_dim=16, **kw)


def observations(env, n, seed=0):
    "Observations at every depth, from random trajectories of `env`."
    rng, out = np.random.default_rng(seed), []
    obs, _ = env.reset(seed=seed)
    while len(out) < n:
        out.append(obs)
        obs, _, done, _, _ = env.step(np.array([rng.integers(k) for k in HEADS]))
        if done: obs, _ = env.reset()
    return torch.tensor(np.stack(out))


def test_replay_buffer_round_trips_past_its_first_allocation():
    from e2gan.sac import ReplayBuffer
    buf = ReplayBuffer(obs_dim=3, act_dim=2, capacity=400)
    for t in range(300): buf.add(np.full(3, t), [t, -t], float(t), np.full(3, t + 1), t % 3 == 2)
    copy = ReplayBuffer(obs_dim=3, act_dim=2)
    copy.load_state_dict(buf.state_dict())
    assert len(copy) == 300 and all(torch.equal(copy.data[k][:300], buf.data[k][:300]) for k in buf.data)
    for t in range(150): copy.add(np.zeros(3), [0, 0], 0.0, np.zeros(3), False)   # grows to capacity, then overwrites the oldest
    assert len(copy) == 400 and copy.data['reward'][49] == 0.0 and copy.data['reward'][50] == 50.0


def test_categorical_expectations_are_exact_sums_over_all_joint_actions(env_factory):
    env = env_factory()
    agent = make_agent('sac-categorical', env.observation_space, env.action_space, seed=0)
    obs = observations(env, 9)
    depth = depth_of(obs, 3)
    log_probs = agent.actor(obs)
    q_all = agent.q1.q_all(obs, depth)
    joint = joint_actions(HEADS)
    assert len(joint) == 144
    brute_q = torch.stack([agent.q1(obs, depth, a.expand(len(obs), -1)) for a in joint], 1)
    torch.testing.assert_close(q_all, brute_q)
    brute_p = torch.stack([sum(lp[:, a[h]] for h, lp in enumerate(log_probs)).exp() for a in joint], 1)
    p = joint_probs(log_probs)
    torch.testing.assert_close(p, brute_p)
    torch.testing.assert_close((p * q_all).sum(1), (brute_p * brute_q).sum(1))
    # the entropy of the factorised policy is the sum of the head entropies
    torch.testing.assert_close(head_entropies(log_probs).sum(1), -(p * p.log()).sum(1))
    # a cell ignores skips from cells that do not exist: the critic's value cannot depend on them
    at0 = q_all[depth == 0].view(-1, 36, 4)
    torch.testing.assert_close(at0, at0[..., :1].expand_as(at0))
    assert active_head_mask(HEADS).tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]


def test_gaussian_log_prob_is_the_tanh_change_of_variables(env_factory):
    env = env_factory()
    agent = make_agent('sac', env.observation_space, env.action_space, seed=0)
    obs = observations(env, 6)
    eps = torch.randn(6, 14, generator=torch.Generator().manual_seed(1))
    a, logp = agent.actor.sample(obs, eps)
    mu, log_std = agent.actor(obs)
    ref = torch.distributions.TransformedDistribution(torch.distributions.Normal(mu, log_std.exp()),
                                                      torch.distributions.transforms.TanhTransform())
    torch.testing.assert_close(a, torch.tanh(mu + log_std.exp() * eps))
    torch.testing.assert_close(logp, ref.log_prob(a).sum(-1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('name', ['sac', 'sac-categorical'])
def test_one_update_follows_eq_6_to_8_and_polyak(env_factory, name):
    env = env_factory()
    agent = make_agent(name, env.observation_space, env.action_space, seed=0, learning_starts=8, batch_size=8)
    run_search_on(env, agent, trajectories=3, seed=0)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in agent.modules.items()}
    stats = agent.update_after_step(explore=True)
    assert stats['updates'] == 1 and math.isfinite(stats['critic_loss'])
    tau = agent.config.tau
    for q in ('q1', 'q2'):
        new, old_target = list(agent.modules[q].parameters()), before[q + '_target']
        assert any(not torch.equal(a, b) for a, b in zip(new, before[q]))          # the critic learned
        for p, old_t, t in zip(new, old_target, agent.modules[q + '_target'].parameters()):
            torch.testing.assert_close(t, (1 - tau) * old_t + tau * p)            # Polyak with tau 0.005
    # gaussian: fixed temperature 0.1; the categorical variant tunes it
    assert (agent.temperature == pytest.approx(0.1)) == (name == 'sac')


def test_critic_regresses_on_the_terminal_reward_without_bootstrapping(env_factory):
    "With done = 1 the target is the reward alone: a critic trained on one terminal transition predicts its reward."
    env = env_factory()
    agent = SACAgent(env.observation_space, env.action_space, SACConfig(parametrisation='categorical', critic_lr=1e-2), seed=0)
    obs = observations(env, 3)[2].numpy()
    action = np.array([1, 2, 0, 1, 1, 0])
    agent.record(obs, action, 0.7, obs * 0 + 1e6, True)   # a nonsense next state must not matter
    for _ in range(300): agent._update(1)
    q = agent.q1(torch.tensor(obs)[None], depth_of(torch.tensor(obs)[None], 3), torch.tensor(action)[None])
    assert q.item() == pytest.approx(0.7, abs=0.02)


def test_update_schedule_of_algorithm_1(env_factory):
    "Updates start at 64 transitions; 1 per step exploring, 10 exploiting; one full-buffer update per trajectory."
    env = env_factory()
    agent = make_agent('sac', env.observation_space, env.action_space, seed=0)
    sizes = []
    sample = agent.buffer.sample
    agent.buffer.sample = lambda n, g: sizes.append(n) or sample(n, g)
    records = run_search_on(env, agent, trajectories=30, explore_fraction=0.8, seed=0)
    assert n_exploring(30, 0.8) == 24 and sum(r['explore'] for r in records) == 72
    expected = []
    for r in records:
        n = 3 * r['trajectory'] + r['step'] + 1                 # transitions in the buffer after this step
        if n >= 64: expected += [min(n, 256)] * (1 if r['explore'] else 10)
        if r['terminated'] and n >= 64: expected.append(n)    # the full-buffer update
    assert sizes == expected and agent.n_updates == len(expected)


def test_deterministic_actions_are_tanh_mean_and_argmax(env_factory):
    env = env_factory()
    obs = observations(env, 3)[1].numpy()
    g = make_agent('sac', env.observation_space, env.action_space, seed=0)
    np.testing.assert_allclose(g.act(obs, explore=False), torch.tanh(g.actor(torch.tensor(obs)[None])[0][0]).detach().numpy())
    assert not np.allclose(g.act(obs, explore=True), g.act(obs, explore=True))
    c = make_agent('sac-categorical', env.observation_space, env.action_space, seed=0)
    greedy = [lp[0].argmax().item() for lp in c.actor(torch.tensor(obs)[None])]
    assert c.act(obs, explore=False).tolist() == greedy == c.act(obs, explore=False).tolist()


def test_reinforce_step_raises_the_probability_of_a_better_than_baseline_trajectory(env_factory):
    env = env_factory()
    agent = make_agent('reinforce', env.observation_space, env.action_space, seed=0, lr=1e-2)
    obs, _ = env.reset(seed=0)
    for reward in (0.0, 1.0, -1.0):                              # baseline 0, then a good and a bad trajectory
        agent.begin_trajectory()
        for t in range(3):
            action = agent.act(obs, explore=True); agent.record(obs, action, reward / 3, obs, t == 2)
        choices = list(agent._choices)
        before = agent._log_prob_and_entropy(choices)[0].item()
        stats = agent.update_after_trajectory()
        after = agent._log_prob_and_entropy(choices)[0].item()
        if stats['advantage'] > 0: assert after > before
        if stats['advantage'] < 0: assert after < before
    # greedy (exploitation) trajectories are not samples of the policy: no update
    agent.begin_trajectory()
    for t in range(3): agent.record(obs, agent.act(obs, explore=False), 1.0, obs, t == 2)
    assert agent.update_after_trajectory() == {}



def test_reinforce_designs_the_next_cells_after_a_forced_cell_and_does_not_learn_from_it(env_factory):
    env = env_factory()
    obs, _ = env.reset(seed=0)
    first = make_agent('reinforce', env.observation_space, env.action_space, seed=0)
    greedy = first.act(obs, explore=False)                       # the controller's own first cell
    other = greedy.copy(); other[0] = 1 - other[0]                # the same cell with the other convolution
    values = {}
    for name, cell in (('own', greedy), ('other', other)):
        agent = make_agent('reinforce', env.observation_space, env.action_space, seed=0)
        agent.force(obs, cell)
        assert agent._choices == [cell.tolist()]
        values[name] = agent.option_values(obs)                   # the controller's view of the second cell
    # forcing the cell the controller would have chosen leaves it exactly where acting would have
    assert all(np.allclose(a, b) for a, b in zip(values['own'], first.option_values(obs)))
    # a different forced cell changes what the LSTM proposes next: it has seen the cell
    assert not all(np.allclose(a, b) for a, b in zip(values['own'], values['other']))
    agent.record(obs, other, 1.0, obs, False)
    for t in (1, 2): agent.record(obs, agent.act(obs, explore=True), 1.0, obs, t == 2)
    assert len(agent._choices) == 3 and agent.update_after_trajectory() == {}   # not a sample of the policy

def test_make_agent_rejects_unknown_agents_and_settings(env_factory):
    env = env_factory()
    with pytest.raises(ValueError, match='allowed: sac, sac-categorical, reinforce, random'):
        make_agent('ppo', env.observation_space, env.action_space)
    with pytest.raises(ValueError, match='no setting temprature'):
        make_agent('sac', env.observation_space, env.action_space, temprature=0.2)
    with pytest.raises(ValueError, match='MultiDiscrete'):
        make_agent('sac', env.observation_space, gym.spaces.Discrete(4))


def test_handed_over_architecture_rules():
    def traj(i, explore, arch, score):
        return dict(trajectory=i, step=2, explore=explore, arch=list(arch), score=score, terminated=True)
    a, b, c = (0,) * 14, (1,) + (0,) * 13, (0, 1) + (0,) * 12
    records = [traj(0, True, c, 9.0), traj(1, False, a, 1.0), traj(2, False, b, 2.0), traj(3, False, a, 1.5),
               traj(4, False, b, 0.1)]
    assert handed_over_architecture(records, 'random') == (c, 'best observed')
    # exploitation: the best *mean* observed score (a: 1.25 over two runs, b: 1.05), not the best single draw (b: 2.0)
    assert handed_over_architecture(records, 'sac') == (a, 'best mean observed in exploitation')
    assert handed_over_architecture(records[:3], 'reinforce')[0] == b
    assert handed_over_architecture(records[:1], 'sac') == (c, 'best observed')   # no exploitation: fall back


class PlainEnv(gym.Env):
    "Another environment with the search spaces: no IS/FID, a different state size, a deterministic landscape."
    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3 + 5,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(HEADS)
        self.effects = np.random.default_rng(3).normal(size=(3, 14))
    def reset(self, seed=None, options=None):
        super().reset(seed=seed); self.t = 0
        return np.zeros(8, np.float32), {}
    def step(self, action):
        onehot = np.concatenate([np.eye(n)[a] for n, a in zip(HEADS, action)])
        reward = float(self.effects[self.t] @ (onehot * np.r_[np.ones(10), np.ones(4) * (self.t > 0)]))
        self.t += 1
        return np.r_[self.t, 0, 0, np.tanh(onehot[:5])].astype(np.float32), reward, self.t == 3, False, {}


@pytest.mark.parametrize('name', AGENTS)
def test_every_agent_runs_on_any_env_with_the_search_spaces_and_resumes_exactly(name, env_factory, tmp_path):
    "A run saved after 8 of 16 trajectories, reloaded into a fresh agent, continues with exactly the same records."
    overrides = dict(learning_starts=9, batch_size=16) if name.startswith('sac') else {}
    def fresh(): return make_agent(name, gym.spaces.Box(-np.inf, np.inf, (8,)), gym.spaces.MultiDiscrete(HEADS), seed=5, **overrides)
    def strip(records): return [{k: v for k, v in r.items() if k != 'seconds'} for r in records]   # wall-clock time differs
    full = run_search_on(PlainEnv(), fresh(), trajectories=16, explore_fraction=0.75, seed=1)
    assert {tuple(r['arch']) for r in full if r['terminated']} and all('score' in r for r in full if r['terminated'])
    agent = fresh()
    first = run_search_on(PlainEnv(), agent, trajectories=8, explore_fraction=1.0, seed=1)   # the first 8 of 12 exploring
    save_atomic(dict(agent=agent.state_dict()), tmp_path / 'agent.pt')
    agent2 = fresh()
    agent2.load_state_dict(load_checkpoint(tmp_path / 'agent.pt')['agent'])
    rest = run_search_on(PlainEnv(), agent2, trajectories=16, explore_fraction=0.75, seed=1, start=8)
    assert strip(first + rest) == strip(full)
    ck = load_checkpoint(tmp_path / 'agent.pt')
    env = PlainEnv()
    with pytest.raises(ValueError, match='not the state of'):
        make_agent('random' if name != 'random' else 'sac', env.observation_space, env.action_space).load_state_dict(ck['agent'])


def test_sac_regret_far_below_random_search_at_the_papers_budget():
    "100 trajectories on the surrogate with the calibrated noise: the paper's SAC hands over far better architectures."
    env = SurrogateEnv()
    def regret(name, seed):
        agent = make_agent(name, env.observation_space, env.action_space, seed=seed)
        return env.regret(list(handed_over_architecture(run_search_on(env, agent, 100, seed=seed), name)[0]))
    random_median = np.median([regret('random', seed) for seed in range(20)])
    sac = [regret('sac', seed) for seed in range(3)]
    assert np.median(sac) < 0.75 * random_median, (sac, random_median)
