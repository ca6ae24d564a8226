"The one GAN training step: the EMA of the generator follows its formula, with and without warm-up."
import copy
import pytest
import torch
from e2gan.models import Generator, Discriminator
from e2gan.training import GanConfig, GanTrainer


def tiny_trainer(**gan):
    torch.manual_seed(0)
    G, D = Generator('e2gan-cifar10', gf_dim=8, latent_dim=16, bottom_width=2), Discriminator(df_dim=8)
    return GanTrainer(G, D, GanConfig(d_batch=4, g_batch=4, **gan), device='cpu',
                      generator=torch.Generator().manual_seed(0))


def flat(module): return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize('warmup', [False, True])
def test_ema_is_the_recurrence_over_the_generator_steps(warmup):
    t, d = tiny_trainer(ema_decay=0.99, ema_warmup=warmup), 0.99
    expected = flat(t.G)
    for n in range(1, 31):
        t.g_step(None)
        d_n = min(d, (1 + n) / (10 + n)) if warmup else d
        expected = d_n * expected + (1 - d_n) * flat(t.G)
    assert torch.allclose(flat(t.ema), expected, atol=1e-6)


def test_warmup_lets_a_short_run_forget_the_untrained_generator():
    runs = {w: tiny_trainer(ema_decay=0.999, ema_warmup=w) for w in (False, True)}
    start = flat(runs[False].G).clone()
    for t in runs.values():
        for _ in range(40): t.g_step(None)
    assert torch.equal(flat(runs[False].G), flat(runs[True].G))            # the EMA does not touch training
    dist = {w: ((flat(t.ema) - flat(t.G)).norm() / (start - flat(t.G)).norm()).item() for w, t in runs.items()}
    assert dist[False] > 0.9 and dist[True] < 0.5                            # 0.999^40 = 0.96 of the start remains
    assert runs[True].ema_decay() == pytest.approx(41 / 50)


# --- the losses and the schedule (issue 11) -------------------------------------------------------------------------
from e2gan.training import hinge_d_loss, hinge_g_loss
from e2gan.searchspace import parse_arch
from e2gan.utils import derived_seed


def test_hinge_losses_follow_their_formulas():
    real, fake = [0.5, 2.0, -1.0, 1.0], [-3.0, 0.0, 0.25, -1.0]
    d = sum(max(0, 1 - r) for r in real) / 4 + sum(max(0, 1 + f) for f in fake) / 4   # (0.5+0+2+0)/4 + (0+1+1.25+0)/4
    assert hinge_d_loss(torch.tensor(real), torch.tensor(fake)).item() == pytest.approx(d) == pytest.approx(1.1875)
    assert hinge_g_loss(torch.tensor(fake)).item() == pytest.approx(-sum(fake) / 4)
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(64, 1, generator=g), torch.randn(64, 1, generator=g)
    assert torch.allclose(hinge_d_loss(r, f), torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean())


@pytest.mark.parametrize('n_critic, per_epoch', [(1, [(8, 8), (8, 8)]), (3, [(8, 2), (8, 3)]), (5, [(8, 1), (8, 2)])])
def test_n_critic_schedule_counts_over_the_run(n_critic, per_epoch):
    t = tiny_trainer(n_critic=n_critic)
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    stats = [t.train_epoch(images) for _ in range(2)]                   # 32 images / batch 4 = 8 D steps per epoch
    assert [(s.d_steps, s.g_steps) for s in stats] == per_epoch
    assert (t.d_steps, t.g_steps) == (16, 16 // n_critic)


# --- the cost of a step (issue 16) ----------------------------------------------------------------------------------

def spectral_norms(D): return [m for m in D.modules() if type(m).__name__ == '_SpectralNorm']


@pytest.mark.parametrize('joint, iterations', [(True, 1), (False, 2)])
def test_joint_d_forward_runs_one_power_iteration_per_d_step(joint, iterations):
    t = tiny_trainer(joint_d_forward=joint)
    calls = []
    for m in spectral_norms(t.D): m.register_forward_hook(lambda *a: calls.append(1))
    t.D.train(); t.d_step(torch.rand(4, 3, 16, 16) * 2 - 1, None)
    assert len(calls) == iterations * len(spectral_norms(t.D))


def test_joint_and_separate_d_steps_differ_only_by_the_power_iteration():
    "With the spectral-norm estimates frozen (eval mode), the joint call gives the two calls' loss and gradients."
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    out = {}
    for joint in (True, False):
        t = tiny_trainer(joint_d_forward=joint); t.D.eval()
        t.d_opt.step = lambda: None                                      # keep the weights, read the gradients
        loss = t.d_step(real, None)
        out[joint] = (loss, [p.grad.clone() for p in t.D.parameters()])
    assert torch.allclose(out[True][0], out[False][0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out[True][1], out[False][1]))


def test_d_is_frozen_in_the_g_step_and_g_gets_the_same_gradient():
    t = tiny_trainer(); t.D.eval()                                       # spectral-norm estimates fixed for the comparison
    grads = {}
    for frozen in (True, False):
        t.rng.manual_seed(1)
        for p in t.D.parameters(): p.grad = None
        t.g_opt.step = lambda: None
        if frozen: t.g_step(None)
        else:                                                            # the published step: D's weights get gradients
            loss = hinge_g_loss(t.D(t.G(t._noise(t.config.g_batch)), None)); t.g_opt.zero_grad(); loss.backward()
        grads[frozen] = [p.grad.clone() for p in t.G.parameters()]
        if frozen: assert all(p.grad is None and p.requires_grad for p in t.D.parameters())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[True], grads[False]))


def grow_trajectory(one_group: bool, **gan) -> GanTrainer:
    torch.manual_seed(0)
    G, D = Generator(n_cells=3, gf_dim=8, latent_dim=16, bottom_width=2), Discriminator(df_dim=8)
    t = GanTrainer(G, D, GanConfig(d_batch=8, g_batch=8, n_critic=2, **gan), device='cpu', generator=torch.Generator().manual_seed(0))
    if not one_group: t.g_opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9))
    for k, cell in enumerate(parse_arch('e2gan-cifar10').cells):
        before = {id(p): {n: v.clone() for n, v in t.g_opt.state[p].items()} for p in G.parameters() if p in t.g_opt.state}
        new = G.grow(cell)
        if one_group: t.add_generator_params(new)
        else: t.g_opt.add_param_group(dict(params=new))
        for p in G.parameters():                                         # growing keeps the Adam state of the older cells
            if id(p) in before: assert all(torch.equal(v, t.g_opt.state[p][n]) for n, v in before[id(p)].items())
        t.train_epoch(torch.randint(0, 256, (32, 3, G.resolution, G.resolution), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(k)), stage=k)
    return t


def test_one_foreach_adam_group_trains_a_growing_generator_as_a_group_per_cell_did():
    a, b = grow_trajectory(True), grow_trajectory(False)
    assert len(a.g_opt.param_groups) == 1 and a.g_opt.param_groups[0]['foreach'] and len(b.g_opt.param_groups) == 4
    assert {id(p) for p in a.g_opt.param_groups[0]['params']} == {id(p) for p in a.G.parameters()}
    assert all(torch.equal(p, q) for p, q in zip(a.G.parameters(), b.G.parameters()))
    assert len(a.d_opt.param_groups) == 1 and a.d_opt.param_groups[0]['foreach']


def test_grown_cells_get_the_channels_last_layout(monkeypatch):
    "channels_last applies on CUDA only; pretend this CPU is one to check the layout of cells grown after the start."
    monkeypatch.setattr(GanTrainer, '_channels_last', lambda self: True)
    t = grow_trajectory(True, channels_last=True)
    convs = [p for p in t.G.parameters() if p.dim() == 4]
    assert len(convs) > 10 and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in t.D.parameters() if p.dim() == 4)
    monkeypatch.setattr(GanTrainer, '_channels_last', lambda self: False)
    plain = grow_trajectory(True, channels_last=True)                   # the switch off (a CPU): the cells stay NCHW
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in plain.G.cells.parameters() if p.dim() == 4)


# --- resuming on another device type (issue 16) ---------------------------------------------------------------------

def test_state_round_trip_continues_exactly():
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = tiny_trainer(ema_decay=0.9); a.train_epoch(images)
    state = copy.deepcopy(a.state_dict())
    assert state['rng']['device'] == 'cpu'
    b = tiny_trainer(ema_decay=0.9); assert b.load_state_dict(state) == []
    a.train_epoch(images); b.train_epoch(images)
    assert torch.equal(flat(a.G), flat(b.G)) and torch.equal(flat(a.ema), flat(b.ema))


@pytest.mark.parametrize('bare', [False, True])
def test_a_state_saved_on_cuda_resumes_on_the_cpu_reseeded(bare):
    philox = torch.tensor([3] + [0] * 7 + [12] + [0] * 7, dtype=torch.uint8)   # a CUDA generator's state: seed, offset
    state = tiny_trainer().state_dict()
    state['rng'] = philox if bare else dict(device='cuda', state=philox)
    draws = []
    for _ in range(2):
        t = tiny_trainer()
        with pytest.warns(UserWarning, match='saved on cuda cannot be restored on cpu'): notes = t.load_state_dict(state)
        assert len(notes) == 1 and 're-seeded' in notes[0]
        draws.append(t._noise(3))
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], torch.randn(3, 16, generator=torch.Generator().manual_seed(derived_seed(philox))))
