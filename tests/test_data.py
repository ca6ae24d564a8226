"Tests of e2gan.data: the data sets, their stage resolutions, minibatches and the errors for missing data."
import gzip, socket, struct, warnings
import numpy as np
import pytest
import torch
from PIL import Image

import e2gan.data as data
from e2gan.data import (DATASETS, DataError, ImageDataset, SHAPES_CLASSES, FASHION_MNIST_SYSTEM_DIR, default_data_root,
                        load_dataset, make_shapes, read_idx, resize_images, sample_batches, stage_resolutions,
                        to_float, to_uint8)

STAGES = stage_resolutions()  # [8, 16, 32]


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


def _blocky(rng, n, h, w, channels=None):
    "Random images made of big dark and bright blocks (so they keep their contrast when shrunk to 8x8)."
    shape = (n, 4, 4) if channels is None else (n, 4, 4, channels)
    blocks = rng.choice([10, 128, 245], size=shape).astype(np.uint8)
    rows, cols = np.arange(h) * 4 // h, np.arange(w) * 4 // w
    return blocks[:, rows][:, :, cols]


def _check_stages(ds: ImageDataset, channels: int):
    "Every stage copy has the right shape and dtype, uses the full byte range sensibly, and is cached."
    for s in STAGES:
        x = ds.at_resolution(s)
        assert x.dtype == torch.uint8 and x.shape == (len(ds), channels, s, s)
        assert x.max() > 200 and x.min() < 60, 'images should span dark to bright pixels'
        assert ds.at_resolution(s) is x, f'stage {s} must be computed once and cached'
        f = to_float(x)
        assert f.min() >= -1 and f.max() <= 1
        assert torch.equal(x, resize_images(ds.images, s))  # the antialiased resize of the native images
    assert ds.at_resolution(ds.resolution) is ds.images


# ---- stage resolutions, pixels, batches ---------------------------------------------------------------------

def test_stage_resolutions():
    assert stage_resolutions() == [8, 16, 32]
    assert stage_resolutions(3, 6) == [12, 24, 48]
    assert stage_resolutions(4, 4) == [8, 16, 32, 64]
    with pytest.raises(ValueError): stage_resolutions(0)


def test_to_float_to_uint8_round_trip():
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_float(u)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u)
    assert to_uint8(torch.tensor([-5., -1., 0., 1., 5.])).tolist() == [0, 0, 128, 255, 255]  # clamped
    with pytest.raises(ValueError): to_float(x)
    with pytest.raises(ValueError): to_uint8(u)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_conversions_and_batches_stay_on_gpu():
    ds = load_dataset('shapes', num_images=256).to('cuda')
    x = ds.at_resolution(8)
    assert x.is_cuda and to_float(x).is_cuda and to_uint8(to_float(x)).is_cuda
    on_cpu = load_dataset('shapes', num_images=256).at_resolution(8)
    assert (x.cpu().int() - on_cpu.int()).abs().max() <= 1  # the same resize; float sums may round differently
    assert all(b.is_cuda for b in sample_batches(x, 64))


def test_sample_batches_cover_each_index_once_per_epoch():
    n, bs = 103, 10
    ids = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    epoch1 = [b.flatten() for b in sample_batches(ids, bs, g)]
    assert len(epoch1) == n // bs and all(len(b) == bs for b in epoch1)  # last partial batch dropped
    seen = torch.cat(epoch1).long()
    assert len(seen.unique()) == len(seen) == n // bs * bs  # no index twice
    epoch2 = torch.cat([b.flatten() for b in sample_batches(ids, bs, g)])
    assert not torch.equal(epoch2, seen.float())  # a new order every epoch
    again = torch.cat([b.flatten() for b in sample_batches(ids, bs, torch.Generator().manual_seed(0))])
    assert torch.equal(again.long(), seen)  # reproducible from the seed
    # labels travel with their images
    labels = torch.arange(n) * 7
    for x, y in sample_batches(ids, bs, labels=labels): assert torch.equal(x.flatten().long() * 7, y)
    with pytest.raises(ValueError): next(sample_batches(ids, n + 1))


# ---- ImageDataset ------------------------------------------------------------------------------------------

def test_image_dataset_contract():
    images, labels = make_shapes(300, seed=3)
    ds = ImageDataset('shapes', images, labels, SHAPES_CLASSES)
    assert (len(ds), ds.channels, ds.resolution, ds.num_classes) == (300, 3, 32, len(SHAPES_CLASSES))
    sub = ds.subset(50, seed=1)
    assert len(sub) == 50 and torch.equal(sub.images, ds.subset(50, seed=1).images)
    assert not torch.equal(sub.images, ds.subset(50, seed=2).images)
    assert _rows(sub.images) <= _rows(ds.images)
    train, held = ds.split(0.2, seed=0)
    assert (len(train), len(held)) == (240, 60) and not _rows(train.images) & _rows(held.images)
    assert len(ds.split(30)[1]) == 30
    # labels follow their images through subset and split
    lookup = {bytes(x.numpy().tobytes()): int(y) for x, y in zip(ds.images, ds.labels)}
    assert all(lookup[bytes(x.numpy().tobytes())] == int(y) for x, y in zip(held.images, held.labels))
    for bad in (0.0, 1.0, 0, 300, 1.5): 
        with pytest.raises(ValueError): ds.split(bad)
    with pytest.raises(ValueError): ds.subset(301)
    with pytest.raises(ValueError): ImageDataset('x', images.float())
    with pytest.raises(ValueError): ImageDataset('x', images[:, :, :, :20])
    with pytest.raises(ValueError): ImageDataset('x', images, labels[:10])


def test_resize_is_antialiased_and_centre_crops():
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2 * 255).to(torch.uint8).expand(2, 1, 32, 32)
    small = resize_images(checker, 8)
    assert small.min() >= 126 and small.max() <= 129  # averaged to grey, not aliased into stripes
    # a 20x60 image: red | blue | green thirds -> the square centre crop is blue
    wide = torch.zeros(1, 3, 20, 60, dtype=torch.uint8)
    wide[0, 0, :, :20] = 255; wide[0, 2, :, 20:40] = 255; wide[0, 1, :, 40:] = 255
    crop = resize_images(wide, 16)[0]
    assert crop.shape == (3, 16, 16)
    assert (crop[2, :, 2:14] == 255).all() and (crop[:2, :, 2:14] == 0).all()


# ---- shapes ------------------------------------------------------------------------------------------------

def test_shapes_deterministic_and_seeded():
    a, la = make_shapes(1050, seed=0)  # two chunks of generation
    b, lb = make_shapes(1050, seed=0)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _ = make_shapes(300, seed=1)
    assert not _rows(a) & _rows(c)
    first, _ = make_shapes(300, seed=0)
    assert torch.equal(first, a[:300])  # the first n images do not depend on how many are made
    assert a.dtype == torch.uint8 and a.shape == (1050, 3, 32, 32) and la.dtype == torch.int64


def test_shapes_train_and_test_are_disjoint():
    train = load_dataset('shapes', split='train', num_images=1000)
    test = load_dataset('shapes', split='test', num_images=500)
    assert len(train) == 1000 and len(test) == 500
    assert not _rows(train.images) & _rows(test.images)
    assert not _rows(train.images) & _rows(load_dataset('shapes', split='train', num_images=300, seed=1).images)
    assert len(_rows(train.images)) == 1000  # no duplicates inside a split either


def test_shapes_classes_balanced_and_distinct():
    assert len(SHAPES_CLASSES) >= 8 and len(set(SHAPES_CLASSES)) == len(SHAPES_CLASSES)
    k = len(SHAPES_CLASSES)
    train_x, train_y = make_shapes(1000, seed=0)
    assert torch.equal(train_y.bincount(minlength=k), torch.full((k,), 1000 // k))  # exactly balanced per 1000
    _, labels = make_shapes(234, seed=5)
    counts = labels.bincount(minlength=k)
    assert counts.min() >= 234 // k - 10 and counts.max() <= 234 // k + 10
    # the shapes differ geometrically: pairwise overlap (IoU) of the unit masks below 0.8
    c = torch.linspace(-1.3, 1.3, 200); gy, gx = torch.meshgrid(c, c, indexing='ij')
    masks = torch.stack([data._unit_shape(s, gx, gy) < 0 for _, s, _ in data._SHAPES]).float().flatten(1)
    inter = masks @ masks.T
    iou = inter / (masks.sum(1)[:, None] + masks.sum(1)[None] - inter)
    assert (iou - torch.eye(k)).max() < 0.8
    # the colours differ too: the mean colour of the strongly saturated pixels names the class (nearest centroid)
    def colour_feature(x):
        x = x.float() / 255
        sat = (x.amax(1) - x.amin(1)) / x.amax(1).clamp(min=1e-3)
        w = (sat > .6).float()[:, None]
        return (x * w).sum((2, 3)) / w.sum((2, 3)).clamp(min=1)
    test_x, test_y = make_shapes(500, seed=0, split='test')
    centroids = torch.stack([colour_feature(train_x)[train_y == j].mean(0) for j in range(k)])
    pred = torch.cdist(colour_feature(test_x), centroids).argmin(1)
    assert (pred == test_y).float().mean() > 0.95


def test_shapes_vary_in_position_size_and_background():
    images, labels = make_shapes(500, seed=2)
    x = images.float() / 255
    sat = (x.amax(1) - x.amin(1)) / x.amax(1).clamp(min=1e-3)
    fg = (sat > .6).float()
    area = fg.sum((1, 2))
    ys, xs = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing='ij')
    cx = (fg * xs).sum((1, 2)) / area.clamp(min=1)
    assert area.min() > 5 and area.max() / area.min() > 3  # sizes vary
    assert cx.std() > 3  # positions vary (pixels)
    corners = images[:, :, :4, :4].float().mean((1, 2, 3))
    assert corners.std() > 20  # backgrounds vary


def test_shapes_at_every_stage_resolution():
    ds = load_dataset('shapes', num_images=400)
    assert ds.num_classes == len(SHAPES_CLASSES) and ds.labels.max() < ds.num_classes
    _check_stages(ds, channels=3)
    big = load_dataset('shapes', num_images=20, size=64)
    assert big.resolution == 64  # rendered natively at any size


# ---- fashion-mnist -----------------------------------------------------------------------------------------

def _write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
    (gzip.open if str(path).endswith('.gz') else open)(path, 'wb').write(header + array.astype(np.uint8).tobytes())


def test_read_idx_plain_gzip_and_bad(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / 'a-idx3-ubyte', arr); _write_idx(tmp_path / 'a-idx3-ubyte.gz', arr)
    assert torch.equal(read_idx(tmp_path / 'a-idx3-ubyte'), torch.from_numpy(arr.astype(np.uint8)))
    assert torch.equal(read_idx(tmp_path / 'a-idx3-ubyte.gz'), read_idx(tmp_path / 'a-idx3-ubyte'))
    (tmp_path / 'short').write_bytes((tmp_path / 'a-idx3-ubyte').read_bytes()[:-3])
    with pytest.raises(DataError, match='truncated'): read_idx(tmp_path / 'short')
    (tmp_path / 'junk').write_bytes(b'PNG junk')
    with pytest.raises(DataError, match='not an IDX file'): read_idx(tmp_path / 'junk')


def test_fashion_mnist_from_root_folder(tmp_path, monkeypatch):
    "IDX files under root/fashion-mnist are found first, gzipped or not; 28x28 grey becomes 32x32 with 1 channel."
    monkeypatch.setattr(data, 'FASHION_MNIST_SYSTEM_DIR', tmp_path / 'nowhere')
    rng = np.random.default_rng(0)
    images, labels = _blocky(rng, 40, 28, 28), np.arange(40) % 10
    (tmp_path / 'fashion-mnist').mkdir()
    _write_idx(tmp_path / 'fashion-mnist' / 't10k-images-idx3-ubyte.gz', images)
    _write_idx(tmp_path / 'fashion-mnist' / 't10k-labels-idx1-ubyte', labels)
    ds = load_dataset('fashion-mnist', root=tmp_path, split='test', download=False)
    assert (len(ds), ds.channels, ds.resolution, ds.num_classes) == (40, 1, 32, 10)
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    assert torch.equal(ds.images, resize_images(torch.from_numpy(images.astype(np.uint8))[:, None], 32))
    _check_stages(ds, channels=1)
    with pytest.raises(DataError) as e: load_dataset('fashion-mnist', root=tmp_path, split='train', download=False)
    msg = str(e.value)
    assert str(tmp_path / 'fashion-mnist') in msg and str(tmp_path / 'nowhere') in msg
    assert 'apt-get install dataset-fashion-mnist' in msg and 'E2GAN_DATA' in msg


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(),
                    reason=f'{FASHION_MNIST_SYSTEM_DIR} missing: apt-get install dataset-fashion-mnist to run this test')
def test_fashion_mnist_from_debian_package(tmp_path):
    full = read_idx(FASHION_MNIST_SYSTEM_DIR / 't10k-labels-idx1-ubyte.gz')
    assert full.shape == (10_000,) and torch.equal(full.long().bincount(), torch.full((10,), 1000))
    assert read_idx(FASHION_MNIST_SYSTEM_DIR / 't10k-images-idx3-ubyte.gz').shape == (10_000, 28, 28)
    ds = load_dataset('fashion-mnist', root=tmp_path, split='test', download=False, num_images=500)
    assert (len(ds), ds.channels, ds.resolution, ds.num_classes) == (500, 1, 32, 10)
    assert ds.labels.unique().tolist() == list(range(10))
    border = torch.cat([ds.images[:, 0, :2].flatten(1), ds.images[:, 0, -2:].flatten(1)], 1).float().mean()
    assert ds.images[:, 0, 8:24, 8:24].float().mean() > 3 * border  # garments in the middle of a dark frame
    _check_stages(ds, channels=1)


# ---- folder ------------------------------------------------------------------------------------------------

def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'sub').mkdir()
    sizes = [(40, 30), (64, 64), (20, 50), (100, 70)]
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(_blocky(rng, 1, h, w, 3)[0]).save(tmp_path / f'img{i}.png')
    Image.fromarray(_blocky(rng, 1, 33, 45)[0], mode='L').save(tmp_path / 'sub' / 'grey.JPG')
    (tmp_path / 'notes.txt').write_text('not an image')
    (tmp_path / 'broken.png').write_bytes(b'not a png')
    with pytest.warns(UserWarning, match='skipped 1 unreadable'):
        ds = load_dataset('folder', path=tmp_path, size=32)
    assert (len(ds), ds.channels, ds.resolution, ds.labels, ds.num_classes) == (5, 3, 32, None, 0)
    _check_stages(ds, channels=3)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the broken file may or may not be among the two drawn
        assert len(load_dataset('folder', path=tmp_path, size=16, num_images=2)) == 2


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match='does not exist'): load_dataset('folder', path=tmp_path / 'missing')
    with pytest.raises(DataError, match='no image files'): load_dataset('folder', path=tmp_path)
    with pytest.raises(ValueError, match='path='): load_dataset('folder')


# ---- names, splits, roots and offline errors ---------------------------------------------------------------

def test_unknown_name_and_split():
    with pytest.raises(ValueError) as e: load_dataset('mnist')
    assert all(name in str(e.value) for name in DATASETS)
    with pytest.raises(ValueError, match='train, test'): load_dataset('cifar10', split='valid')
    with pytest.raises(ValueError, match='unexpected'): load_dataset('shapes', path='x')


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('E2GAN_DATA', str(tmp_path))
    assert default_data_root() == tmp_path
    with pytest.raises(DataError, match=str(tmp_path / 'cifar-10-batches-py')): load_dataset('cifar10', download=False)
    monkeypatch.delenv('E2GAN_DATA')
    assert default_data_root() == default_data_root().home() / '.cache' / 'e2gan' / 'data'


def _assert_helpful(msg: str, folder):
    assert str(folder) in msg, 'the message must say where the files were looked for'
    assert 'E2GAN_DATA' in msg and '--data-root' in msg and 'root=' in msg, 'and how to provide them'


def test_cifar10_offline_with_download_disabled(tmp_path):
    with pytest.raises(DataError) as e: load_dataset('cifar10', root=tmp_path, download=False)
    _assert_helpful(str(e.value), tmp_path / 'cifar-10-batches-py')
    assert 'download=False' in str(e.value)
    with pytest.raises(DataError) as e: load_dataset('stl10', root=tmp_path, split='train+unlabeled', download=False)
    _assert_helpful(str(e.value), tmp_path / 'stl10_binary')


def test_cifar10_download_failure_gives_the_same_clear_error(tmp_path, no_network):
    with pytest.raises(DataError) as e: load_dataset('cifar10', root=tmp_path, download=True)
    _assert_helpful(str(e.value), tmp_path / 'cifar-10-batches-py')
    assert 'downloading it failed' in str(e.value)


def test_fashion_mnist_download_failure(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(data, 'FASHION_MNIST_SYSTEM_DIR', tmp_path / 'nowhere')
    with pytest.raises(DataError) as e: load_dataset('fashion-mnist', root=tmp_path, download=True)
    _assert_helpful(str(e.value), tmp_path / 'FashionMNIST' / 'raw')
    assert 'downloading it failed' in str(e.value)


def test_torchvision_arrays_become_our_tensors(tmp_path, monkeypatch):
    "CIFAR-10 (N, H, W, C) and STL-10 (N, C, H, W) arrays are converted without mixing up axes (fakes stand in for the downloads)."
    import torchvision.datasets as tvd
    class FakeCIFAR10:
        def __init__(self, root, train, download):
            n = 50 if train else 20
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.data[..., 0], self.data[:, :16, :, 1] = 200, 255  # red everywhere, green in the top half
            self.targets, self.classes = list(np.arange(n) % 10), [f'c{i}' for i in range(10)]
    class FakeSTL10:
        def __init__(self, root, split, download):
            self.data = np.full((30, 3, 96, 96), 40, np.uint8); self.data[:, 2, :, 48:] = 220  # blue on the right
            self.labels = np.where(np.arange(30) < 10, np.arange(30) % 10, -1) if 'unlabeled' in split else np.arange(30) % 10
            self.classes = [f's{i}' for i in range(10)]
    monkeypatch.setattr(tvd, 'CIFAR10', FakeCIFAR10); monkeypatch.setattr(tvd, 'STL10', FakeSTL10)
    ds = load_dataset('cifar10', root=tmp_path, num_images=12, seed=3)
    assert (len(ds), ds.channels, ds.resolution, ds.num_classes) == (12, 3, 32, 10)
    assert (ds.images[:, 0] == 200).all() and (ds.images[:, 1, :16] == 255).all() and (ds.images[:, 1, 16:] == 0).all()
    assert len(load_dataset('cifar10', root=tmp_path, split='test')) == 20
    stl = load_dataset('stl10', root=tmp_path)
    assert (stl.resolution, stl.num_classes, stl.class_names[0]) == (48, 10, 's0')  # 96 -> 48, the paper's size
    assert (stl.images[:, 2, :, 26:] == 220).all() and (stl.images[:, 2, :, :22] == 40).all()
    both = load_dataset('stl10', root=tmp_path, split='train+unlabeled')
    assert both.labels is None and both.num_classes == 0  # mostly unlabelled: loaded as unlabelled
