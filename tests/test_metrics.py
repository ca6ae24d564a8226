"IS/FID rewards (e2gan.metrics): the formulas against NumPy/SciPy, both backends end to end, caches, errors."
import math, os, time, urllib.error, urllib.request, warnings
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch
import torch.nn as nn

from e2gan.data import DataError, ImageDataset, load_dataset, to_float
from e2gan.models import Generator
from e2gan.utils import load_checkpoint, save_atomic
import e2gan.metrics as M
from e2gan.metrics import (Evaluator, InceptionWeightsError, NonFiniteImagesError, Scores, classifier_for,
                           feature_statistics, frechet_distance, inception_score)


# ---------------------------------------------------------------- reference formulas, written from the definitions
def np_inception_score(logits: np.ndarray, splits: int, perm: np.ndarray | None = None) -> tuple[float, float]:
    "exp(E_x KL(p(y|x) || p(y))) on each split; mean and std over splits."
    x = np.asarray(logits, np.float64)
    if perm is not None: x = x[perm]
    p, n, scores = scipy.special.softmax(x, axis=1), len(x), []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part) - np.log(marginal))).sum(1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))

def np_fid(x: np.ndarray, y: np.ndarray) -> float:
    "||mu_x - mu_y||^2 + tr(S_x + S_y - 2 sqrtm(S_x S_y))."
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():   # dead ReLU units make the covariances singular; sqrtm still converges
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))

def torch_fidelity_perm(n: int) -> np.ndarray: return np.random.RandomState(2020).permutation(n)

def implied_inception_score(accuracy: float, k: int) -> float:
    "IS of a calibrated classifier of accuracy a, errors spread evenly, balanced classes: K exp(-H_a)."
    if accuracy >= 1: return float(k)
    h = -accuracy * math.log(accuracy) - (1 - accuracy) * math.log((1 - accuracy) / (k - 1))
    return k * math.exp(-h)


# ---------------------------------------------------------------- formulas
def test_fid_is_zero_against_itself_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3000, 32, generator=g, dtype=torch.float64) @ torch.randn(32, 32, generator=g, dtype=torch.float64) + 3
    mu, sigma = feature_statistics(feats)
    scale = np.trace(sigma)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) <= 1e-6 * scale
    direction = torch.nn.functional.normalize(torch.randn(32, generator=g, dtype=torch.float64), dim=0)
    fids = [frechet_distance(mu, sigma, *feature_statistics(feats + d * direction)) for d in (0.5, 1, 2, 4, 8)]
    assert all(a < b for a, b in zip(fids, fids[1:]))
    # a shift leaves the covariance alone and adds exactly d^2
    np.testing.assert_allclose(fids, [0.25, 1, 4, 16, 64], rtol=1e-6)

def test_inception_score_extremes():
    k = 10
    same = torch.randn(1, k).repeat(500, 1)
    assert inception_score(same, splits=10) == pytest.approx((1.0, 0.0), abs=1e-9)
    confident = 40 * torch.nn.functional.one_hot(torch.arange(1000) % k, k).double()
    mean, std = inception_score(confident, splits=10, shuffle=False)   # every split holds each class 10 times
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    probs = torch.nn.functional.one_hot(torch.arange(1000) % k, k).double()  # probabilities (with zeros) work too
    assert inception_score(probs, splits=10, shuffle=False)[0] == pytest.approx(k, rel=1e-9)

def test_formulas_equal_numpy_scipy_reference():
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(2000, 10, generator=g)
    for splits in (1, 7, 10):
        assert inception_score(logits, splits) == pytest.approx(np_inception_score(logits.numpy(), splits, torch_fidelity_perm(2000)), rel=1e-3)
        assert inception_score(logits, splits, shuffle=False) == pytest.approx(np_inception_score(logits.numpy(), splits), rel=1e-3)
    probs = logits.softmax(1)
    assert inception_score(probs, 10) == pytest.approx(np_inception_score(logits.numpy(), 10, torch_fidelity_perm(2000)), rel=1e-3)
    x = torch.randn(1500, 24, generator=g) @ torch.randn(24, 24, generator=g)
    y = 0.7 * torch.randn(1200, 24, generator=g) @ torch.randn(24, 24, generator=g) + 0.3
    assert frechet_distance(*feature_statistics(x), *feature_statistics(y)) == pytest.approx(np_fid(x.numpy(), y.numpy()), rel=1e-3)

def test_formula_inputs_are_checked():
    with pytest.raises(ValueError, match='splits'): inception_score(torch.randn(5, 3), splits=6)
    with pytest.raises(ValueError, match='at least 2'): feature_statistics(torch.randn(1, 4))
    with pytest.raises(ValueError, match='NaN'): inception_score(torch.tensor([[0., float('nan')]] * 4), splits=2)
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match='covariances'): frechet_distance(mu, sigma, np.zeros(4), np.eye(4))


# ---------------------------------------------------------------- classifier backend
@pytest.fixture(scope='module')
def cache(tmp_path_factory): return tmp_path_factory.mktemp('e2gan-cache')

@pytest.fixture(scope='module')
def shapes_split():
    "12,000 shapes: 10,000 to train the classifier on (1,000 of them held out by it) and 2,000 held out here."
    return load_dataset('shapes', num_images=12_000).split(2000, seed=1)

@pytest.fixture(scope='module')
def shapes_eval(shapes_split, cache):
    train, _ = shapes_split
    t = time.perf_counter()
    ev = Evaluator(train, 32, num_images=2000, splits=10, cache_dir=cache, reference_images=5000, device='cpu')
    return ev, time.perf_counter() - t

def test_classifier_learns_shapes(shapes_eval):   # its build time is a benchmark figure (`e2gan bench reward`), not a test
    ev, seconds = shapes_eval
    assert ev.classifier_info['accuracy'] >= 0.95 and ev.classifier_info['holdout_images'] == 1000
    assert ev.classifier_info['train_images'] == 9000

def test_classifier_learns_fashion_mnist(cache):
    try: data = load_dataset('fashion-mnist', download=False, num_images=20_000)
    except DataError as e: pytest.skip(f'Fashion-MNIST is not installed here ({str(e).splitlines()[0]})')
    ev = Evaluator(data, 32, cache_dir=cache, device='cpu')
    assert ev.classifier_info['accuracy'] >= 0.85, ev.classifier_info['history']
    assert ev.channels == 1

def test_real_images_beat_an_untrained_generator(shapes_eval, shapes_split):
    ev, _ = shapes_eval
    _, held = shapes_split
    real = ev(held.at_resolution(32))
    torch.manual_seed(0)
    G = Generator('e2gan-cifar10', gf_dim=16, latent_dim=128, bottom_width=4, channels=3)
    fake = ev(G)
    assert real.backend == fake.backend == 'classifier' and not real.comparable_with_published
    assert real.num_images == fake.num_images == 2000
    assert 5 * real.fid <= fake.fid, (real, fake)
    assert fake.is_mean < real.is_mean
    implied = implied_inception_score(ev.classifier_info['accuracy'], ev.reference.num_classes)
    assert abs(real.is_mean - implied) <= 0.1 * implied, (real, implied)

def test_evaluator_equals_reference_formulas(shapes_eval, shapes_split):
    ev, _ = shapes_eval
    _, held = shapes_split
    images = held.at_resolution(32)[:1000]
    logits, feats = ev.features(images)
    scores = ev(images)
    assert (scores.is_mean, scores.is_std) == pytest.approx(np_inception_score(logits.numpy(), 10, torch_fidelity_perm(1000)), rel=1e-3)
    ref_images = ev.reference.at_resolution(32)
    rows = torch.randperm(len(ref_images), generator=torch.Generator().manual_seed(ev.seed))[:ev.reference_images].sort().values
    _, ref_feats = ev.features(ref_images[rows])
    assert scores.fid == pytest.approx(np_fid(feats.numpy(), ref_feats.numpy()), rel=1e-3)
    # float images in [-1, 1] and uint8 images give the same scores
    assert ev(to_float(images)) == scores

def test_torch_fidelity_computes_the_same_with_the_registered_extractor(shapes_eval, shapes_split, cache):
    import torch_fidelity
    ev, _ = shapes_eval
    _, held = shapes_split
    class Images(torch.utils.data.Dataset):
        def __init__(self, x): self.x = x
        def __len__(self): return len(self.x)
        def __getitem__(self, i): return self.x[i]
    a, b = held.at_resolution(32)[:1000], held.at_resolution(32)[1000:]
    path = classifier_for(ev.reference, 32, cache_dir=cache)
    out = torch_fidelity.calculate_metrics(input1=Images(a), input2=Images(b), isc=True, fid=True, cuda=False, cache=False,
                                           verbose=False, save_cpu_ram=True, batch_size=500, feature_extractor=M.CLASSIFIER_EXTRACTOR,
                                           feature_extractor_weights_path=str(path))
    (la, fa), (_, fb) = ev.features(a), ev.features(b)
    assert out['inception_score_mean'] == pytest.approx(inception_score(la, 10)[0], rel=1e-3)
    assert out['frechet_inception_distance'] == pytest.approx(frechet_distance(*feature_statistics(fa), *feature_statistics(fb)), rel=1e-3)

def test_generator_scoring_uses_fixed_noise_and_restores_mode(shapes_eval):
    ev, _ = shapes_eval
    assert torch.equal(ev.noise(64), ev.noise(64)) and ev.noise(64).shape == (2000, 64)
    torch.manual_seed(3)
    G = Generator('e2gan-cifar10', gf_dim=8, latent_dim=64, bottom_width=4, channels=3)
    G.train()
    first = ev(G, fid=False)
    assert G.training and first.fid is None
    G.eval()
    assert ev(G, fid=False) == first and not G.training   # same noise, eval mode: the same images both times

def test_bad_inputs_are_rejected(shapes_eval):
    ev, _ = shapes_eval
    class NaNGenerator(nn.Module):
        latent_dim = 8
        def __init__(self): super().__init__(); self.w = nn.Parameter(torch.zeros(()))
        def forward(self, z): return torch.full((len(z), 3, 32, 32), float('nan')) + self.w
    with pytest.raises(NonFiniteImagesError, match='NaN'): ev(NaNGenerator())
    images = torch.zeros(20, 3, 32, 32); images[3, 0, 1, 1] = float('inf')
    with pytest.raises(NonFiniteImagesError): ev(images)
    assert issubclass(NonFiniteImagesError, ValueError)
    with pytest.raises(ValueError, match='splits'): ev(torch.zeros(9, 3, 32, 32))          # 10 splits
    with pytest.raises(ValueError, match='32'): ev(torch.zeros(20, 3, 16, 16))             # wrong resolution
    with pytest.raises(ValueError, match='splits'): Evaluator(ev.reference, 32, num_images=5, splits=10, cache_dir=ev.cache_dir)
    with pytest.raises(ValueError, match='backend'): Evaluator(ev.reference, 32, backend='vgg')
    one_split = Evaluator(ev.reference, 32, num_images=100, splits=1, cache_dir=ev.cache_dir, reference_images=10_000, device='cpu')
    with pytest.raises(ValueError, match='FID'): one_split(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert one_split(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), fid=False).is_mean == pytest.approx(1)

def test_unlabelled_data_needs_the_inception_backend(tmp_path):
    folder = ImageDataset('folder', torch.zeros(50, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match='inception'): Evaluator(folder, 16, cache_dir=tmp_path)


# ---------------------------------------------------------------- caches
_evil_ran = []
def _evil(): _evil_ran.append(True); return {}
class _Evil:
    def __reduce__(self): return (_evil, ())

@pytest.fixture(scope='module')
def tiny():
    return load_dataset('shapes', num_images=300, size=16)

def test_classifier_cache_is_reused_and_a_bad_file_rebuilt(tiny, tmp_path):
    before = torch.get_rng_state()
    path = classifier_for(tiny, 16, epochs=1, cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), before), 'training the classifier must not move the global RNG'
    good = load_checkpoint(path)
    stamp = path.stat().st_mtime_ns
    assert classifier_for(tiny, 16, epochs=1, cache_dir=tmp_path) == path and path.stat().st_mtime_ns == stamp  # reused
    for bad in (b'garbage', 'another key', 'unsafe pickle', 'wrong shapes'):
        if bad == 'another key': save_atomic({**good, 'key': {**good['key'], 'fingerprint': 'something else'}}, path)
        elif bad == 'unsafe pickle': torch.save({**good, 'info': _Evil()}, path)
        elif bad == 'wrong shapes': save_atomic({**good, 'config': {**good['config'], 'width': 8}}, path)
        else: path.write_bytes(bad)
        with pytest.warns(UserWarning, match='rebuilding the classifier cache'):
            assert classifier_for(tiny, 16, epochs=1, cache_dir=tmp_path) == path
        assert load_checkpoint(path)['key'] == good['key']
    assert not _evil_ran, 'a cache file was unpickled unsafely'

def test_reference_statistics_are_cached_and_a_bad_file_rebuilt(tiny, tmp_path):
    ev = Evaluator(tiny, 16, num_images=50, splits=5, cache_dir=tmp_path, classifier_epochs=1, device='cpu')
    mu, sigma = ev.reference_stats
    [stats_file] = (tmp_path / 'stats').glob('*.pt')
    assert 'shapes-train-16px-n300-classifier' in stats_file.name
    again = Evaluator(tiny, 16, num_images=50, splits=5, cache_dir=tmp_path, classifier_epochs=1, device='cpu')
    again.features = None   # a cache hit must not extract features again
    np.testing.assert_array_equal(again.reference_stats[1], sigma)
    stats_file.write_bytes(b'not a checkpoint')
    third = Evaluator(tiny, 16, num_images=50, splits=5, cache_dir=tmp_path, classifier_epochs=1, device='cpu')
    with pytest.warns(UserWarning, match='rebuilding the reference statistics'):
        np.testing.assert_allclose(third.reference_stats[0], mu, rtol=1e-6)
    other_split = Evaluator(tiny, 16, num_images=50, splits=5, cache_dir=tmp_path, classifier_epochs=1, device='cpu',
                            reference_split='test')
    other_split.reference_stats
    assert len(list((tmp_path / 'stats').glob('*.pt'))) == 2


# ---------------------------------------------------------------- inception backend
@pytest.fixture(scope='module')
def random_inception_weights(tmp_path_factory):
    "torch-fidelity's FeatureExtractorInceptionV3 with random weights (the real ones cannot be downloaded here)."
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    from unittest import mock
    with mock.patch.object(fe, 'load_state_dict_from_url', lambda *a, **k: {}), \
         mock.patch.object(fe.FeatureExtractorInceptionV3, 'load_state_dict', lambda self, *a, **k: None):
        net = fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'])
    torch.manual_seed(0)
    for m in net.modules():   # variance-preserving init, so that the features do not vanish through 90 layers
        if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
    path = tmp_path_factory.mktemp('inception') / 'random-inception.pth'
    torch.save(net.state_dict(), path)
    return path

@pytest.fixture
def one_thread():
    "InceptionV3 at 299 x 299 is the slowest thing here; on shared cores one thread beats two that wait for each other."
    before = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def test_inception_backend_end_to_end(random_inception_weights, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv(M.INCEPTION_ENV, str(random_inception_weights))
    data = load_dataset('shapes', num_images=8)
    with pytest.warns(UserWarning, match='not the official'):
        ev = Evaluator(data, 32, backend='inception', num_images=8, splits=2, batch_size=8, cache_dir=tmp_path, device='cpu')
    assert ev.backend == 'inception (custom weights)'
    torch.manual_seed(0)
    G = Generator('e2gan-cifar10', gf_dim=8, latent_dim=16, bottom_width=4, channels=3)
    scores = ev(G)
    assert scores.backend == 'inception (custom weights)' and not scores.comparable_with_published
    assert np.isfinite([scores.is_mean, scores.is_std, scores.fid]).all() and scores.fid > 0 and scores.is_mean >= 1
    mu, sigma = ev.reference_stats
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    grey = data.images.float().mean(1, keepdim=True).to(torch.uint8)   # grey images are repeated to RGB
    logits, feats = ev.features(grey)
    assert logits.shape == (8, 1008) and feats.shape == (8, 2048) and torch.isfinite(feats).all()
    assert len(list((tmp_path / 'stats').glob('*inception*.pt'))) == 1

def test_inception_weights_option_and_bad_files(random_inception_weights, tmp_path, monkeypatch):
    monkeypatch.delenv(M.INCEPTION_ENV, raising=False)
    assert M.inception_weights_path(random_inception_weights) == random_inception_weights
    with pytest.warns(UserWarning, match='not the official'):
        net, sha = M.load_inception(random_inception_weights, 'cpu')
    assert not sha.startswith('6726825d') and net.get_name() == 'inception-v3-compat'
    with pytest.raises(InceptionWeightsError, match='not a file'): M.inception_weights_path(tmp_path / 'missing.pth')
    wrong = tmp_path / 'wrong.pth'; torch.save({'conv.weight': torch.zeros(3)}, wrong)
    with pytest.raises(InceptionWeightsError, match='InceptionV3'): M.load_inception(wrong)
    unsafe = tmp_path / 'unsafe.pth'; torch.save({'x': _Evil()}, unsafe)
    with pytest.raises(InceptionWeightsError): M.load_inception(unsafe)
    assert not _evil_ran

def test_inception_offline_without_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv(M.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    def offline(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    with pytest.raises(InceptionWeightsError) as e:
        Evaluator(load_dataset('shapes', num_images=20), 32, backend='inception', num_images=20, cache_dir=tmp_path)
    assert M.INCEPTION_URL in str(e.value) and M.INCEPTION_ENV in str(e.value) and 'inception_weights' in str(e.value)

def test_inception_download_checks_the_hash(tmp_path, monkeypatch):
    import io
    class Response(io.BytesIO):
        def __enter__(self): return self
    monkeypatch.setattr(urllib.request, 'urlopen', lambda url, timeout: Response(b'not the weights'))
    with pytest.raises(InceptionWeightsError, match='SHA-256'): M._download(M.INCEPTION_URL, tmp_path / 'w.pth', timeout=1)
    assert list(tmp_path.iterdir()) == []   # nothing half-written is left behind


def test_scores_are_labelled():
    s = Scores(7.5, 0.1, 20.0, 'classifier', 5000, 'cifar10/train@32px')
    assert 'not comparable' in repr(s) and s.as_dict()['comparable_with_published'] is False
    assert 'not comparable' not in repr(Scores(7.5, 0.1, 20.0, 'inception', 5000))
    assert 'FID not computed' in repr(Scores(7.5, 0.1, None, 'inception', 5000))


# ---------------------------------------------------------------- FID: symmetric form, cached reference (issue 16)
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

def tf_fid(mu1, s1, mu2, s2) -> float:
    return fid_statistics_to_metric({'mu': mu1, 'sigma': s1}, {'mu': mu2, 'sigma': s2}, verbose=False)[KEY_METRIC_FID]

def relu_features(n: int, d: int, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    "Correlated post-ReLU features, like a network's pooled activations."
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ a * scale + 0.05 * (scale - 1))

@pytest.fixture
def empty_fid_cache():
    M._ROOTS.clear(); M._SEEN.clear()
    yield
    M._ROOTS.clear(); M._SEEN.clear()

def test_fid_equals_torch_fidelity_on_well_conditioned_statistics(empty_fid_cache):
    a, b = feature_statistics(relu_features(4000, 512)), feature_statistics(relu_features(4000, 512, 1.1, seed=1))
    expected = tf_fid(*a, *b)
    assert frechet_distance(*a, *b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(*b, *a) == pytest.approx(expected, rel=1e-6)          # either side factorised
    assert frechet_distance(*(torch.from_numpy(x).float() for x in (*a, *b))) == pytest.approx(expected, rel=1e-4)  # float32 tensors

@pytest.mark.parametrize('n1, n2', [(100, 5000), (100, 120)])
def test_fid_with_singular_covariances_agrees_to_1e6(n1, n2, empty_fid_cache):
    "Fewer samples than dimensions: rank-deficient covariances. Both methods agree to ~1e-8 relative (bound: 1e-6)."
    a, b = feature_statistics(relu_features(n1, 256)), feature_statistics(relu_features(n2, 256, 1.1, seed=1))
    assert np.linalg.matrix_rank(a[1]) < 256
    expected = tf_fid(*a, *b)
    assert frechet_distance(*a, *b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(*b, *a) == pytest.approx(expected, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(a[1] @ b[1]).real
    exact = float(((a[0] - b[0]) ** 2).sum() + np.trace(a[1] + b[1] - 2 * covmean))
    assert frechet_distance(*a, *b) == pytest.approx(exact, rel=1e-6)

def test_fid_factorises_a_recurring_reference_once_in_either_order(monkeypatch, empty_fid_cache):
    calls = []
    real = M._sqrtm_psd
    monkeypatch.setattr(M, '_sqrtm_psd', lambda s: calls.append(s.shape) or real(s))
    ref = feature_statistics(relu_features(2000, 64))
    gens = [feature_statistics(relu_features(2000, 64, 1 + k / 10, seed=k + 1)) for k in range(4)]
    assert [frechet_distance(*g, *ref) for g in gens] == pytest.approx([tf_fid(*g, *ref) for g in gens], rel=1e-9)
    assert len(calls) == 1                                                        # the reference (second) once
    M._ROOTS.clear(); M._SEEN.clear(); calls.clear()
    assert [frechet_distance(*ref, *g) for g in gens] == pytest.approx([tf_fid(*ref, *g) for g in gens], rel=1e-9)
    assert len(calls) == 2                                                        # the first call's second, then the reference
    again = (ref[0].copy(), ref[1].copy())                                        # equal content, other arrays: still cached
    assert frechet_distance(*gens[0], *again) == pytest.approx(tf_fid(*gens[0], *ref), rel=1e-9) and len(calls) == 2

def test_fid_cache_is_not_fooled_by_an_array_changed_in_place(empty_fid_cache):
    ref, gen = feature_statistics(relu_features(2000, 64)), feature_statistics(relu_features(2000, 64, 1.2, seed=1))
    frechet_distance(*gen, *ref)
    ref[1][5, 7] += 0.5; ref[1][7, 5] += 0.5                                      # same object, new content
    assert frechet_distance(*gen, *ref) == pytest.approx(tf_fid(*gen, *ref), rel=1e-9)

def test_frechet_reference_matches_the_function_and_feature_statistics_np_cov():
    x, y = relu_features(1000, 32), relu_features(800, 32, 1.3, seed=2)
    mu, sigma = feature_statistics(x)
    np.testing.assert_allclose(sigma, np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(mu, x.numpy().mean(0), rtol=1e-12)
    ref = M.FrechetReference(mu, sigma)
    assert ref.distance(*feature_statistics(y)) == pytest.approx(tf_fid(*feature_statistics(y), mu, sigma), rel=1e-9)


# ---------------------------------------------------------------- TF32 off in feature extraction (issue 16)
def test_tf32_disabled_turns_the_flags_off_and_restores_them(monkeypatch):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    try:
        for setting in [(True, True), (True, False), (False, True)]:
            cudnn.allow_tf32, matmul.allow_tf32 = setting
            with M.tf32_disabled(): assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
            assert (cudnn.allow_tf32, matmul.allow_tf32) == setting
            with pytest.raises(KeyError):
                with M.tf32_disabled(): raise KeyError('boom')
            assert (cudnn.allow_tf32, matmul.allow_tf32) == setting
    finally: cudnn.allow_tf32, matmul.allow_tf32 = before

def test_the_evaluator_extracts_features_without_tf32(shapes_eval, shapes_split):
    ev, _ = shapes_eval
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    seen, forward = [], ev.extractor.forward
    def recording(x): seen.append((cudnn.allow_tf32, matmul.allow_tf32)); return forward(x)
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    try:
        ev.extractor.forward = recording
        s = ev(shapes_split[1].at_resolution(32)[:500])
        assert seen and set(seen) == {(False, False)} and (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)
    finally:
        del ev.extractor.forward
        cudnn.allow_tf32, matmul.allow_tf32 = before
    assert s.tf32 is False and s.as_dict()['tf32'] is False
    assert not Scores(7.5, 0.1, 20.0, 'inception', 5000, tf32=True).comparable_with_published



def test_bfloat16_is_for_search_rewards_only_and_keeps_the_reference_in_float32(shapes_eval, shapes_split):
    ev, _ = shapes_eval
    half = Evaluator(ev.reference, 32, num_images=2000, splits=10, cache_dir=ev.cache_dir, reference_images=5000, device='cpu',
                     precision='bfloat16')
    real = shapes_split[1].at_resolution(32)[:1000]
    (l32, f32), (l16, f16) = ev.features(real), half.features(real)
    assert f16.dtype == torch.float32 and not torch.equal(f16, f32)            # really extracted under bfloat16 autocast
    assert all(np.array_equal(a, b) for a, b in zip(half.reference_stats, ev.reference_stats))   # the shared reference: float32
    torch.manual_seed(0)
    G = Generator('e2gan-cifar10', gf_dim=16, latent_dim=128, bottom_width=4, channels=3)
    s32, s16 = ev(real), half(real)
    assert s16.precision == 'bfloat16' and 'bfloat16' in s16.protocol['precision'] and s32.precision == 'float32'
    assert not Scores(7.5, 0.1, 20.0, 'inception', 5000, precision='bfloat16').comparable_with_published
    assert Scores(7.5, 0.1, 20.0, 'inception', 5000).comparable_with_published
    assert (half(G).fid > 5 * s16.fid) and (ev(G).fid > 5 * s32.fid)          # the ranking real > untrained holds in both
    with pytest.raises(ValueError, match='precision'): Evaluator(ev.reference, 32, precision='float16', cache_dir=ev.cache_dir)


def test_cudnn_autotuning_only_on_cuda_and_never_in_deterministic_mode():
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark
    cudnn.benchmark = False
    try:
        with M.cudnn_autotuned('cpu'): assert not cudnn.benchmark
        with M.cudnn_autotuned('cuda'): assert cudnn.benchmark
        assert not cudnn.benchmark
        torch.use_deterministic_algorithms(True)
        try:
            with M.cudnn_autotuned('cuda'): assert not cudnn.benchmark
        finally: torch.use_deterministic_algorithms(False)
    finally: cudnn.benchmark = before

# ---------------------------------------------------------------- offline without weights: one exception, both forms (issue 12)
import http.client, socket

@pytest.mark.parametrize('failure', [socket.timeout('timed out'), ConnectionResetError('reset'),
                                     http.client.RemoteDisconnected('closed'), 'incomplete'])
def test_offline_always_raises_inception_weights_error_naming_cli_env_and_python(tmp_path, monkeypatch, failure):
    import io
    monkeypatch.delenv(M.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    class CutShort(io.BytesIO):
        def __enter__(self): return self
        def read(self, n=-1): raise http.client.IncompleteRead(b'partial')
    def urlopen(url, timeout):
        if failure == 'incomplete': return CutShort()
        raise failure
    monkeypatch.setattr(urllib.request, 'urlopen', urlopen)
    with pytest.raises(InceptionWeightsError) as e:
        Evaluator(load_dataset('shapes', num_images=20), 32, backend='inception', num_images=20, cache_dir=tmp_path)
    msg = str(e.value)
    assert '--inception-weights PATH' in msg and f'{M.INCEPTION_ENV}=PATH' in msg and 'inception_weights=PATH' in msg
    assert '--backend classifier' in msg and not list((tmp_path / 'hub').rglob('*.part'))
