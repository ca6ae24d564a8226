"""G and D steps per second of the retraining recipe in 1 and N data-parallel processes (a benchmark, not a test).

    python benchmarks/bench_ddp.py --device cpu --nproc 1 2                      # CPU processes, gloo (the cpu preset's widths)
    python benchmarks/bench_ddp.py --device cuda --nproc 1 2 4 --gf-dim 256 --df-dim 128 --g-batch 128 --d-batch 64   # GPUs, NCCL

Every process count runs the same global batches (each process takes its share), through the one `GanTrainer` step that
`e2gan train --nproc N` uses, launched by the same launcher (`e2gan.retrain.launch`). With N = 1 the step is the plain
single-process one (no DDP, no synchronised batch norm). Rates are global steps per second, timed on rank 0 between barriers.
"""
import argparse, json, os, time
import torch


def _sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def worker(opts: dict, path: str) -> None:
    import torch.distributed as dist
    from e2gan.data import to_float
    from e2gan.retrain import init_distributed, make_config, build_models
    from e2gan.training import GanConfig, GanTrainer
    from e2gan.utils import configure_threads
    configure_threads(opts['threads'])
    device, started = init_distributed(opts['device'])
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    cfg = make_config('e2gan-cifar10', dataset='cifar10', gf_dim=opts['gf_dim'], df_dim=opts['df_dim'])
    G, D = build_models(cfg, 3)
    t = GanTrainer(G, D, GanConfig(g_batch=opts['g_batch'], d_batch=opts['d_batch'], ema_decay=0.999), device,
                   generator=torch.Generator(device).manual_seed(0))
    real = to_float(torch.randint(0, 256, (opts['d_batch'] // world, 3, 32, 32), dtype=torch.uint8, device=device))
    def barrier():
        _sync(device)
        if world > 1: dist.barrier()
    for _ in range(opts['warmup']): t.d_step(real, None); t.g_step(None)
    barrier(); start = time.perf_counter()
    for _ in range(opts['steps']): t.d_step(real, None)
    barrier(); d_rate = opts['steps'] / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(opts['steps']): t.g_step(None)
    barrier(); g_rate = opts['steps'] / (time.perf_counter() - start)
    if rank == 0:
        with open(path, 'w') as f: json.dump(dict(processes=world, d_steps_per_s=d_rate, g_steps_per_s=g_rate, device=str(device)), f)
    if started: dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--nproc', type=int, nargs='+', default=[1, 2])
    p.add_argument('--device', default='cpu')
    p.add_argument('--gf-dim', type=int, default=32); p.add_argument('--df-dim', type=int, default=32)
    p.add_argument('--g-batch', type=int, default=64); p.add_argument('--d-batch', type=int, default=32)
    p.add_argument('--steps', type=int, default=20); p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--threads', type=int, default=1, help='torch threads per process (CPU)')
    args = p.parse_args()
    from e2gan.retrain import launch
    opts = dict(device=args.device, gf_dim=args.gf_dim, df_dim=args.df_dim, g_batch=args.g_batch, d_batch=args.d_batch,
                steps=args.steps, warmup=args.warmup, threads=args.threads)
    rows = []
    for n in args.nproc:
        path = f'/tmp/e2gan-bench-ddp-{os.getpid()}-{n}.json'
        launch(n, worker, opts, path)
        with open(path) as f: rows.append(json.load(f))
        os.remove(path)
    print(json.dumps(dict(settings=opts, torch=torch.__version__, cpus=os.cpu_count(), results=rows), indent=2))
    base = rows[0]
    for r in rows:
        print(f"{r['processes']} process(es) on {r['device']}: {r['d_steps_per_s']:.2f} D steps/s, {r['g_steps_per_s']:.2f} G steps/s "
              f"(x{r['d_steps_per_s'] / base['d_steps_per_s']:.2f} / x{r['g_steps_per_s'] / base['g_steps_per_s']:.2f} of {base['processes']})")


if __name__ == '__main__':
    main()
