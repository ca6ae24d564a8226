"SAC agents: losses match their equations, the schedule of Algorithm 1, the active heads of the search space, exact resume and policy hand-over."
import itertools, math
import numpy as np
import pytest
import torch
import gymnasium as gym
from e2gan.utils import save_atomic, load_checkpoint
from e2gan.surrogate import SurrogateEnv
from e2gan.searchspace import active_heads, action_head_sizes
from e2gan.agent import ReplayBuffer, active_head_mask
from e2gan.loop import run_loop
from e2gan.sac import (GaussianSAC, CategoricalSAC, SACConfig, SAC_PRESETS, joint_actions, joint_probs, head_entropies,
                       depth_of)

HEADS = (2, 3, 3, 2, 2, 2)


@pytest.fixture(scope='module')
def env_factory():
    SurrogateEnv(state_dim=16)          # builds (and caches) the landscape once
    return lambda **kw: SurrogateEnv(state_dim=16, **kw)


def make(name, env, seed=0, **overrides):
    cls, preset = SAC_PRESETS[name]
    return cls(env.observation_space, env.action_space, SACConfig(**{**preset, **overrides}), seed=seed)


def run(env, agent, trajectories, explore_until, seed=0, start=0):
    "Trajectories `start`.. of a search whose first `explore_until` explore, through the search loop itself."
    return run_loop(env, agent, trajectories, explore_fraction=explore_until / trajectories, seed=seed, start=start)


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
    buf = ReplayBuffer(obs_dim=3, act_dim=2, capacity=400)
    for t in range(300): buf.add(np.full(3, t), [t, -t], float(t), np.full(3, t + 1), t % 3 == 2)
    copy = ReplayBuffer(obs_dim=3, act_dim=2)
    copy.load_state_dict(buf.state_dict())
    assert len(copy) == 300 and all(torch.equal(copy.data[k][:300], buf.data[k][:300]) for k in buf.data)
    for t in range(150): copy.add(np.zeros(3), [0, 0], 0.0, np.zeros(3), False)   # grows to capacity, then overwrites the oldest
    assert len(copy) == 400 and copy.data['reward'][49] == 0.0 and copy.data['reward'][50] == 50.0


def test_categorical_expectations_are_exact_sums_over_all_joint_actions(env_factory):
    env = env_factory()
    agent = make('sac-categorical', env)
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


@pytest.mark.parametrize('n_cells', [1, 2, 3])
def test_sac_uses_the_active_heads_of_the_search_space(n_cells):
    "The critic's unit mask, the entropy mask and the critic's values follow `searchspace.active_heads` at every depth."
    heads = action_head_sizes(n_cells)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,))
    agent = CategoricalSAC(obs_space, heads, SACConfig(hidden=16), seed=0)
    joint = joint_actions(heads)
    radix = torch.tensor([math.prod(heads[h + 1:]) for h in range(len(heads))])    # row of a joint action in `joint`
    for t in range(n_cells):
        rule = torch.tensor(active_heads(t, n_cells))
        assert torch.equal(active_head_mask(heads)[t], rule) and torch.equal(agent.active[t], rule.float())
        assert torch.equal(agent.q1.unit_active[t], rule.repeat_interleave(torch.tensor(heads)).float())
        assert agent.max_entropy[t].item() == pytest.approx(sum(math.log(n) for n, a in zip(heads, rule) if a))
        obs = torch.tensor([[float(t), 1.0, 0.5, 0.2, -0.3]])
        q = agent.q1.q_all(obs, depth_of(obs, n_cells))[0]
        canonical = joint * rule                                                   # inactive heads set to option 0
        torch.testing.assert_close(q, q[(canonical * radix).sum(1)])               # their setting does not matter


def test_gaussian_log_prob_is_the_tanh_change_of_variables(env_factory):
    env = env_factory()
    agent = make('sac', env)
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
    agent = make(name, env, learning_starts=8, batch_size=8)
    run(env, agent, trajectories=3, explore_until=3)
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


def test_gaussian_losses_are_eq_6_to_8_computed_by_hand(env_factory):
    env = env_factory()
    agent = make('sac', env, learning_starts=4)
    run(env, agent, trajectories=2, explore_until=2)
    b = agent.buffer.sample(6, torch.Generator().manual_seed(0))
    state = agent.generator.get_state()
    eps1, eps2 = (torch.randn(6, 14, generator=agent.generator) for _ in range(2))   # the draws the losses make, in order
    agent.generator.set_state(state)
    beta = 0.1
    with torch.no_grad():
        a2, logp2 = agent.actor.sample(b['next_obs'], eps1)
        y = b['reward'] + (1 - b['done']) * (torch.min(agent.q1_target(b['next_obs'], a2), agent.q2_target(b['next_obs'], a2)) - beta * logp2)
    ref_critic = 0.5 * ((agent.q1(b['obs'], b['action']) - y) ** 2).mean() + 0.5 * ((agent.q2(b['obs'], b['action']) - y) ** 2).mean()
    a, logp = agent.actor.sample(b['obs'], eps2)
    ref_actor = (beta * logp - torch.min(agent.q1(b['obs'], a), agent.q2(b['obs'], a))).mean()
    torch.testing.assert_close(agent.critic_loss(b), ref_critic)
    actor_loss, entropy = agent.actor_loss(b)
    torch.testing.assert_close(actor_loss, ref_actor)
    torch.testing.assert_close(entropy, -logp.detach())


def test_critic_regresses_on_the_terminal_reward_without_bootstrapping(env_factory):
    "With done = 1 the target is the reward alone: a critic trained on one terminal transition predicts its reward."
    env = env_factory()
    agent = CategoricalSAC(env.observation_space, env.action_space, SACConfig(critic_lr=1e-2), seed=0)
    obs = observations(env, 3)[2].numpy()
    action = np.array([1, 2, 0, 1, 1, 0])
    agent.record(obs, action, 0.7, obs * 0 + 1e6, True)   # a nonsense next state must not matter
    for _ in range(300): agent._update(1)
    q = agent.q1(torch.tensor(obs)[None], depth_of(torch.tensor(obs)[None], 3), torch.tensor(action)[None])
    assert q.item() == pytest.approx(0.7, abs=0.02)


def test_update_schedule_of_algorithm_1(env_factory):
    "Updates start at 64 transitions; 1 per step exploring, 10 exploiting; one full-buffer update per trajectory."
    env = env_factory()
    agent = make('sac', env)
    sizes = []
    sample = agent.buffer.sample
    agent.buffer.sample = lambda n, g: sizes.append(n) or sample(n, g)
    records = run(env, agent, trajectories=30, explore_until=24)
    assert sum(r['explore'] for r in records) == 72
    expected = []
    for r in records:
        n = 3 * r['trajectory'] + r['step'] + 1                 # transitions in the buffer after this step
        if n >= 64: expected += [min(n, 256)] * (1 if r['explore'] else 10)
        if r['terminated'] and n >= 64: expected.append(n)    # the full-buffer update
    assert sizes == expected and agent.n_updates == len(expected)


def test_deterministic_actions_are_tanh_mean_and_argmax(env_factory):
    env = env_factory()
    obs = observations(env, 3)[1].numpy()
    g = make('sac', env)
    np.testing.assert_allclose(g.act(obs, explore=False), torch.tanh(g.actor(torch.tensor(obs)[None])[0][0]).detach().numpy())
    assert not np.allclose(g.act(obs, explore=True), g.act(obs, explore=True))
    c = make('sac-categorical', env)
    greedy = [lp[0].argmax().item() for lp in c.actor(torch.tensor(obs)[None])]
    assert c.act(obs, explore=False).tolist() == greedy == c.act(obs, explore=False).tolist()


@pytest.mark.parametrize('name', ['sac', 'sac-categorical'])
def test_each_sac_agent_saves_and_resumes_exactly(env_factory, name, tmp_path):
    env = env_factory()
    agent = make(name, env, normalize_obs=True, learning_starts=16)
    run(env, agent, trajectories=8, explore_until=6)
    path = save_atomic(agent.state_dict(), tmp_path / 'agent.pt')
    clone = make(name, env, seed=99, normalize_obs=True, learning_starts=16)
    clone.load_state_dict(load_checkpoint(path))
    ours, theirs = run(env, agent, 12, 6, start=8), run(env, clone, 12, 6, start=8)
    untimed = lambda r: {k: v for k, v in r.items() if k != 'seconds'}      # wall-clock time differs, nothing else may
    assert [untimed(r) for r in ours] == [untimed(r) for r in theirs]
    assert 'critic_loss' in ours[-1] and 'trajectory_critic_loss' in ours[-1]
    assert clone.n_updates == agent.n_updates and torch.equal(clone.log_temperature, agent.log_temperature)


def test_a_state_of_one_sac_class_does_not_load_into_the_other(env_factory):
    env = env_factory()
    g, c = make('sac', env), make('sac-categorical', env)
    with pytest.raises(ValueError, match=r"SAC agent 'sac', this is 'sac-categorical' \(CategoricalSAC\)"):
        c.load_state_dict(g.state_dict())
    with pytest.raises(ValueError, match=r"'sac-categorical', this is 'sac' \(GaussianSAC\)"):
        g.load_policy_state(c.policy_state())
    with pytest.raises(ValueError, match='config'):
        make('sac', env, hidden=64).load_state_dict(g.state_dict())


@pytest.mark.parametrize('name', ['sac', 'sac-categorical'])
def test_policy_state_makes_a_fresh_agent_act_identically(env_factory, name):
    env = env_factory()
    agent = make(name, env, normalize_obs=True, learning_starts=16)
    run(env, agent, trajectories=8, explore_until=8)
    worker = make(name, env, seed=5, normalize_obs=True, learning_starts=16)
    state = agent.policy_state()
    assert set(state) == {'kind', 'name', 'head_sizes', 'obs_dim', 'actor', 'norm'}
    assert all(v.device.type == 'cpu' for part in ('actor', 'norm') for v in state[part].values())
    obs = observations(env, 6, seed=1).numpy()
    assert not all(np.array_equal(worker.act(o, False), agent.act(o, False)) for o in obs)   # before: a different policy
    worker.load_policy_state(state)
    assert all(np.array_equal(worker.act(o, False), agent.act(o, False)) for o in obs)
    worker.generator.set_state(agent.generator.get_state())
    assert all(np.array_equal(worker.act(o, True), agent.act(o, True)) for o in obs)
    assert len(worker.buffer) == 0 and worker.n_updates == 0                 # only the policy travelled


# --- every term of Eq. 6-8, computed independently of the code path under test --------------------------------------
# Every addition of this project is switched on (gamma < 1, reward scaling, observation normalisation, a temperature
# other than the default), so that a wrong or missing term changes the loss. The references below use none of the
# agents' vectorised helpers (q_all, joint_probs, head_entropies, RunningNorm, reward_scale): plain loops, the
# per-action critic call and NumPy statistics of what the agent recorded.

ACTIVE = {0: [1, 1, 1, 1, 0, 0], 1: [1, 1, 1, 1, 1, 0], 2: [1, 1, 1, 1, 1, 1]}   # cell t has a skip-in head per earlier cell but the first
ALL_ON = dict(gamma=0.9, scale_rewards=True, normalize_obs=True, temperature=0.3, learning_starts=4)


def filled(name, env_factory, **overrides):
    "An agent of `name` whose buffer holds three random trajectories, and a minibatch of six of its transitions."
    env = env_factory()
    agent = make(name, env, **{**ALL_ON, **overrides})
    for i in range(3):
        obs, _ = env.reset(seed=i); done = False
        while not done:
            action = agent.act(obs, explore=True)
            nxt, r, done, _, _ = env.step(action if name != 'sac' else np.array([int(np.argmax(a)) for a in np.split(action, np.cumsum(HEADS)[:-1])]))
            agent.record(obs, action, r, nxt, done); obs = nxt
    return agent, agent.buffer.sample(6, torch.Generator().manual_seed(1))


def reference_statistics(agent):
    "Observation mean/std and reward std of everything recorded, by NumPy (sample std, as the agent documents)."
    n = len(agent.buffer)
    obs = agent.buffer.data['obs'][:n].double().numpy(); rewards = agent.buffer.data['reward'][:n].double().numpy()
    mean, std = obs.mean(0), np.maximum(obs.std(0, ddof=1), 1e-3)
    normalise = lambda x: ((x.double() - torch.from_numpy(mean)) / torch.from_numpy(std)).float()
    return normalise, max(float(np.std(rewards, ddof=1)), 1e-6)


def categorical_soft_value(agent, critics, obs_raw, normalise, beta):
    "sum_a pi(a|s) min_i Q_i(s, a) + beta H(pi(.|s)) for each state, by enumerating the 144 joint actions one state at a time."
    joint = torch.tensor(list(itertools.product(*(range(n) for n in HEADS))))
    values = []
    for s_raw in obs_raw:
        s, depth = normalise(s_raw[None]), min(int(round(float(s_raw[0]))), 2)   # a final state (depth 3): its value is masked by done
        probs = [torch.softmax(l, -1)[0] for l in agent.actor.body(s).split(HEADS, -1)]
        pi = torch.tensor([math.prod(float(probs[h][a[h]]) for h in range(len(HEADS))) for a in joint.tolist()])
        q = torch.min(*(c(s.expand(len(joint), -1), torch.full((len(joint),), depth), joint) for c in critics))
        entropy = sum(float(-(probs[h] * probs[h].log()).sum()) for h in range(len(HEADS)) if ACTIVE[depth][h])
        values.append(float((pi * q).sum()) + beta * entropy)
    return torch.tensor(values)


@torch.no_grad()
def test_categorical_critic_loss_is_eq_6_7_by_hand(env_factory):
    agent, b = filled('sac-categorical', env_factory)
    normalise, reward_std = reference_statistics(agent)
    beta, gamma = agent.temperature, 0.9
    v_next = categorical_soft_value(agent, (agent.q1_target, agent.q2_target), b['next_obs'], normalise, beta)
    y = b['reward'] / reward_std + gamma * (1 - b['done']) * v_next
    depth = torch.tensor([int(round(float(o[0]))) for o in b['obs']])          # states acted in: depth 0..2
    q1, q2 = (c(normalise(b['obs']), depth, b['action'].long()) for c in (agent.q1, agent.q2))
    reference = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
    assert b['done'].any() and not b['done'].all()                # both kinds of transition are in the minibatch
    torch.testing.assert_close(agent.critic_loss(b), reference.float(), rtol=1e-5, atol=1e-5)


def test_categorical_actor_loss_is_eq_8_by_hand(env_factory):
    agent, b = filled('sac-categorical', env_factory)
    normalise, _ = reference_statistics(agent)
    beta = agent.temperature
    with torch.no_grad():       # E_pi[min Q] (beta 0), and H alone (critics that return 0, beta 1)
        value = categorical_soft_value(agent, (agent.q1, agent.q2), b['obs'], normalise, 0.0)
        entropy = categorical_soft_value(agent, (lambda s, d, a: torch.zeros(len(a)),) * 2, b['obs'], normalise, 1.0)
    loss, returned_entropy = agent.actor_loss(b)
    torch.testing.assert_close(loss, (-value - beta * entropy).mean().float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(returned_entropy, entropy.float(), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_gaussian_critic_target_with_gamma_scaling_and_normalisation_by_hand(env_factory):
    agent, b = filled('sac', env_factory)
    normalise, reward_std = reference_statistics(agent)
    beta, gamma = agent.temperature, 0.9
    state = agent.generator.get_state()
    eps = torch.randn(6, 14, generator=agent.generator)                   # the draw the critic loss makes
    agent.generator.set_state(state)
    s2 = normalise(b['next_obs'])
    mu, log_std = agent.actor(s2)
    dist = torch.distributions.TransformedDistribution(torch.distributions.Normal(mu, log_std.exp()),
                                                       torch.distributions.transforms.TanhTransform())
    a2 = torch.tanh(mu + log_std.exp() * eps)
    logp = dist.log_prob(a2.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    v_next = torch.min(agent.q1_target(s2, a2), agent.q2_target(s2, a2)) - beta * logp
    y = b['reward'] / reward_std + gamma * (1 - b['done']) * v_next
    s = normalise(b['obs'])
    reference = 0.5 * ((agent.q1(s, b['action']) - y) ** 2).mean() + 0.5 * ((agent.q2(s, b['action']) - y) ** 2).mean()
    torch.testing.assert_close(agent.critic_loss(b), reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('target, direction', [(1.0, +1), (0.05, -1)])
def test_the_tuned_temperature_rises_below_its_target_entropy_and_falls_above(env_factory, target, direction):
    "Target = the maximum entropy: the policy is always below it, beta must rise; a tiny target: beta must fall. Adam's first step is lr."
    agent, _ = filled('sac-categorical', env_factory, autotune=True, target_entropy=target)
    before = float(agent.log_temperature.detach())
    agent._update(8)
    step = float(agent.log_temperature.detach()) - before
    assert np.sign(step) == direction and abs(step) == pytest.approx(agent.config.temperature_lr, rel=1e-3)


def test_running_normalisation_and_reward_scale_are_the_sample_statistics(env_factory):
    agent, _ = filled('sac-categorical', env_factory)
    n = len(agent.buffer)
    obs = agent.buffer.data['obs'][:n].double().numpy()
    np.testing.assert_allclose(agent.norm.mean.numpy(), obs.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose((agent.norm.m2 / (agent.norm.count - 1)).numpy(), obs.var(0, ddof=1), rtol=1e-7, atol=1e-9)
    rewards = agent.buffer.data['reward'][:n].double().numpy()
    assert float(agent.reward_scale()) == pytest.approx(np.std(rewards, ddof=1), rel=1e-5)


def test_option_values_read_the_depth_from_the_raw_observation(env_factory):
    "With observation normalisation on, the depth (entry 0) must be read before normalising: beliefs at depth t are Q at depth t."
    agent, _ = filled('sac-categorical', env_factory)
    obs = next(o for o in agent.buffer.data['obs'][:len(agent.buffer)].numpy() if o[0] == 2)   # the third cell's state
    depth = 2
    o = agent._obs(obs)
    with torch.no_grad():
        q = torch.min(agent.q1.q_all(o, torch.tensor([depth])), agent.q2.q_all(o, torch.tensor([depth])))[0]
    values = agent.option_values(obs)
    assert abs(float(o[0, 0]) - depth) > 0.5                               # normalising moved entry 0 away from the depth
    greedy = [int(lp[0].argmax()) for lp in agent.actor(o)]
    joint = joint_actions(HEADS).tolist()
    for k in range(HEADS[0]):                                              # head 0's options, the other heads greedy
        assert float(values[0][k]) == pytest.approx(float(q[joint.index([k] + greedy[1:])]), abs=1e-5)


@pytest.mark.parametrize('name', ['sac', 'sac-categorical'])
def test_networks_have_the_configured_width_depth_and_bounds(env_factory, name):
    "hidden, n_layers and log_std_bounds reach every network (a mutation testing run found them unchecked)."
    env = env_factory()
    agent = make(name, env, hidden=24, n_layers=3, log_std_bounds=(-3.0, 1.0))
    bodies = [agent.actor.body] + [getattr(q, 'net', None) or q.state_tower for q in (agent.q1, agent.q2)]
    for body in bodies:
        linears = [m for m in body if isinstance(m, torch.nn.Linear)]
        assert len(linears) == 4 and all(m.out_features == 24 for m in linears[:-1])
    if name == 'sac':
        assert agent.actor.log_std_bounds == (-3.0, 1.0)
        obs = observations(env, 4)
        with torch.no_grad(): agent.actor.body[-1].bias.fill_(50.0)            # a log std far above the bound is clamped
        assert agent.actor(obs)[1].max().item() == 1.0
