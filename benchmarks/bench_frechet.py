"""Time e2gan's `frechet_distance` against torch-fidelity's `fid_statistics_to_metric` at InceptionV3's 2048 dimensions.

The reward's case: one fixed reference, many generated sets. e2gan factorises the reference once (a symmetric
eigendecomposition) and then needs two matrix products and one symmetric `eigvalsh` per call; torch-fidelity solves
a general (non-symmetric) eigenproblem of the product every call. Run with the thread settings to compare, e.g.

    OMP_NUM_THREADS=1 python benchmarks/bench_frechet.py
    python benchmarks/bench_frechet.py
"""
import argparse, os, time
import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
import e2gan.metrics as M


def statistics(n: int, d: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    "Mean and covariance of n correlated post-ReLU d-dimensional features (like InceptionV3's pool features)."
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return M.feature_statistics(torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ a * scale))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dim', type=int, default=2048)
    p.add_argument('--images', type=int, default=5000, help='samples behind each covariance')
    p.add_argument('--calls', type=int, default=5, help='generated sets scored against the one reference')
    args = p.parse_args()
    ref = statistics(args.images, args.dim, 1.0, 0)
    gens = [statistics(args.images, args.dim, 1 + 0.05 * (k + 1), k + 1) for k in range(args.calls)]
    M._ROOTS.clear(); M._SEEN.clear()

    t = time.perf_counter(); ours = [M.frechet_distance(*gens[0], *ref)]; first = time.perf_counter() - t
    t = time.perf_counter(); ours += [M.frechet_distance(*g, *ref) for g in gens[1:]]
    ours_per_call = (time.perf_counter() - t) / max(1, args.calls - 1)
    t = time.perf_counter()
    theirs = [fid_statistics_to_metric({'mu': g[0], 'sigma': g[1]}, {'mu': ref[0], 'sigma': ref[1]}, verbose=False)[KEY_METRIC_FID]
              for g in gens]
    theirs_per_call = (time.perf_counter() - t) / args.calls
    rel = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))

    print(f'{args.dim}-d statistics of {args.images} samples, {args.calls} generated sets against one reference; '
          f'torch {torch.__version__}, {torch.get_num_threads()} torch threads, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')
    print(f'torch-fidelity fid_statistics_to_metric: {theirs_per_call:8.3f} s per call')
    print(f'e2gan frechet_distance, first call:      {first:8.3f} s (factorises the reference)')
    print(f'e2gan frechet_distance, later calls:     {ours_per_call:8.3f} s per call')
    print(f'ratio (later calls / torch-fidelity):    {ours_per_call / theirs_per_call:8.3f}')
    print(f'ratio (first call / torch-fidelity):     {first / theirs_per_call:8.3f}')
    print(f'largest relative difference of the FIDs: {rel:.2e}')


if __name__ == '__main__':
    main()
