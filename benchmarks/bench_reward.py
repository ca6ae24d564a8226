"Time one E2GAN reward (IS + FID of 5,000 generated images), split into generation, features and statistics."
import argparse, json
from e2gan.metrics import BACKENDS
from e2gan.bench import benchmark_reward

def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='shapes')
    p.add_argument('--resolution', type=int, default=32)
    p.add_argument('--num-images', type=int, default=5000)
    p.add_argument('--backend', default='classifier', choices=BACKENDS)
    p.add_argument('--device', default=None)
    p.add_argument('--gf-dim', type=int, default=128)
    p.add_argument('--batch-size', type=int, default=500)
    p.add_argument('--cache-dir', default=None)
    p.add_argument('--inception-weights', default=None)
    a = p.parse_args(argv)
    result = benchmark_reward(dataset=a.dataset, resolution=a.resolution, num_images=a.num_images, backend=a.backend,
                              device=a.device, gf_dim=a.gf_dim, batch_size=a.batch_size, cache_dir=a.cache_dir,
                              inception_weights=a.inception_weights)
    print(json.dumps(result, indent=1))
    return result

if __name__ == '__main__': main()
