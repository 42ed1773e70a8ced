"""Memory and time of three options from the slides: activation checkpointing, channels_last, and
normalizing images on the device.

Latest (2026-12-03 19:00 UTC, AMD EPYC, 2 logical CPUs): activation checkpointing saves 0.32x the
bytes for backward (step peak 0.74x) at 1.38x the step time; channels_last 0.94x the step time;
normalize_on_device 0.99x the loader's CPU time with 1/4 the bytes per batch (cpu); see
docs/benchmarks.md.

The first two on ResNet-18 (CIFAR stem, blocks [2,2,2,2], widths [64,128,256,512], 11.2 M params),
one training step (forward, cross-entropy, backward) on a batch of --batch 3x32x32 images:
  - `model.activation_checkpointing=true` vs off: the bytes of activations autograd saves for the
    backward pass (each storage once; the parameters, which it saves too, not counted; from
    torch.autograd.graph.saved_tensors_hooks: exact, the same on any machine), the peak memory of the
    first step of a fresh process above what it held before (on CUDA torch.cuda.max_memory_allocated;
    on CPU the peak RSS from /proc/self/status, glibc told to return freed blocks at once so RSS
    follows the allocations; both include the gradients, allocated in that step), and the step time;
  - `trainer.channels_last=true` vs NCHW: the step time.
Then `data.normalize_on_device=true` vs off on CIFAR-10-format files written here (random pixels,
--images training images, the real pickled layout): one epoch through the DataLoader with
--workers workers and the training augmentation, each batch moved to --device and standardized
there; reported: images per second, CPU time per image (this process and its workers: the work,
which other load disturbs less than the wall clock) and bytes per batch handed to the device. On a CPU the "device"
is the same memory, so the gain here is the workers' float conversion and normalization only; on
a GPU the host-to-device copy is 4x smaller too.

Variants are interleaved, the order rotated each round (benchmarks/_harness.py), --repeats samples
each after a warm-up; medians reported, ratio = option / off.

To run (about 3 minutes on 2 CPU cores):
    python benchmarks/memory_options.py
    python benchmarks/memory_options.py --device cuda --batch 256
    python benchmarks/memory_options.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # run as a file, only benchmarks/ is on the path
from benchmarks import _harness, _report  # noqa: E402
from benchmarks._report import fmt_ratio  # noqa: E402


def mib(b: int) -> str:
    return f"{b / 2**20:.1f} MiB"


def resnet18(checkpointing: bool = False, channels_last: bool = False):
    import torch

    from optlab.models.checkpointing import checkpoint_blocks
    from optlab.models.resnet import ResNet

    torch.manual_seed(0)
    net = ResNet(blocks=[2, 2, 2, 2], widths=[64, 128, 256, 512], in_channels=3, num_classes=10)
    if checkpointing:
        checkpoint_blocks(net)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def training_step(net, x, y):
    """One forward + backward, the gradients reset (kept allocated) before it."""
    import torch

    for p in net.parameters():
        p.grad = None if p.grad is None else p.grad.zero_()
    torch.nn.functional.cross_entropy(net(x), y).backward()


def batch(size: int, device: str, channels_last: bool = False):
    import torch

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(device), y.to(device)


def saved_bytes(net, x, y) -> int:
    """Bytes of the activations autograd saves for the backward pass (each storage once, parameters not counted)."""
    import torch

    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}  # saved too, but kept anyway

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return sum(storages.values())


def _rss(field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since exec or the last reset) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_child(args) -> None:
    """--peak-of off|checkpointing: print this process's step peak memory as JSON (run fresh per variant)."""
    import torch

    net = resnet18(checkpointing=args.peak_of == "checkpointing").to(args.device)
    x, y = batch(args.batch, args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak RSS) to the RSS now
        before = _rss("VmRSS")
    training_step(net, x, y)  # the first: its gradients (the same in both variants) are allocated in it
    if args.device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _rss("VmHWM") - before
    print(json.dumps({"peak": peak}))


def step_peak(variant: str, args) -> int:
    cmd = [sys.executable, __file__, "--peak-of", variant, "--batch", str(args.batch), "--device", args.device]
    # glibc returns freed blocks of 64 KiB or more to the OS at once (no dynamic threshold), so RSS
    # follows what is allocated
    env = _harness.subprocess_env(MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def write_cifar10(root: Path, images: int) -> None:
    """CIFAR-10's python files with random pixels: 5 training batches and a test batch."""
    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = max(images // 5, 1)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": rng.integers(0, 10, n).tolist()}, f, protocol=4)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f, protocol=4)


def loader_epoch(datamodule, device: str) -> dict:
    """One pass over the training loader, each batch moved and (on the device, where asked) standardized:
    wall seconds, CPU seconds of this process and its loader workers together (the work, which other
    load disturbs far less), and the bytes handed to the device per full batch."""
    import resource
    import time

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, wall = time.process_time(), time.perf_counter()
    nbytes = 0
    loader = datamodule.train_dataloader()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if len(y) == datamodule.batch_size:
            nbytes = x.nelement() * x.element_size()
        datamodule.on_after_batch_transfer((x, y), 0)
    if getattr(loader, "_iterator", None) is not None:
        loader._iterator._shutdown_workers()  # reaped now, so their CPU time is counted below
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"wall": wall, "cpu": time.process_time() - cpu + workers, "bytes": nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--images", type=int, default=10000, help="training images of the generated CIFAR-10")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="loader epochs per variant")
    parser.add_argument("--peak-of", choices=["off", "checkpointing"], help=argparse.SUPPRESS)
    _report.add_output_args(parser)
    args = parser.parse_args()
    if args.peak_of:
        return peak_child(args)

    import torch

    started, load_before = _report.now(), _report.load()
    sync = torch.cuda.synchronize if args.device == "cuda" else None

    # Activation checkpointing and channels_last: one step of ResNet-18.
    nets = {
        "off": resnet18().to(args.device),
        "checkpointing": resnet18(checkpointing=True).to(args.device),
        "channels_last": resnet18(channels_last=True).to(args.device),
    }
    inputs = {name: batch(args.batch, args.device, channels_last=name == "channels_last") for name in nets}
    saved = {name: saved_bytes(nets[name], *inputs[name]) for name in ("off", "checkpointing")}
    peaks = {name: step_peak(name, args) for name in ("off", "checkpointing")}
    steps = {name: (lambda n=name: training_step(nets[n], *inputs[n])) for name in nets}
    timed = _harness.sample_interleaved(steps, args.warmup, args.repeats, calls=1, sync=sync)
    ms = {name: timed[name]["median"] * 1e3 for name in nets}
    peak_kind = "CUDA max_memory_allocated" if args.device == "cuda" else "peak RSS growth"
    step_table = _report.Table(
        [
            "ResNet-18 step",
            "activations saved for backward",
            f"step peak ({peak_kind})",
            "ms/step (median)",
            "time / off",
        ],
        [
            ["off", mib(saved["off"]), mib(peaks["off"]), f"{ms['off']:.0f}", "1.00x"],
            [
                "activation_checkpointing",
                f"{mib(saved['checkpointing'])} ({saved['checkpointing'] / saved['off']:.2f}x)",
                f"{mib(peaks['checkpointing'])} ({peaks['checkpointing'] / max(peaks['off'], 1):.2f}x)",
                f"{ms['checkpointing']:.0f}",
                fmt_ratio(ms["checkpointing"] / ms["off"]),
            ],
            ["channels_last", "", "", f"{ms['channels_last']:.0f}", fmt_ratio(ms["channels_last"] / ms["off"])],
        ],
    )

    # Normalizing on the device: one epoch of the CIFAR-10 loader.
    from optlab.data.cifar10 import CIFAR10DataModule

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), args.images)
        modules = {}
        for on_device in (False, True):
            dm = CIFAR10DataModule(
                root=tmp, verify_md5=False, val_size=0, batch_size=128, num_workers=args.workers,
                pin_memory=args.device == "cuda", normalize_on_device=on_device,
            )  # fmt: skip
            dm.setup("fit")
            modules["device" if on_device else "workers"] = dm
        loader_epoch(modules["workers"], args.device)  # warm-up: file cache, imports in the workers
        epochs: dict[str, list[dict]] = {name: [] for name in modules}
        for _, name in _harness.interleaved(list(modules), args.epochs):
            epochs[name].append(loader_epoch(modules[name], args.device))
        n_images = len(modules["workers"].train_set)
    wall = {name: statistics.median(e["wall"] for e in runs) for name, runs in epochs.items()}
    cpu = {name: statistics.median(e["cpu"] for e in runs) for name, runs in epochs.items()}
    per_batch = {name: runs[0]["bytes"] for name, runs in epochs.items()}
    loader_table = _report.Table(
        [
            "CIFAR-10 loader epoch",
            "images/s (median)",
            "CPU us/image",
            "bytes to the device per batch",
            "CPU / workers",
        ],
        [
            [
                "normalized in the workers (float32)" if name == "workers" else "normalize_on_device (uint8)",
                f"{n_images / wall[name]:.0f}",
                f"{cpu[name] / n_images * 1e6:.0f}",
                mib(per_batch[name]),
                fmt_ratio(cpu[name] / cpu["workers"]),
            ]
            for name in ("workers", "device")
        ],
    )
    body = (
        f"Device {args.device}, batch {args.batch} (ResNet-18 step; {args.repeats} interleaved samples after "
        f"{args.warmup} warm-up steps each), torch threads {_harness.torch_threads()}.\n\n{step_table}\n\n"
        f"{n_images} generated CIFAR-10 training images, batch 128, {args.workers} workers, augmentation on, "
        f"{args.epochs} interleaved epochs each; CPU = this process and its workers.\n\n{loader_table}\n"
    )
    headline = (
        f"activation checkpointing saves {saved['checkpointing'] / saved['off']:.2f}x the bytes for backward "
        f"(step peak {peaks['checkpointing'] / max(peaks['off'], 1):.2f}x) at "
        f"{fmt_ratio(ms['checkpointing'] / ms['off'])} the step time; channels_last "
        f"{fmt_ratio(ms['channels_last'] / ms['off'])} the step time; normalize_on_device "
        f"{fmt_ratio(cpu['device'] / cpu['workers'])} the loader's CPU time with 1/4 the bytes per batch "
        f"({args.device})"
    )
    _report.publish(
        args, "Activation checkpointing, channels_last, normalize_on_device", body, started, load_before,
        headline=headline, table=step_table,
    )  # fmt: skip


if __name__ == "__main__":
    main()
