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
