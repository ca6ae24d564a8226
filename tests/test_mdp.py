"GanSearchEnv: the MDP over real proxy training on `shapes`, at tiny widths."
import math
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from e2gan.mdp import ContinuousActions, GanSearchEnv, ProxyTaskConfig, decode_logits
from e2gan.searchspace import action_from_cell, parse_arch
from e2gan.training import GanConfig

ARCH = parse_arch('e2gan-cifar10')


def tiny_config(**kw):
    base = dict(num_images=256, reference_images=1000, bottom_width=2, gf_dim=8, df_dim=8, latent_dim=16,
                eval_images=200, eval_splits=2, gan=GanConfig(d_batch=32, g_batch=32))
    return ProxyTaskConfig(**{**base, **kw})


@pytest.fixture(scope='module')
def env():
    return GanSearchEnv(tiny_config(), device='cpu')


def run(env, seed, arch=ARCH):
    obs, info = env.reset(seed=seed)
    trace = [(obs, None, info)]
    for cell in arch:
        obs, reward, terminated, truncated, info = env.step(action_from_cell(cell))
        trace.append((obs, reward, info))
    assert terminated and not truncated
    return trace


def test_check_env_passes_on_the_env_and_its_continuous_form(env):
    check_env(env, skip_render_check=True)
    check_env(ContinuousActions(env), skip_render_check=True)


def test_a_trajectory_rewards_are_the_differences_of_the_reported_scores(env):
    trace = run(env, seed=0)
    for (o0, _, i0), (o1, r, i1) in zip(trace, trace[1:]):
        assert r == pytest.approx(i1['is'] - i0['is'] + env.alpha * (i0['fid'] - i1['fid']), rel=1e-9, abs=1e-9)
        assert o1[0] == o0[0] + 1                                        # depth
        assert o1[1] == pytest.approx(i1['is'], rel=1e-6)                # IS
        assert o1[2] == pytest.approx(env.fid_scale * i1['fid'], rel=1e-6)
        assert o1.shape == (3 + env.state_dim,) and o1.dtype == np.float32
        assert not i1['diverged'] and math.isfinite(i1['d_loss']) and i1['train_seconds'] > 0
    final = trace[-1][2]
    assert final['arch'] == ARCH.to_vector() and final['description'] == ARCH.describe()
    assert [s.shape[-1] for s in final['samples']] == [2, 4, 8, 16]     # every stage, at its own resolution
    # the rewards telescope to the change of the final score (Eq. 5)
    total = sum(r for _, r, _ in trace[1:])
    first, last = trace[0][2], trace[-1][2]
    assert total == pytest.approx((last['is'] - env.alpha * last['fid']) - (first['is'] - env.alpha * first['fid']))


def test_the_same_seed_reproduces_the_trajectory_and_reset_starts_afresh(env):
    a, b = run(env, seed=3), run(env, seed=3)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ia['is'] == ib['is'] and ia['fid'] == ib['fid']
    env.reset(seed=3)
    w3 = env.G.stem.weight.detach().clone()
    env.step(action_from_cell(ARCH[0]))
    assert not torch.equal(env.G.stem.weight, w3)                       # training moved the weights ...
    env.reset(seed=3)
    assert torch.equal(env.G.stem.weight, w3) and env.G.depth == 0      # ... and reset gives fresh ones
    assert env.trainer.g_steps == 0 and not env.trainer.g_opt.state     # with fresh optimizers
    env.reset(seed=4)
    assert not torch.equal(env.G.stem.weight, w3)


@pytest.mark.parametrize('broken', ['nan', 'huge'])
def test_a_diverging_step_ends_the_episode_with_the_penalty(monkeypatch, broken):
    "A deterministic trigger from the second cell on (not a CPU's rounding): the D loss becomes NaN, or finite but 1e6 times too large."
    import e2gan.training
    healthy, calls = e2gan.training.hinge_d_loss, []
    def hinge_d_loss(real, fake):
        loss = healthy(real, fake)
        if env.G.depth <= 1: return loss                           # the first cell trains normally
        calls.append(1)
        return loss * float('nan') if broken == 'nan' else loss * 1e6 + 1e6
    monkeypatch.setattr(e2gan.training, 'hinge_d_loss', hinge_d_loss)
    env = GanSearchEnv(tiny_config(divergence_penalty=-7.0), device='cpu')
    env.reset(seed=0)
    obs, r, terminated, _, info = env.step(action_from_cell(ARCH[0]))
    assert not info['diverged'] and not terminated and r != -7.0
    obs, r, terminated, truncated, info = env.step(action_from_cell(ARCH[1]))
    assert calls and info['diverged'] and r == -7.0 and terminated and not truncated
    assert np.all(np.isfinite(obs))
    with pytest.raises(RuntimeError): env.step(action_from_cell(ARCH[2]))


def test_continuous_actions_decode_by_argmax_per_head():
    logits = np.full(14, -1.0, dtype=np.float32)
    logits[[1, 2 + 2, 5 + 2, 8 + 1, 10 + 0, 12 + 1]] = 1.0
    assert decode_logits(logits, (2, 3, 3, 2, 2, 2)).tolist() == [1, 2, 2, 1, 0, 1]
    with pytest.raises(ValueError): decode_logits(logits[:13], (2, 3, 3, 2, 2, 2))
