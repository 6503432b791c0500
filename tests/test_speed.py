"""Issue 19, the CPU half: no host synchronisation in either stage's training step between log steps, input checks
read at the log step, and the speed options (compile, AdamW's kernels, channels-last, CUDA graphs of the update block)
giving the results of the plain step. The GPU half runs with `--flags gpu` (`torch.cuda.set_sync_debug_mode('error')`)."""
import dataclasses, contextlib, io
import pytest, torch
from torch import nn

from stereomae import builders, train as T
from stereomae.disparity import DisparityTask

SYNTH = dict(dataset='synthetic', n=8, size=[96, 160], max_disp=24)
STAGES = {   # the tiny configurations of the experiments' YAML files, in memory
    'pretrain': dict(preset='tiny', batch_size=2, train_data=[dict(dataset='synthetic', n=8, size=[64, 128])]),
    'finetune-vit': dict(preset='tiny', batch_size=2, crop=[64, 128], train_iters=2, hidden_dims=[32, 32, 32],
                         neck_dims=[24, 48, 96, 192], neck_width=64, feature_dim=64, train_data=[SYNTH]),
    'finetune-cnn': dict(batch_size=2, crop=[64, 128], train_iters=2, backbone='cnn', hidden_dims=[32, 32, 32], train_data=[SYNTH]),
}


def _state(stage, device='cpu', **over):
    setup = builders.pretrain_setup if stage == 'pretrain' else builders.finetune_setup
    job = setup({**STAGES[stage], 'runs_dir': '', 'device': device, 'precision': 'fp32', 'progress': False, 'log_every': 100,
                 'num_workers': 0, **over})
    torch.manual_seed(0)
    state, _ = T._prepare(job.model, job.task, job.train_data, job.cfg, job.configs, job.collate_fn)
    return state


@pytest.mark.parametrize('stage', list(STAGES))
def test_a_training_step_reads_nothing_from_the_device(stage):
    state = _state(stage)
    for _ in range(2): T.train_step(state)          # AdamW's state exists from here on
    callbacks = [T.ProgressBar(), T.LogScalars(), T.Checkpoints()]
    for cb in callbacks: cb.before_fit(state)
    with T.HostSyncs(T.host_resident(state.optimizer)) as syncs:    # a step between log steps, callbacks included
        T.train_step(state)
        for cb in callbacks: cb.after_step(state)
    assert syncs.calls == [], syncs.calls
    with T.HostSyncs() as syncs: T.flush(state)     # the log step reads, once
    assert any('Tensor.cpu()' in c for c in syncs.calls)


def test_host_syncs_finds_a_read_added_to_the_step(monkeypatch):
    state = _state('finetune-vit')
    for _ in range(2): T.train_step(state)
    call = DisparityTask.__call__
    def chatty(self, model, batch, train=True):
        out = call(self, model, batch, train); self.last_epe = out.metrics['epe'].item(); return out
    monkeypatch.setattr(DisparityTask, '__call__', chatty)
    with T.HostSyncs(T.host_resident(state.optimizer)) as syncs: T.train_step(state)
    assert len(syncs.calls) == 1 and syncs.calls[0].startswith('aten._local_scalar_dense') and '(chatty)' in syncs.calls[0], syncs.calls
    x = torch.arange(6.)
    with T.HostSyncs() as syncs:                     # each way of reading a value is seen
        bool(x.sum()); int(x[0]); float(x[1]); x.tolist(); x[x > 2]; x.nonzero(); x.cpu(); x.numpy()
    assert len(syncs.calls) == 8, syncs.calls


def test_images_out_of_range_stop_the_run_at_the_log_step():
    "The image check of the step runs on the device; the log step reads it and names the step and the samples."
    g = torch.Generator().manual_seed(0)
    data = {'left': torch.rand(4, 3, 64, 128, generator=g), 'right': torch.rand(4, 3, 64, 128, generator=g)}
    data['right'][2] *= 255                          # one 8-bit image not divided by 255
    job = builders.pretrain_setup({**STAGES['pretrain'], 'runs_dir': '', 'device': 'cpu', 'progress': False, 'log_every': 3, 'steps': 6})
    with pytest.raises(T.BadBatch, match=r"step \d: right images outside \[0, 1\] or not finite \(samples \[.*'index 2'"):
        T.fit(job.model, job.task, data, job.cfg)


def _run(stage, steps=3, **over):
    state = _state(stage, **over)
    for _ in range(steps): T.train_step(state)
    T.flush(state)
    return [h['loss'] for h in state.history], state


@pytest.mark.parametrize('impl', ['foreach', 'fused'])
def test_adamw_kernels_give_the_loop_s_trajectory(impl):
    base, _ = _run('finetune-vit')
    other, state = _run('finetune-vit', optimizer_impl=impl)
    assert state.optimizer.param_groups[0]['fused' if impl == 'fused' else 'foreach']
    torch.testing.assert_close(torch.tensor(other), torch.tensor(base), rtol=1e-4, atol=1e-6)
    assert T.optimizer_kernels('auto', [nn.Parameter(torch.zeros(1))]) == {}            # CPU: torch's default, the pinned numbers
    with pytest.raises(ValueError, match="optimizer_impl='adam': expected one of"): T.TrainConfig(optimizer_impl='adam')


def test_channels_last_gives_the_same_cnn_step():
    base, _ = _run('finetune-cnn', steps=2)
    nhwc, _ = _run('finetune-cnn', steps=2, channels_last=True)
    torch.testing.assert_close(torch.tensor(nhwc), torch.tensor(base), rtol=1e-4, atol=1e-6)
    x = T.to_device({'left': torch.rand(1, 3, 4, 4), 'disp': torch.rand(1, 4)}, torch.device('cpu'), channels_last=True)
    assert x['left'].is_contiguous(memory_format=torch.channels_last) and x['disp'].is_contiguous()


def test_cuda_graphs_say_why_not_on_a_cpu_and_capture_gives_the_same_step(capsys):
    state = _state('finetune-cnn', cuda_graphs=True)
    assert 'cuda_graphs=True needs a CUDA device (this run is on cpu): the update block runs eagerly' in capsys.readouterr().out
    assert 'forward' not in vars(state.model.update_block)
    with pytest.raises(ValueError, match="compile='fast': expected one of"): T.TrainConfig(compile='fast')


@pytest.mark.slow
def test_compiled_steps_give_the_eager_trajectory():
    "compile='trace' (graph capture through dynamo and AOT autograd) and the update block captured as on a GPU, on a CPU."
    base, _ = _run('pretrain')
    traced, state = _run('pretrain', compile='trace')
    assert state.net is not state.model and T.unwrap(state.net) is state.model
    torch.testing.assert_close(torch.tensor(traced), torch.tensor(base), rtol=1e-5, atol=1e-6)
    base2, _ = _run('finetune-cnn', steps=2)
    state = _state('finetune-cnn')
    assert T.capture_update_block(state.model, state.device, mode='trace')
    for _ in range(2): T.train_step(state)
    T.flush(state)
    torch.testing.assert_close(torch.tensor([h['loss'] for h in state.history]), torch.tensor(base2), rtol=1e-5, atol=1e-6)
    assert set(state.model.state_dict()) == set(_state('finetune-cnn').model.state_dict())   # weights keep their names


def test_a_model_that_cannot_compile_trains_eagerly(capsys, monkeypatch):
    import torch._dynamo
    def refuse(model, **kwargs):
        def fail(*a, **k): raise torch._dynamo.exc.Unsupported('a model this compiler cannot trace')
        m = nn.Module(); m.forward = fail; m._orig_mod = model; return m
    monkeypatch.setattr(torch, 'compile', refuse)
    eager, _ = _run('pretrain', steps=2)
    fallback, state = _run('pretrain', steps=2, compile='default')
    assert "compile='default': the model could not be compiled (Unsupported: a model this compiler cannot trace" in capsys.readouterr().out
    assert state.net is state.model and fallback == eager


@pytest.mark.gpu
@pytest.mark.parametrize('stage', list(STAGES))
def test_a_gpu_step_passes_sync_debug_mode_error(stage):
    state = _state(stage, device='cuda', precision='bf16')
    for _ in range(2): T.train_step(state)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try: T.train_step(state)
    finally: torch.cuda.set_sync_debug_mode(0)
    T.flush(state)
    assert torch.isfinite(torch.tensor(state.history[-1]['loss']))


def test_the_decoder_makes_its_position_embedding_once_per_grid():
    "A copy from the host to a GPU waits for the device: the decoder's fixed embedding is made on the device once, not every step."
    from stereomae.mae import build_mae
    from stereomae.vit import sincos_pos_embed
    dec = build_mae('tiny').decoder
    x = torch.zeros(1, dtype=torch.bfloat16)
    a = dec.pos_embed((4, 8), 1, x)
    assert dec.pos_embed((4, 8), 1, x) is a and a.dtype == torch.bfloat16
    torch.testing.assert_close(a[0].float(), sincos_pos_embed(dec.dim, (4, 8), 1).bfloat16().float())
    assert dec.pos_embed((2, 8), 1, x).shape == (1, 17, dec.dim) and 'pos' not in ''.join(dec.state_dict())  # not a buffer
