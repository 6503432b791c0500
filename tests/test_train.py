"""Training machinery beyond the chapter's demos: killed processes, resume with accumulation and workers, 2-rank DDP."""
import os, signal, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from stereomae import train as T
from stereomae.data import split_key
from toy_train import ToyStereoData, ToyTask, toy_net, toy_config, ddp_worker


def _weights(run_dir):
    return T.read_weights(Path(run_dir) / 'weights.safetensors')


def _same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0 if atol == 0 else 1e-4, msg=k)


def test_resume_equals_uninterrupted_with_accumulation_and_workers(tmp_path):
    kw = dict(steps=6, grad_accum=2, num_workers=1, checkpoint_every=3)
    full = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='full', **kw))
    a = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='cut', **kw), until=3)
    b = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='cut', **kw))
    assert [h['loss'] for h in a.history + b.history] == [h['loss'] for h in full.history]
    _same(_weights(full.run_dir), _weights(b.run_dir))
    assert T.read_scalars(b.run_dir)['loss'] == T.read_scalars(full.run_dir)['loss']


@pytest.mark.parametrize('mode', ['write', 'train'])
def test_sigkill_loses_only_steps_since_last_checkpoint(tmp_path, mode):
    "A process killed inside a checkpoint write (or a training step) keeps the previous checkpoint; resuming finishes the same run."
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), str(REPO / 'tests')]), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, str(REPO / 'tests' / 'toy_train.py'), str(tmp_path), mode],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.strip() in ('WRITING', 'TRAINING'): break
    assert p.poll() is None, ''.join(lines)
    p.send_signal(signal.SIGKILL); p.wait(30)
    run = T.RunDir(tmp_path / 'finetune' / 'toy')
    assert [c.name for c in run.step_checkpoints()] == ['step_0000002.pt']
    if mode == 'write': assert list(run.checkpoints.glob('.step_0000004.pt.*.tmp')), 'the half-written file should be a temporary'
    assert T.load_checkpoint(run.latest())['step'] == 2
    res = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path))
    assert res.resumed_from.name == 'step_0000002.pt' and res.step == 10
    assert not list(run.checkpoints.glob('.*.tmp')), 'resuming removes the half-written files of the killed process'
    full = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='full'))
    _same(_weights(full.run_dir), _weights(res.run_dir), atol=1e-6)  # the killed process ran on 1 thread: float sums differ in the last bits


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_ddp_two_ranks_equal_one_process_with_double_batch(tmp_path):
    "2 gloo ranks with batch b give the weights of one process with batch 2b after k steps."
    kw = dict(steps=4, batch_size=2, checkpoint_every=4)
    torch.multiprocessing.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path / 'ddp'), kw), nprocs=2, join=True)
    one = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path / 'one', **{**kw, 'batch_size': 4}))
    ddp = _weights(tmp_path / 'ddp' / 'finetune' / 'toy')
    assert any((ddp[k] - toy_net().state_dict()[k]).abs().max() > 1e-3 for k in ddp), 'training should have moved the weights'
    _same(ddp, _weights(one.run_dir), atol=1e-6)
    ck = T.load_checkpoint(tmp_path / 'ddp' / 'finetune' / 'toy' / 'checkpoints' / 'step_0000004.pt')
    assert ck['world'] == 2 and len(ck['rng']) == 2 and ck['data']['consumed'] == 8


# Issue 6's recipe and fault items that the chapter's demos do not pin down.

def test_recipes_adamw_betas_and_decay():
    "MAE's AdamW (0.9, 0.95), wd 0.05 off norms and biases, lr = base·batch/256; RAFT-Stereo's AdamW 2e-4, wd 1e-5."
    from stereomae.train import PretrainConfig, FinetuneConfig
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = T.build_optimizer(net, PretrainConfig(batch_size=64, grad_accum=2))
    assert opt.defaults['betas'] == (0.9, 0.95)
    assert {g['weight_decay'] for g in opt.param_groups if any(p is net[0].weight for p in g['params'])} == {0.05}
    assert {g['weight_decay'] for g in opt.param_groups if any(p is net[0].bias or p is net[1].weight for p in g['params'])} == {0.0}
    assert max(g['lr'] for g in opt.param_groups) == pytest.approx(1.5e-4 * 128 / 256)
    ft = FinetuneConfig()
    assert (ft.lr, ft.weight_decay, ft.schedule) == (2e-4, 1e-5, 'onecycle')


def test_gradient_clipping_caps_the_global_norm(tmp_path):
    "The optimizer step sees gradients of global norm `clip_grad`; the step reports the norm before clipping."
    seen = []
    class Spy(T.Callback):
        def before_fit(self, state):
            params = list(state.model.parameters())
            state.optimizer.register_step_pre_hook(lambda o, args, kwargs: seen.append(
                float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))))
    class Loud(ToyTask):
        def __call__(self, model, batch, train=True):
            out = super().__call__(model, batch, train); return T.StepOutput(out.loss * 1e4, out.metrics)
    res = T.fit(toy_net(), Loud(), ToyStereoData(), toy_config(tmp_path, steps=1, clip_grad=0.5), callbacks=[Spy()])
    assert res.history[0]['grad_norm'] > 100 and seen == [pytest.approx(0.5, rel=1e-4)]


def test_grad_accumulation_equals_the_larger_batch(tmp_path):
    "2 micro-batches of 2 accumulate into the same update as one batch of 4 (mean loss, no BatchNorm)."
    acc = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='acc', steps=4, batch_size=2, grad_accum=2))
    big = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, name='big', steps=4, batch_size=4))
    _same(_weights(acc.run_dir), _weights(big.run_dir), atol=1e-6)
    assert [h['loss'] for h in acc.history] == pytest.approx([h['loss'] for h in big.history], rel=1e-5)


class BNNet(torch.nn.Module):
    "A model with BatchNorm and RAFT-Stereo's `freeze_bn()` (BatchNorm layers stay in evaluation mode)."
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(6, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1))
    def forward(self, left, right): return self.net(torch.cat([left, right], 1))
    def freeze_bn(self):
        for m in self.modules():
            if isinstance(m, torch.nn.BatchNorm2d): m.eval()


@pytest.mark.parametrize('freeze', [True, False])
def test_frozen_batchnorm_keeps_its_statistics(tmp_path, freeze):
    torch.manual_seed(0); net = BNNet()
    T.fit(net, ToyTask(), ToyStereoData(), toy_config(tmp_path, steps=3, freeze_bn=freeze))
    bn = net.net[1]
    unchanged = torch.equal(bn.running_mean, torch.zeros(4)) and int(bn.num_batches_tracked) == 0
    assert unchanged == freeze


def test_checkpoint_of_another_kind_fails_before_training(tmp_path):
    "Resuming from a checkpoint of another task (here a 'toy' run into a 'pretrain'-kind task) stops before anything is written."
    first = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, steps=2))
    class OtherTask(ToyTask): kind = 'pretrain'
    cfg = toy_config(tmp_path, name='other', resume=str(first.checkpoint))
    with pytest.raises(ValueError, match=r"is from a 'toy' run, this is 'pretrain'"):
        T.fit(toy_net(), OtherTask(), ToyStereoData(), cfg)
    assert not T.RunDir.from_config(cfg).path.exists()


def test_non_finite_loss_names_step_and_samples(tmp_path):
    class Poisoned(ToyStereoData):
        def __getitem__(self, key):
            s = super().__getitem__(key)
            if split_key(key)[0] == 5: s['disp'] = torch.full_like(s['disp'], float('inf'))
            return s
    with pytest.raises(T.NonFiniteLoss, match=r"non-finite loss \(inf\) at step \d+ \(samples \[.*'toy5'"):
        T.fit(toy_net(), ToyTask(), Poisoned(), toy_config(tmp_path, steps=8))


def test_logs_are_csv_and_tensorboard(tmp_path):
    res = T.fit(toy_net(), ToyTask(), ToyStereoData(), toy_config(tmp_path, steps=3))
    assert [s for s, _ in T.read_scalars(res.run_dir)['loss']] == [1, 2, 3]
    assert list((res.run_dir / 'logs').glob('events.out.tfevents.*')), 'no TensorBoard event file'


@pytest.mark.parametrize('steps', [1, 2, 3, 100, 250])
def test_onecycle_runs_at_any_length(steps):
    "torch's OneCycleLR divides by zero when the warm-up is exactly one step (100 steps at RAFT-Stereo's 1 %): every length runs, peaks once, ends low."
    import math
    from stereomae.train import build_scheduler, FinetuneConfig
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    sched, lrs = build_scheduler(opt, FinetuneConfig(steps=steps, lr=1e-3, warmup=0.01)), []
    for _ in range(steps): lrs.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
    assert all(map(math.isfinite, lrs)) and max(lrs) <= 1e-3 * (1 + 1e-9) and lrs[-1] < 1e-6
    if steps >= 3: assert lrs[0] < max(lrs) and max(lrs) > 4e-4, lrs[:4]
