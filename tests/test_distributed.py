"""Two-process torch.distributed (gloo, CPU): a DDP training step of a small DSA model equals one
process's step on the concatenated batch, and a generator BatchNorm converted to SyncBatchNorm is never
silently left unsynchronised."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import dsa_ops

U, VIDEOS_PER_RANK, WORLD = 4, 2, 2


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), dsa_ops.DSAConv(16, U_segment=U, split_ratio=0.5),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


def batch():
    generator = torch.Generator().manual_seed(1)
    clips = torch.randn(WORLD * VIDEOS_PER_RANK * U, 3, 6, 6, generator=generator)
    labels = torch.randint(0, 5, (WORLD * VIDEOS_PER_RANK * U,), generator=generator)
    return clips, labels


def sgd_step(model, clips, labels):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(model(clips), labels).backward()
    optimizer.step()


def worker(rank, store_path, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD)
    try:
        rows = VIDEOS_PER_RANK * U
        clips, labels = batch()
        mine = slice(rank * rows, (rank + 1) * rows)
        # BatchNorm on running statistics, so every sample's output is its own and the averaged gradient
        # of the two halves is the gradient of the whole batch.
        model = nn.parallel.DistributedDataParallel(small_model().eval())
        sgd_step(model, clips[mine], labels[mine])
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(small_model()).train()
        try:
            synced(clips[mine])
            outcome = "ran"
        except ValueError as error:
            outcome = str(error)
        if rank == 0:
            torch.save({"state": model.module.state_dict(), "sync": outcome}, os.path.join(out_dir, "rank0.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_step_matches_one_process_and_sync_bn_is_honoured(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    result = torch.load(tmp_path / "rank0.pt", weights_only=True)
    single = small_model().eval()
    sgd_step(single, *batch())
    for name, value in single.state_dict().items():
        torch.testing.assert_close(result["state"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(result["state"]["1.generate.0.weight"], small_model().state_dict()["1.generate.0.weight"])
    # On CPU, PyTorch's SyncBatchNorm refuses to run unsynchronised; DSAConv hands it the statistics.
    assert "SyncBatchNorm expected input tensor to be on GPU" in result["sync"]


def test_sync_batchnorm_generator_matches_plain_outside_a_process_group(rng):
    plain = dsa_ops.DSAConv(16, U_segment=U, split_ratio=0.5)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(dsa_ops.DSAConv(16, U_segment=U, split_ratio=0.5))
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(3 * U, 16, 4, 4, generator=rng)
    dsa_ops.module._warned_generators.discard("SyncBatchNorm")
    with pytest.warns(UserWarning, match="SyncBatchNorm; in training it runs as PyTorch modules"):
        y = synced(x)
    torch.testing.assert_close(y, plain(x), rtol=1e-5, atol=1e-5)
    for name, value in plain.generate[1].state_dict().items():
        torch.testing.assert_close(synced.generate[1].state_dict()[name], value, rtol=1e-6, atol=1e-7)
