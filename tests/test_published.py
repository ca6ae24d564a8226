"Importing the published checkpoints: the key mapping covers every candidate op, the imported generator computes the public function, bad files fail in one line."
import dataclasses
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as old_spectral_norm
from e2gan.cli import main
from e2gan.models import Discriminator, Generator
from e2gan.published import (convert_discriminator_state, convert_generator_state, generator_key_map, import_checkpoint,
                             public_forward, public_generator_layout, random_public_state)
from e2gan.retrain import load_generator, load_run_checkpoint, retrain
from e2gan.data import load_dataset
from e2gan.searchspace import Architecture, cells_at, parse_arch
from e2gan.utils import CheckpointError


def architectures_covering_every_option():
    "Every choice of every cell (with every skip set) once, the other cells fixed to the E2GAN architecture: 36 + 72 + 144."
    base = parse_arch('e2gan-cifar10').cells
    for i in range(3):
        for cell in cells_at(i): yield Architecture(base[:i] + (cell,) + base[i + 1:])


def test_every_public_key_is_used_or_deliberately_ignored():
    layout = public_generator_layout(gf_dim=2, bottom_width=2, latent_dim=3)
    archs = list(architectures_covering_every_option())
    assert len(archs) == 36 + 72 + 144
    used_somewhere = set()
    for arch in archs:
        keymap = generator_key_map(arch)
        ours = Generator(arch, gf_dim=2, latent_dim=3, bottom_width=2).state_dict()
        assert set(keymap) == set(ours), arch                               # every e2gan tensor has a source
        assert len(set(keymap.values())) == len(keymap), arch               # no public tensor feeds two
        assert all(tuple(ours[k].shape) == layout[v] for k, v in keymap.items()), arch
        state = {k: torch.zeros(s) for k, s in layout.items()}
        _, report = convert_generator_state(state, arch)
        assert set(report['used']) | set(report['ignored']) == set(layout) and not set(report['used']) & set(report['ignored'])
        used_somewhere |= set(report['used'])
    # the only public tensors no architecture uses: the second block's deconv, which the public code builds and never calls
    assert {k for k in layout if k not in used_somewhere} == {k for k in layout if '_conv2.deconv' in k}


@pytest.mark.parametrize('arch', ['e2gan-cifar10', 'autogan-cifar10', '1 2 2 1  1 2 2 1 1  1 1 2 1 3', '0 2 1 0  1 1 0 0 1  0 0 2 1 1'])
def test_imported_generator_computes_the_public_function(arch):
    state = random_public_state(gf_dim=8, bottom_width=2, latent_dim=16, seed=1)
    converted, report = convert_generator_state(state, arch)
    G = Generator(arch, gf_dim=8, latent_dim=16, bottom_width=2).eval()
    G.load_state_dict(converted)
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): assert torch.allclose(G(z), public_forward(state, arch, z), atol=1e-5)
    # eval mode means running statistics: changing them changes the images
    state2 = dict(state, **{'to_rgb.0.running_mean': state['to_rgb.0.running_mean'] + 1})
    with torch.no_grad(): assert not torch.allclose(G(z), public_forward(state2, arch, z), atol=1e-3)


def test_skip_in_resizing_by_size_equals_by_scale_factor():
    "The public code resizes skip-ins to the cell's size; e2gan by the scale factor: the same grid for integer factors."
    x = torch.randn(2, 3, 4, 4)
    for mode in ('bilinear', 'nearest'):
        for f in (2, 4):
            assert torch.equal(F.interpolate(x, size=(4 * f, 4 * f), mode=mode), nn.Upsample(scale_factor=f, mode=mode)(x))


def autogan_discriminator(df_dim: int) -> nn.Module:
    "The public discriminator's layers, with the old torch.nn.utils.spectral_norm, under the public names."
    D = nn.Module()
    for n, (cin, sc) in enumerate([(3, True), (df_dim, True), (df_dim, False), (df_dim, False)], 1):
        block = nn.Module()
        block.c1 = old_spectral_norm(nn.Conv2d(cin, df_dim, 3, padding=1)); block.c2 = old_spectral_norm(nn.Conv2d(df_dim, df_dim, 3, padding=1))
        if sc: block.c_sc = old_spectral_norm(nn.Conv2d(cin, df_dim, 1))
        setattr(D, f'block{n}', block)
    D.l5 = old_spectral_norm(nn.Linear(df_dim, 1, bias=False))
    return D


def autogan_logits(D, x):
    b = D.block1
    h = F.avg_pool2d(b.c2(F.relu(b.c1(x))), 2) + b.c_sc(F.avg_pool2d(x, 2))
    for n in (2, 3, 4):
        b = getattr(D, f'block{n}')
        r, sc = b.c2(F.relu(b.c1(F.relu(h)))), (b.c_sc(h) if hasattr(b, 'c_sc') else h)
        h = F.avg_pool2d(r, 2) + F.avg_pool2d(sc, 2) if n == 2 else r + sc
    return D.l5(F.relu(h).sum((2, 3)))


def test_discriminator_in_the_old_spectral_norm_layout():
    torch.manual_seed(0)
    public = autogan_discriminator(8)
    for _ in range(3): autogan_logits(public, torch.randn(2, 3, 32, 32))   # some power iterations: u, v not at their init
    public.eval()
    converted, widths = convert_discriminator_state(public.state_dict())
    D = Discriminator(df_dim=8).eval(); D.load_state_dict(converted)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad(): assert widths['df_dim'] == 8 and torch.allclose(D(x), autogan_logits(public, x), atol=1e-5)


@pytest.fixture
def published_file(tmp_path):
    "A file as the public code writes it, at tiny widths."
    torch.manual_seed(0)
    ema, raw = random_public_state(seed=1), random_public_state(seed=2)
    path = tmp_path / 'e2gan_cifar10.pth'
    torch.save(dict(epoch=320, avg_gen_state_dict=ema, gen_state_dict=raw, dis_state_dict=autogan_discriminator(8).state_dict(),
                    best_fid=11.26, gen_optimizer={'state': {}, 'param_groups': []}), path)
    return path, ema, raw


def test_import_eval_sample_and_continue(published_file, tmp_path, capsys):
    path, ema, raw = published_file
    out = tmp_path / 'imported.pt'
    assert main(['import-checkpoint', str(path), '--arch', '0 1 0 1 0 1 2 1 0 0 1 0 1 2', '--dataset', 'shapes', '--out', str(out)]) == 0
    assert 'discriminator imported' in capsys.readouterr().out
    ck = load_run_checkpoint(out)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(load_generator(ck)(z), public_forward(ema, 'e2gan-cifar10', z), atol=1e-5)             # eval/sample: EMA
        assert torch.allclose(load_generator(ck, use_ema=False)(z), public_forward(raw, 'e2gan-cifar10', z), atol=1e-5)  # training: raw
    src = ck['source']
    assert (src['weights'], src['epoch'], src['discriminator'], ck['epoch']) == ('avg_gen_state_dict', 320, 'imported', 320)
    assert ck['config'].gf_dim == 8 and ck['config'].df_dim == 8 and ck['config'].bottom_width == 2
    assert main(['sample', '--checkpoint', str(out), '--n', '4', '--out', str(tmp_path / 'grid.png')]) == 0
    # raw weights on request
    assert main(['import-checkpoint', str(path), '--arch', 'e2gan-cifar10', '--weights', 'raw', '--dataset', 'shapes', '--out', str(tmp_path / 'raw.pt')]) == 0
    with torch.no_grad(): assert torch.allclose(load_generator(tmp_path / 'raw.pt')(z), public_forward(raw, 'e2gan-cifar10', z), atol=1e-5)
    # training continues from the imported run: one more epoch, as `e2gan train --out run --resume --epochs 321` would
    run = tmp_path / 'run'; run.mkdir(); (run / 'last.pt').write_bytes(out.read_bytes())
    cfg = dataclasses.replace(ck['config'], epochs=321, eval_every=0, device='cpu')
    with pytest.raises(ValueError, match='cannot resume'): retrain(dataclasses.replace(cfg, num_images=64), run, resume=True, progress=False)
    summary = retrain(cfg, run, resume=True, progress=False, data=load_dataset('shapes', num_images=64, size=16))
    assert summary['epoch'] == 321 and load_run_checkpoint(run / 'last.pt')['trainer']['d_steps'] == 1


def test_eval_prints_the_protocol(published_file, tmp_path, capsys):
    path, _, _ = published_file
    out = tmp_path / 'imported.pt'
    import_checkpoint(path, 'e2gan-cifar10', out, dataset='shapes', num_images=500, backend='classifier')
    np.savez(tmp_path / 'fid_stats.npz', mu=np.zeros(128), sigma=np.eye(128))
    assert main(['eval', '--checkpoint', str(out), '--num-images', '100', '--splits', '5', '--fid-stats', str(tmp_path / 'fid_stats.npz')]) == 0
    text = capsys.readouterr().out
    for part in ('EMA weights of imported.pt (epoch 320); imported from', 'avg_gen_state_dict', '100 images from fixed noise',
                 'over 5 splits', 'statistics file', 'fid_stats.npz', 'resolution: 16x16', 'TF32 off', "classifier"):
        assert part in text, (part, text)
    assert main(['eval', '--checkpoint', str(out), '--num-images', '100', '--splits', '5']) == 0
    assert '500 real images of shapes/train (all of them)' in capsys.readouterr().out
    np.savez(tmp_path / 'wrong.npz', mu=np.zeros(7), sigma=np.eye(7))
    assert main(['eval', '--checkpoint', str(out), '--num-images', '100', '--splits', '5', '--fid-stats', str(tmp_path / 'wrong.npz')]) == 2
    assert '7-d' in capsys.readouterr().err


def one_line_error(capsys, argv, out):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert 'Traceback' not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert not Path(out).exists() and not list(Path(out).parent.glob(Path(out).name + '*'))   # no partial output
    return captured.err


def test_bad_input_fails_in_one_line_without_output(published_file, tmp_path, capsys):
    path, ema, _ = published_file
    out = tmp_path / 'new.pt'
    def run(file, *extra, arch='e2gan-cifar10'):
        return one_line_error(capsys, ['import-checkpoint', str(file), '--arch', arch, '--dataset', 'shapes', '--out', str(out), *extra], out)
    cut = tmp_path / 'cut.pth'; cut.write_bytes(path.read_bytes()[:5000])
    assert 'not a readable PyTorch checkpoint' in run(cut)
    text = tmp_path / 'notes.pth'; text.write_text('not a checkpoint')
    assert 'not a readable PyTorch checkpoint' in run(text)
    pickled = tmp_path / 'code.pth'; torch.save(dict(avg_gen_state_dict=ema, hook=Path('x')), pickled)   # an object a safe load refuses
    assert 'weights_only' in run(pickled)
    err = run(path, '--gf-dim', '16')
    assert 'l1.weight has shape (32, 16)' in err and 'need (64, 16)' in err and '--gf-dim 8 --bottom-width 2' in err
    err = run(path, '--bottom-width', '4')
    assert 'l1.weight has shape (32, 16)' in err and 'need (128, 16)' in err
    pruned = tmp_path / 'pruned.pth'; torch.save({k: v for k, v in ema.items() if not k.startswith('cell3.skip_in_ops.1')}, pruned)
    assert 'lacks 2 tensors' in run(pruned, arch='0 1 0 1 0 1 2 1 0 0 1 0 1 3') and 'cell3.skip_in_ops.1.weight' in run(pruned, arch='0 1 0 1 0 1 2 1 0 0 1 0 1 1')
    foreign = tmp_path / 'foreign.pth'; torch.save(dict(avg_gen_state_dict=dict(ema, **{'cell1.c1.weight': torch.zeros(1)})), foreign)
    assert 'does not have (cell1.c1.weight)' in run(foreign)
    only_ema = tmp_path / 'ema.pth'; torch.save(dict(avg_gen_state_dict=ema), only_ema)
    assert '--weights ema' in run(only_ema, '--weights', 'raw')
    # an architecture that needs a key the bare state dict lacks still fails after the legal ones pass
    assert main(['import-checkpoint', str(only_ema), '--arch', 'e2gan-cifar10', '--dataset', 'shapes', '--out', str(out)]) == 0
    assert 'exists' in one_line_error(capsys, ['import-checkpoint', str(only_ema), '--arch', 'e2gan-cifar10', '--out', str(tmp_path / 'ema.pth')], tmp_path / 'nothing')
