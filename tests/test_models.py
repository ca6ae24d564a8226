"Layer-for-layer shape checks of the growing and fixed generators and the discriminator, and that choices matter."
import pytest
import torch
from e2gan.searchspace import Architecture, Cell, parse_arch, random_architecture
from e2gan.models import Discriminator, Generator, GeneratorCell, progressive_state, count_parameters


@pytest.mark.parametrize('bottom_width', [4, 6])
def test_every_stage_has_the_right_resolution(bottom_width):
    torch.manual_seed(0)
    G = Generator(gf_dim=8, bottom_width=bottom_width)
    D = Discriminator(df_dim=8)
    z = torch.randn(3, G.latent_dim)
    assert G(z).shape == (3, 3, bottom_width, bottom_width)
    for k, cell in enumerate(parse_arch('autogan-cifar10')):
        G.grow(cell)
        res = bottom_width * 2 ** (k + 1)
        x = G(z)
        assert x.shape == (3, 3, res, res) and x.abs().max() <= 1
        assert D(x, stage=k).shape == (3, 1)
        feats = G.features(z)
        assert [f.shape[-1] for f in feats] == [bottom_width * 2 ** i for i in range(k + 2)]
        assert progressive_state(feats[-1]).shape == (8,)
        assert progressive_state(feats[-1], 'center').shape == (8,)
    with pytest.raises(ValueError): G.grow(Cell())


@pytest.mark.parametrize('bottom_width, res', [(4, 32), (6, 48)])
def test_fixed_generators_for_random_architectures(bottom_width, res):
    torch.manual_seed(0)
    for seed in range(6):
        arch = random_architecture(3, seed)
        G = Generator(arch, gf_dim=8, bottom_width=bottom_width)
        assert G(torch.randn(2, 128)).shape == (2, 3, res, res)
    assert Discriminator(df_dim=8)(torch.randn(2, 3, res, res)).shape == (2, 1)
    grey = Generator('e2gan-cifar10', gf_dim=8, channels=1)
    assert grey(torch.randn(2, 128)).shape == (2, 1, 32, 32)
    assert Discriminator(df_dim=8, channels=1)(torch.randn(2, 1, 32, 32)).shape == (2, 1)


def test_discriminator_grows_block_by_block():
    D = Discriminator(df_dim=8)
    assert [len(D.blocks_for_stage(k)) for k in range(3)] == [2, 3, 4]
    assert D.blocks_for_stage(0)[-1] is D.blocks[3]
    assert [b.downsample for b in D.blocks[1:]] == [True, False, False]
    assert all(hasattr(m, 'parametrizations') for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert D.head.bias is None


def _cell_function(cell, index, seed=0):
    "Output of cell `index` built with `cell`, on fixed input and skip features, with the shared weights fixed by seed."
    torch.manual_seed(seed)
    m = GeneratorCell(cell, index, 8).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 8, 8, 8)
    skips = [torch.randn(2, 8, 16 // 2 ** (index - j), 16 // 2 ** (index - j)) for j in range(index)]
    return m, x, skips


def test_skip_ins_and_shortcuts_change_the_function():
    base = Cell(0, 1, 0, 0, ())
    m, x, skips = _cell_function(base, 2)
    out_base, _ = m(x, skips)
    for variant in [Cell(0, 1, 0, 1, ()), Cell(0, 1, 0, 0, (0,)), Cell(0, 1, 0, 0, (1,)), Cell(0, 1, 0, 0, (0, 1))]:
        mv, _, _ = _cell_function(variant, 2)
        mv.load_state_dict(m.state_dict(), strict=False)   # same blocks; only the extra path differs
        out, _ = mv(x, skips)
        assert out.shape == out_base.shape
        assert not torch.allclose(out, out_base, atol=1e-4), variant
        # and removing the extra path (zeroing its 1x1 conv) gives back the base cell exactly
        for mod in list(mv.skip_in.values()) + ([mv.shortcut] if mv.shortcut is not None else []):
            torch.nn.init.zeros_(mod[-1].weight); torch.nn.init.zeros_(mod[-1].bias)
        assert torch.allclose(mv(x, skips)[0], out_base, atol=1e-6)


def test_skip_handoff_switch():
    cell = Cell(0, 0, 1, 0, (0,))
    m, x, skips = _cell_function(cell, 1)
    _, handoff_public = m(x, skips)
    m.skip_handoff_includes_skips = False
    _, handoff_plain = m(x, skips)
    assert torch.allclose(handoff_public - handoff_plain, m.skip_in['0'](skips[0]), atol=1e-5)


def test_fixed_generator_instantiates_only_what_the_architecture_uses():
    plain = Generator('0 0 0 0 0 0 0 0 0 0 0 0 0 0', gf_dim=16)
    rich = Generator('0 1 2 1 0 1 2 1 1 0 1 2 1 3', gf_dim=16)
    c = 16
    deconv = c * c * 4 + c
    extra = 3 * 2 * (2 * c) + 3 * deconv                   # batch norms (2 per cell, weight and bias) and the 3 main-path deconvs
    extra += 3 * (deconv + c * c + c)                      # shortcuts: deconv + 1x1 conv in each cell
    extra += (deconv + c * c + c) + (2 * deconv + c * c + c) + (deconv + c * c + c)  # skips: 2<-1, 3<-1 (x4), 3<-2
    assert count_parameters(rich) - count_parameters(plain) == extra


def test_growing_equals_building_whole():
    arch = parse_arch('autogan-cifar10')
    torch.manual_seed(3); whole = Generator(arch, gf_dim=8)
    torch.manual_seed(3); grown = Generator(gf_dim=8)
    for cell in arch: grown.grow(cell)
    z = torch.randn(4, 128)
    assert torch.equal(whole(z), grown(z))
