"""Does a bfloat16 reward rank architectures as the float32 one does? And what does it save?

    python benchmarks/bench_bf16_ranking.py                              # quick preset, shapes, classifier, CPU
    python benchmarks/bench_bf16_ranking.py --device cuda --archs 24     # on a GPU
    python benchmarks/bench_bf16_ranking.py --preset paper --device cuda --inception-weights pt_inception-2015-12-05.pth

Trains `--archs` random architectures on the preset's proxy task (a whole trajectory each: three cells, one proxy
stage per cell, the search's own environment), then scores every trained generator with the same evaluator in
float32 and in bfloat16 (`Evaluator(precision='bfloat16')`: the extractor under torch.autocast; the reference
statistics are float32 in both). Prints the Spearman rank correlation of the two rewards (IS - alpha FID), of IS and
of FID, the largest change of rank, and the seconds per reward of each precision, in one run. A benchmark, not a test.
`ProxyTaskConfig.reward_precision='bfloat16'` (`e2gan search --reward-precision bfloat16`) is worth it only where the
rank correlation is close to 1 and the time per reward falls (tensor cores: a GPU, not a CPU).
"""
import argparse, json, os, time
import numpy as np

os.environ.setdefault('OMP_NUM_THREADS', '1')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='quick')
    p.add_argument('--archs', type=int, default=12, help='random architectures to train and score')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dataset', help="override the preset's data set")
    p.add_argument('--backend', help="override the preset's backend")
    p.add_argument('--inception-weights')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', action='store_true')
    args = p.parse_args(argv)
    import torch
    from scipy.stats import spearmanr
    from e2gan.search import search_config
    from e2gan.mdp import GanSearchEnv, StageView, search_score
    from e2gan.metrics import Evaluator
    from e2gan.searchspace import action_from_cell, random_architecture

    cfg = search_config(args.preset, dataset=args.dataset, backend=args.backend, inception_weights=args.inception_weights).proxy
    env = GanSearchEnv(cfg, device=args.device)
    fp32 = env.evaluator
    bf16 = Evaluator(fp32.reference, fp32.resolution, backend=cfg.backend, num_images=fp32.num_images, splits=fp32.splits,
                     batch_size=fp32.batch_size, device=fp32.device, cache_dir=cfg.cache_dir, inception_weights=cfg.inception_weights,
                     reference_images=cfg.reference_images, classifier_images=cfg.classifier_images, precision='bfloat16')
    sync = (lambda: torch.cuda.synchronize()) if fp32.device.type == 'cuda' else (lambda: None)
    rows, seconds = [], {'float32': [], 'bfloat16': []}
    for k in range(args.archs):
        arch = random_architecture(cfg.n_cells, rng=args.seed * 1000 + k)
        env.reset(seed=args.seed * 1000 + k)
        for cell in arch: env.step(np.array(action_from_cell(cell, cfg.n_cells)))
        row = dict(arch=str(arch))
        for name, ev in (('float32', fp32), ('bfloat16', bf16), ('float32 again', fp32)):
            sync(); t = time.perf_counter()
            s = ev(StageView(env.G, env.resolution, cfg.state_pooling)); sync()
            if name != 'float32 again': seconds[name].append(time.perf_counter() - t)
            row[name] = dict(IS=s.is_mean, FID=s.fid, reward=search_score(s.is_mean, s.fid, cfg.alpha))
        assert row['float32'] == row['float32 again'], 'float32 rewards of one generator differ between calls'
        del row['float32 again']
        rows.append(row)
        print(f"{k + 1:3d} {row['arch']:>40}  reward float32 {row['float32']['reward']:8.4f}  bfloat16 {row['bfloat16']['reward']:8.4f}", flush=True)
    out = dict(preset=args.preset, backend=cfg.backend, device=str(fp32.device), archs=args.archs, rows=rows,
               seconds_per_reward={k: float(np.median(v)) for k, v in seconds.items()})
    for key in ('reward', 'IS', 'FID'):
        a, b = (np.array([r[prec][key] for r in rows]) for prec in ('float32', 'bfloat16'))
        out[f'spearman_{key}'] = float(spearmanr(a, b).statistic)
        if key == 'reward':
            rank_a, rank_b = np.argsort(np.argsort(-a)), np.argsort(np.argsort(-b))
            out['largest_rank_change'] = int(np.abs(rank_a - rank_b).max())
            out['same_best'] = bool(np.argmax(a) == np.argmax(b))
            out['max_abs_reward_change'] = float(np.abs(a - b).max())
    if args.json: print(json.dumps(out, indent=2)); return
    t = out['seconds_per_reward']
    print(f"{args.archs} trained proxy generators ({args.preset}, {cfg.backend}, {fp32.device}): Spearman rho float32 vs "
          f"bfloat16: reward {out['spearman_reward']:.4f}, IS {out['spearman_IS']:.4f}, FID {out['spearman_FID']:.4f}; "
          f"largest change of rank {out['largest_rank_change']}, same best: {out['same_best']}, largest reward change "
          f"{out['max_abs_reward_change']:.4f}; seconds per reward: float32 {t['float32']:.3f}, bfloat16 {t['bfloat16']:.3f} "
          f"({t['bfloat16'] / t['float32']:.2f}x)")


if __name__ == '__main__':
    main()
