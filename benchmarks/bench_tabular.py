"""The claim on a tabulated proxy task: every agent x seeds x trajectories on a table, judged by exact true regret.

    python benchmarks/bench_tabular.py --table tabular-shapes --seeds 30          # the design table
    python benchmarks/bench_tabular.py --table tabular-fashion-mnist --seeds 30   # the report table, once, at the end
    python benchmarks/bench_tabular.py --rescore 10             # the last 10 of the 100 re-build the best 5 on common seeds

Each run (agent, seed) is saved to `--runs/TABLE/AGENT-seedS.json` as it finishes and skipped when the command is run
again, so a stopped benchmark continues. Runs go seed by seed (every agent's seed 0, then seed 1, ...), so a stopped
benchmark leaves every agent with the same seeds. At the end (or with --summarize, from whatever runs exist) it
writes `--out`.txt (the claim table: median true regret with bootstrap 95% interval, ratio to random search, share of
runs handing over a top-1% architecture), `--out`.png (regret against trajectories) and `--out`.json. A benchmark,
not a test: the figures of one run on one machine.
"""
import argparse, json, os, sys, time
import numpy as np
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
AGENT_NAMES = ('sac-categorical', 'sac', 'reinforce', 'random', 'sb3-sac')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--table', default='tabular-shapes', help='a shipped table name or a table file')
    p.add_argument('--seeds', type=int, default=30)
    p.add_argument('--trajectories', type=int, default=100)
    p.add_argument('--agents', default=','.join(AGENT_NAMES))
    p.add_argument('--runs', default='runs/bench-tabular', help='folder of the per-run results (resumable)')
    p.add_argument('--out', help='prefix of the .txt/.png/.json summary (default: nbs/images/tabular-claim-NAME)')
    p.add_argument('--rescore', type=int, default=0, help='the last K trajectories of each run re-build its best candidates')
    p.add_argument('--repeats', type=int, default=2, help='with --rescore: builds per candidate (K // repeats candidates)')
    p.add_argument('--unpaired', action='store_true', help='with --rescore: a fresh seed per build (not common random numbers)')
    p.add_argument('--summarize', action='store_true', help='only summarise the runs that exist')
    args = p.parse_args(argv)
    from e2gan.bench import PEERS, benchmark_run, claim_table, format_claim_table, plot_regret_curves, tabular_env
    from e2gan.loop import n_exploring
    env = tabular_env(args.table)
    rescoring = dict(rescore=args.rescore, repeats=args.repeats, paired=not args.unpaired) if args.rescore else {}
    name = Path(str(args.table)).stem.replace('tabular-', '')
    if rescoring: name += f'-rescore{args.rescore}x{args.repeats}' + ('-unpaired' if args.unpaired else '')
    runs_dir, out = Path(args.runs) / name, Path(args.out or f'nbs/images/tabular-claim-{name}')
    runs_dir.mkdir(parents=True, exist_ok=True)
    agents = args.agents.split(',')
    import hashlib          # the runs belong to these true scores: a table still growing keeps them until a seed completes
    stamp = dict(table=str(args.table), scores_sha256=hashlib.sha256(env.all_scores().tobytes()).hexdigest(),
                 gan_seeds=len(env.seeds), trajectories=args.trajectories, **rescoring)
    for seed in range(args.seeds if not args.summarize else 0):
        for agent in agents:
            path = runs_dir / f'{agent}-seed{seed}.json'
            if path.exists() and json.loads(path.read_text())['stamp'] == stamp: continue
            run = benchmark_run(lambda: env, PEERS.get(agent, agent), seed, args.trajectories, **rescoring)
            path.write_text(json.dumps(dict(stamp=stamp, run=run)))
            print(f"{agent:16s} seed {seed:2d}: regret {run['regret']:.3f} ({run['seconds']:.0f} s)", flush=True)
    results = {a: [] for a in agents}
    for a in agents:
        for seed in range(args.seeds):
            path = runs_dir / f'{a}-seed{seed}.json'
            if path.exists() and (d := json.loads(path.read_text()))['stamp'] == stamp: results[a].append(d['run'])
    n = min(len(r) for r in results.values())
    if n == 0: sys.exit(f'no finished runs of every agent on this table in {runs_dir}: run without --summarize first')
    results = {a: r[:n] for a, r in results.items()}       # every agent on the same seeds
    rows = claim_table(results, env)
    best, score = env.optimum()
    rescored = (f" (the last {args.rescore} re-building the best {args.rescore // args.repeats}, "
                f"{'a fresh seed per build' if args.unpaired else 'on common seeds'})" if rescoring else '')
    head = (f"{env}: optimum {' '.join(map(str, best.to_vector()))} (true score {score:.3f}); {args.trajectories} trajectories{rescored}, "
            f"agent seeds 0-{n - 1}")
    text = head + '\n' + format_claim_table(rows)
    # why an agent loses, measured: how varied its hand-overs are, and how often it is the all-zero architecture, which a
    # Gaussian actor's saturated logits (tanh = 1 on every option of a head) decode to, argmax taking the first of equals
    zero = [0] * len(best.to_vector())
    text += '\n' + '\n'.join(f"{a:16s} {len({tuple(r['arch']) for r in rs}):3d} distinct architectures handed over in {len(rs)} runs; "
                              f"the all-zero one in {sum(r['arch'] == zero for r in rs)}" for a, rs in results.items())
    # what each builds once a learner exploits (the last 30% of the budget): the learning itself, before the hand-over's luck
    searched = args.trajectories - args.rescore          # re-scoring builds come after the search's own trajectories
    k = n_exploring(searched)
    for a, rs in results.items():
        built = np.array([np.mean(r['trajectory_regrets'][k:searched]) for r in rs])
        text += (f"\n{a:16s} mean true regret of the architectures built in trajectories {k}-{searched - 1}: "
                 f"{built.mean():.3f} (per run {built.min():.3f}-{built.max():.3f})")
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.txt').write_text(text + '\n')
    plot_regret_curves(results, out.with_suffix('.png'), window=10)
    out.with_suffix('.json').write_text(json.dumps(dict(stamp=stamp, seeds=n, rows=rows,
                                                        regrets={a: [r['regret'] for r in rs] for a, rs in results.items()}), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
