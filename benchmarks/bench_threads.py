"""Seconds of a slice of a small GAN epoch on the CPU with different torch thread counts (and D-step forms).

Small convolutions are launch- and barrier-bound: on shared cores more threads are often slower. Each setting runs in
a fresh process, so that torch's thread pool is set before any work:

    python benchmarks/bench_threads.py --threads 1 2
"""
import argparse, subprocess, sys

CODE = '''
import sys, time, torch
torch.set_num_threads({threads})
from e2gan.models import Generator, Discriminator
from e2gan.training import GanConfig, GanTrainer
torch.manual_seed(0)
G, D = Generator('e2gan-cifar10', gf_dim={width}, latent_dim=64, bottom_width=4), Discriminator(df_dim={width})
t = GanTrainer(G, D, GanConfig(d_batch=32, g_batch=64, joint_d_forward={joint}), device='cpu',
               generator=torch.Generator().manual_seed(0))
images = torch.randint(0, 256, (32 * {steps}, 3, 32, 32), dtype=torch.uint8)
t.train_epoch(images[:64])                                     # warm-up
s = time.perf_counter(); t.train_epoch(images); print(time.perf_counter() - s)
'''


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    p.add_argument('--steps', type=int, default=20, help='D steps (a G step after every 5)')
    p.add_argument('--width', type=int, default=32, help='gf_dim and df_dim')
    p.add_argument('--separate-d-calls', action='store_true', help='also time joint_d_forward=False')
    args = p.parse_args()
    for joint in ([True, False] if args.separate_d_calls else [True]):
        for n in args.threads:
            code = CODE.format(threads=n, width=args.width, joint=joint, steps=args.steps)
            out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
            print(f'{n} thread(s), joint_d_forward={joint}: {float(out):6.2f} s for {args.steps} D and {args.steps // 5} G steps')


if __name__ == '__main__':
    main()
