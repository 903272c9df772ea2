"""How the seed-batched Nature CNN runs its convolutions: once per seed (what `NatureCNN` does) against one
grouped convolution with the seeds as groups (the peer), measured in the same run on the same weights.

Times forward + backward of the backbone on a minibatch of Atari frame stacks per seed and prints both times
and their ratio (> 1: the per-seed loop is faster). Measured on the 2-core CPU machine, 4 seeds x 256 frames,
one thread: 1.25-1.4x in favour of the loop; on a GPU, run it with --device cuda before scaling up.

    python scripts/bench_nature_cnn.py [--seeds 4] [--batch 256] [--repeats 5] [--threads 1] [--device cpu]
"""

import argparse
import time

import torch
from torch.nn import functional as F

from acpg_lab.networks import NatureCNN


def grouped_forward(net: NatureCNN, obs: torch.Tensor) -> torch.Tensor:
    """The peer: the same network with every seed's convolution in one grouped call."""
    s, b = obs.shape[:2]
    x = (obs / 255.0).transpose(0, 1).reshape(b, -1, *obs.shape[3:])  # [B, S*C, H, W]
    for conv, (_, _, stride) in zip(net.convs, net.SPECS, strict=True):
        x = net.act(F.conv2d(x, conv["weight"].flatten(0, 1), conv["bias"].flatten(), stride=stride, groups=s))
    h = x.reshape(b, s, -1).transpose(0, 1)
    for layer in net.dense:
        h = net.act(layer(h))
    return h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = NatureCNN((4, 84, 84), (512,), "relu", [torch.Generator().manual_seed(s) for s in range(args.seeds)])
    net = net.to(device)
    obs = torch.randint(0, 256, (args.seeds, args.batch, 4, 84, 84), device=device).float()
    torch.testing.assert_close(net(obs)[0], grouped_forward(net, obs), rtol=1e-4, atol=1e-4)  # same function

    def timed(forward) -> float:
        forward(obs).square().mean().backward()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            forward(obs).square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.repeats

    t_loop = timed(lambda o: net(o)[0])
    t_grouped = timed(lambda o: grouped_forward(net, o))
    print(f"{args.seeds} seeds x {args.batch} frames, forward + backward, {args.device}, {args.threads} thread(s)")
    print(f"  NatureCNN, one convolution per seed: {t_loop * 1e3:8.1f} ms")
    print(f"  one grouped convolution (peer):      {t_grouped * 1e3:8.1f} ms")
    print(f"  ratio grouped / per-seed: {t_grouped / t_loop:.2f}x")


if __name__ == "__main__":
    main()
