"""Small stand-ins for the training tests: a toy stereo dataset, a BatchNorm-free model and its task.

Used by `test_train.py` in-process, in killed subprocesses (`python tests/toy_train.py RUNS_DIR MODE`) and in
spawned DDP ranks; kept out of the package because it teaches nothing about stereo.
"""
import os, sys, time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from stereomae.data import split_key
from stereomae.train import FinetuneConfig
from stereomae import train as T


class ToyStereoData(Dataset):
    "Random pairs whose target is the left image's mean; an 'augmentation' draws from the sample key's generator."
    seedable = True
    def __init__(self, n=16, size=(8, 12)): self.n, self.size = n, size
    def __len__(self): return self.n
    def __getitem__(self, key):
        i, g = split_key(key)
        left = torch.rand(3, *self.size, generator=torch.Generator().manual_seed(i)) * (0.9 + 0.1 * torch.rand(1, generator=g))
        return dict(left=left, right=left.roll(1, -1), disp=left.mean(0, keepdim=True), name=f'toy{i}')


class ToyNet(nn.Module):
    "Two convolutions, no BatchNorm (so batches split over ranks give the same gradients)."
    def __init__(self, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(6, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1))
    def forward(self, left, right): return self.net(torch.cat([left, right], 1))


def toy_net(seed=0):
    torch.manual_seed(seed); return ToyNet()


class ToyTask(T.Task):
    kind = 'toy'
    def __call__(self, model, batch, train=True):
        err = (model(batch['left'], batch['right']) - batch['disp']).abs()
        return T.StepOutput(err.mean(), dict(err=err.mean().detach()))


def toy_config(runs_dir, **kw):
    base = dict(runs_dir=str(runs_dir), name='toy', steps=10, batch_size=4, lr=3e-3, num_workers=0,
                checkpoint_every=2, log_every=1, progress=False, precision='fp32', device='cpu')
    return FinetuneConfig(**{**base, **kw})


def ddp_worker(rank, world, port, runs_dir, kw):
    "One rank of a gloo process group on the loopback interface, running the same `fit` as a single process."
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try: T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(runs_dir, **kw))
    finally: torch.distributed.destroy_process_group()


if __name__ == '__main__':   # a run that the test kills: MODE 'write' hangs inside the step-4 checkpoint write, 'train' inside step 4
    runs_dir, mode = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    if mode == 'write':
        real_save = torch.save
        def slow_save(obj, f, *a, **k):
            if obj.get('step') == 4:
                import io
                buf = io.BytesIO(); real_save(obj, buf)
                with open(f, 'wb') as fh: fh.write(buf.getvalue()[: len(buf.getvalue()) // 2]); fh.flush()
                print('WRITING', flush=True); time.sleep(120)
            return real_save(obj, f, *a, **k)
        T.torch.save = slow_save
    task = ToyTask()
    if mode == 'train':
        calls = [0]
        class SlowTask(ToyTask):
            def __call__(self, model, batch, train=True):
                calls[0] += 1
                if calls[0] == 4: print('TRAINING', flush=True); time.sleep(120)
                return super().__call__(model, batch, train)
        task = SlowTask()
    T.fit(toy_net(), task, ToyStereoData(), toy_config(runs_dir))
