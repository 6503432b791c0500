"""Training machinery beyond the chapter's demos: killed processes, resume with accumulation and workers, 2-rank DDP."""
import os, signal, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from stereomae import train as T
from toy_train import ToyStereoData, ToyTask, toy_net, toy_config, ddp_worker


def _weights(run_dir):
    return T.load_weights(Path(run_dir) / 'weights.safetensors')


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
