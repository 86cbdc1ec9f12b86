"""Model-level benchmark: I3D-R50-DSA (the paper's configuration) and TSM-R50-DSA, a training step
(forward + backward + SGD step) and inference, in clips per second, with DSA as the paper's eager module
(`reference`), as DSAConv (`dsa_ops`), and without DSA (`none`); DSA's share of the step is the extra time
over the network without it.

    python -m benchmarks.bench_model [--device cuda] [--archs i3d,tsm] [--dtypes float32,bfloat16]
                                     [--channels-last] [--videos N] [--width W] [--size S]

On a GPU the defaults are the paper's (4 videos x U=4 x 8 x 224^2 for I3D, 8 segments x 224^2 for TSM,
full width); on the CPU a narrow, small-resolution version. bfloat16 runs under autocast.
"""
import argparse
import contextlib

import torch
from torch import nn

import dsa_ops
from dsa_ops.bench.cli import usable_device
from dsa_ops.bench.timing import measure
from dsa_ops.models import i3d_resnet50, tsm_resnet50

VARIANTS = ("none", "reference", "dsa_ops")


def build(arch, variant, args):
    kwargs = dict(width=args.width, dsa=variant != "none")
    if variant != "none":
        kwargs["backend"] = "reference" if variant == "reference" else "auto"
    if arch == "i3d":
        return i3d_resnet50(400, num_segments=4, **kwargs), (args.videos, 4, 3, args.frames, args.size, args.size)
    return tsm_resnet50(174, num_segments=8, **kwargs), (args.videos, 8, 3, args.size, args.size)


def steps(model, clips, labels, device, dtype):
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train():
        with autocast:
            loss = nn.functional.cross_entropy(model(clips), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer():
        with torch.no_grad(), autocast:
            model(clips)

    return train, infer


def run(args):
    device = args.device
    results = []
    for arch in args.archs:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            for variant in VARIANTS:
                torch.manual_seed(0)
                model, shape = build(arch, variant, args)
                clips = torch.randn(shape)
                layout = torch.channels_last_3d if arch == "i3d" else torch.channels_last
                model = model.to(device)
                if args.channels_last:
                    model = model.to(memory_format=layout)
                    clips = clips.flatten(0, 1).contiguous(memory_format=layout).view(shape)
                clips = clips.to(device)
                labels = torch.randint(0, model.fc.out_features, (shape[0],), device=device)
                train, infer = steps(model, clips, labels, device, dtype)
                model.train()
                train_time = measure(train, device, min_run_time=args.min_time, warmup=2)[0]
                model.eval()
                infer_time = measure(infer, device, min_run_time=args.min_time, warmup=2)[0]
                results.append(dict(arch=arch, dtype=dtype_name, variant=variant, train_ms=train_time * 1e3,
                                    train_clips_s=shape[0] / train_time, infer_clips_s=shape[0] / infer_time,
                                    infer_ms=infer_time * 1e3))
    return results


def table(results):
    lines = [f"{'arch':<5} {'dtype':<9} {'dsa':<10} {'train ms':>9} {'clips/s':>8} {'DSA share':>9} "
             f"{'infer ms':>9} {'clips/s':>8} {'DSA share':>9}"]
    for r in results:
        base = next(b for b in results if (b["arch"], b["dtype"], b["variant"]) == (r["arch"], r["dtype"], "none"))
        share_train = "" if r["variant"] == "none" else f"{(r['train_ms'] / base['train_ms'] - 1) * 100:+.1f}%"
        share_infer = "" if r["variant"] == "none" else f"{(r['infer_ms'] / base['infer_ms'] - 1) * 100:+.1f}%"
        lines.append(f"{r['arch']:<5} {r['dtype']:<9} {r['variant']:<10} {r['train_ms']:>9.2f} "
                     f"{r['train_clips_s']:>8.1f} {share_train:>9} {r['infer_ms']:>9.2f} {r['infer_clips_s']:>8.1f} "
                     f"{share_infer:>9}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="i3d,tsm")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed steps per row")
    args = parser.parse_args(argv)
    try:
        args.device = usable_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    gpu = args.device.type == "cuda"
    for name, default in (("videos", 4 if gpu else 2), ("width", 64 if gpu else 8), ("size", 224 if gpu else 32),
                          ("frames", 8)):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be an int >= 1, got {value}")
        setattr(args, name, default if value is None else value)
    if not args.min_time > 0:
        parser.error(f"--min-time must be > 0 seconds, got {args.min_time}")
    args.archs = [a for a in args.archs.split(",") if a]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = sorted(set(args.archs) - {"i3d", "tsm"}) + sorted(set(args.dtypes) - {"float32", "bfloat16"})
    if unknown:
        parser.error(f"unknown archs/dtypes {unknown}; archs: i3d, tsm; dtypes: float32, bfloat16")
    return args


def main(argv=None):
    args = parse_args(argv)
    device_name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(f"dsa_ops {dsa_ops.__version__}, torch {torch.__version__}, {device_name}; {args.videos} videos, width "
          f"{args.width}, {args.size}^2{', channels_last' if args.channels_last else ''}")
    print(table(run(args)))


if __name__ == "__main__":
    main()
