"""Parallel search on Ray: wall time of the quick search with 1 and 2 workers, and the regret cost of staleness.

    python benchmarks/bench_parallel.py                      # both parts (about 25 minutes on two CPU cores)
    python benchmarks/bench_parallel.py --skip-wall          # only the staleness part
    python benchmarks/bench_parallel.py --seeds 10 --workers 1 2 4 8

Part 1 runs `e2gan search --preset quick` (the README's quickstart, 100 trajectories) with --workers 1 and
--workers 2, one after the other in this run, and prints the wall times and their ratio (the goal: 2 workers in
at most 0.6x the time of 1). The 2-worker time includes starting a local Ray instance (127.0.0.1 only) and the
workers. Part 2 runs `e2gan.bench.staleness_regret`: the categorical SAC on surrogate landscape 0, 100
trajectories, with 1 (serial) and N workers, and prints the median true regret handed over and of the
exploitation trajectories, with the ratio to the serial search. A benchmark, not a test: figures from one run.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')


def wall_time(workers: int, root: Path, trajectories: int | None) -> tuple[float, float]:
    out = root / f'quick-{workers}'
    cmd = [sys.executable, '-c', 'from e2gan.cli import main; raise SystemExit(main())', 'search', '--preset', 'quick',
           '--workers', str(workers), '--out', str(out), '--quiet']
    if trajectories: cmd += ['--trajectories', str(trajectories)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    summary = json.loads((out / 'summary.json').read_text())
    print(f"--workers {workers}: {seconds:6.1f} s wall, {summary['trajectories']} trajectories, best observed "
          f"{summary['best_observed']['score']:.3f}, staleness {summary.get('staleness_mean', 0.0):.2f}; "
          f"the search loop alone {summary['seconds']:.1f} s", flush=True)
    return seconds, summary['seconds']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--skip-wall', action='store_true', help='skip the quick-search wall times')
    p.add_argument('--skip-staleness', action='store_true', help='skip the staleness regret')
    p.add_argument('--trajectories', type=int, help='budget of the quick searches (default: the preset, 100)')
    p.add_argument('--seeds', type=int, default=5, help='agent seeds of the staleness part')
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2, 4, 8], help='worker counts of the staleness part')
    args = p.parse_args(argv)
    print(f'{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]}', flush=True)
    if not args.skip_wall:
        root = Path(tempfile.mkdtemp(prefix='e2gan-bench-parallel-'))
        t1 = wall_time(1, root, args.trajectories)
        t2 = wall_time(2, root, args.trajectories)
        print(f'quick search, 2 workers / 1 worker: {t2[0] / t1[0]:.2f}x the wall time (goal <= 0.6x), '
              f'{t2[1] / t1[1]:.2f}x the time of the search loop (without starting Python, Ray and the workers)', flush=True)
    if not args.skip_staleness:
        from e2gan.bench import staleness_regret, format_staleness
        start = time.perf_counter()
        rows = staleness_regret(workers=args.workers, seeds=range(args.seeds))
        print(f'staleness on the surrogate (sac-categorical, landscape 0, 100 trajectories, {args.seeds} seeds; '
              f'{time.perf_counter() - start:.0f} s):')
        print(format_staleness(rows))
        print(json.dumps(rows))


if __name__ == '__main__':
    main()
