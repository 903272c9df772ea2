"""Wall time of acpg_lab.metrics at rollout scale, on CPU.

Times `action_collapse` and `representation` on N samples of d-dimensional float32 features with K
classes (default N = 50,000, d = 512, K = 6: an Atari-sized rollout batch with a NatureCNN feature layer), and
compares nc1 with a dense reference that forms the d x d matrices Σ_W and Σ_B and a d x d pseudo-inverse.
Also times the singular-value routes `representation` could have used. Prints the median of a few repeats.

    .venv/bin/python scripts/bench_metrics.py [--n 50000] [--d 512] [--k 6] [--repeats 5] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from acpg_lab.metrics import action_collapse, representation, singular_values


def dense_nc1(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """nc1 = tr(Σ_W Σ_B⁺)/K with d x d matrices and a dense pseudo-inverse (float64), the textbook way."""
    h = features.to(torch.float64)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)
    means = (onehot.T @ h) / onehot.sum(0)[:, None]
    centred = means - means.mean(0)
    resid = h - means[labels]
    sigma_w = resid.T @ resid / h.shape[0]
    sigma_b = centred.T @ centred / num_classes
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / num_classes)


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> tuple[float, object]:
    if warmup:
        fn()  # allocator, lazy initialisation
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="number of samples N")
    parser.add_argument("--d", type=int, default=512, help="feature width d")
    parser.add_argument("--k", type=int, default=6, help="number of classes (actions) K")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is printed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); 1 is steadier when busy")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.k, (args.n,), generator=gen)
    centres = torch.randn(args.k, args.d, generator=gen)
    features = (centres[labels] + torch.randn(args.n, args.d, generator=gen)).relu()
    weights = torch.randn(args.k, args.d, generator=gen)

    print(f"N={args.n}  d={args.d}  K={args.k}  float32 features  torch {torch.__version__}  "
          f"{torch.get_num_threads()} threads  median of {args.repeats}")
    t_ac, ac = median_time(lambda: action_collapse(features, labels, weights), args.repeats)
    t_dense, nc1_dense = median_time(lambda: dense_nc1(features, labels, args.k), args.repeats)
    t_rep, _ = median_time(lambda: representation(features, features), args.repeats)
    t_gram, _ = median_time(lambda: singular_values(features), args.repeats)
    # The SVD routes are slow: one run each, for comparison only.
    t_svd32, _ = median_time(lambda: torch.linalg.svdvals(features), 1, warmup=False)
    t_svd64, _ = median_time(lambda: torch.linalg.svdvals(features.double()), 1, warmup=False)

    print(f"action_collapse (all 9 values)      {t_ac * 1e3:8.1f} ms   nc1 = {ac['nc1']:.6g}")
    print(f"dense reference nc1 only (d x d)     {t_dense * 1e3:8.1f} ms   nc1 = {nc1_dense:.6g}   "
          f"ratio dense / action_collapse = {t_dense / t_ac:.1f}x")
    print(f"representation (all 8 values)       {t_rep * 1e3:8.1f} ms")
    print(f"  singular_values (float64 Gram)    {t_gram * 1e3:8.1f} ms")
    print(f"  torch.linalg.svdvals float32      {t_svd32 * 1e3:8.1f} ms   (1 run)")
    print(f"  torch.linalg.svdvals float64      {t_svd64 * 1e3:8.1f} ms   (1 run)")


if __name__ == "__main__":
    main()
