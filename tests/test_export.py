"""Exported graphs give the model's disparities: ONNX in onnxruntime and `torch.export` programs against eager PyTorch,
on the bundled Motorcycle pair and on random sizes the graph was not traced at; the export job from the command line;
and the `--quick` CPU run of the real-time benchmark (the code path a GPU runs, minus the capture).

The default run checks the command line and the real-time code path (the chapter `09b_export` exports and compares in
the default run too); the flagged-slow tests export narrow models at a few iterations with every check of the files,
and RAFT-Stereo's default CNN and a ViT model with 32 unrolled iterations (about two minutes of export each on a CPU),
held to 1e-3 px.
Random weights make the GRU recurrence chaotic (rounding grows with the iterations for reasons unrelated to export), so
the update head is damped as in the RAFT-Stereo parity tests; a trained model converges, which shrinks differences.
"""
import importlib.util, json, sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from stereomae.data import sample_dataset
from stereomae.disparity import DisparityModel, DisparityConfig, RAFT_STEREO_REALTIME
from stereomae.mae import PRESETS
from stereomae.export import (export_onnx, export_program, ExportedDisparity, max_difference, graph_size, EXPORT_OPSETS)

TINY = dict(hidden_dims=(32,), feature_dim=32, motion_dim=16, head_dim=32)
TOL = 1e-3   # px, the bound at 32 iterations


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def damped(model):
    with torch.no_grad():
        for p in model.update_block.flow_head.conv2.parameters(): p.mul_(0.2)
    return model.eval()


def cnn(**opts):
    torch.manual_seed(0); return damped(DisparityModel(**opts))


def vit(**opts):
    torch.manual_seed(0); return damped(DisparityModel(DisparityConfig.from_mae(PRESETS['tiny'], **opts)))


def motorcycle(scale=1):
    s = sample_dataset('motorcycle')[0]
    l, r = s['left'][None], s['right'][None]                          # (1, 3, 500, 741)
    if scale == 1: return l, r
    size = (500 // scale, 741 // scale)
    return tuple(torch.nn.functional.interpolate(x, size, mode='area') for x in (l, r))


def random_pair(H, W, seed=0):
    l = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(seed))
    return l, l.roll(-5, -1) * 0.9 + 0.05


def agree(model, graph, iters, pairs):
    "The largest difference over the pairs, checked against the bound; the disparities must not be trivially small."
    worst = 0.
    for left, right in pairs:
        d = max_difference(model, graph, left, right, iters)
        with torch.no_grad(): assert model(left, right, iters=iters).disp.abs().mean() > 0.05  # a real signal
        worst = max(worst, d)
    assert worst <= TOL, f'the graph differs from the model by {worst:.2e} px'
    return worst


# ---------------------------------------------------------------------------------------------------- default run
# (the chapter `09b_export` runs an ONNX and a torch.export round trip of its own in the default run)

@pytest.mark.slow
def test_onnx_cnn_matches_pytorch_at_any_size(tmp_path):
    model = cnn(**RAFT_STEREO_REALTIME, **TINY)
    path = export_onnx(model, tmp_path / 'cnn.onnx', iters=3)
    graph = ExportedDisparity(path, threads=1)
    assert (graph.iters, graph.multiple, graph.min_size) == (3, (32, 32), (64, 128))
    import onnx
    m = onnx.load(path)
    assert m.opset_import[0].version == 18
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input] == [[1, 3, 'H', 'W']] * 2
    assert json.loads(next(p.value for p in m.metadata_props if p.key == 'stereomae'))['config']['shared_backbone'] is True
    # Motorcycle at full size (padded to 512x768 inside), and odd multiples of 32 the graph was not traced at
    agree(model, graph, 3, [motorcycle(), random_pair(96, 160), random_pair(160, 288, 1)])


@pytest.mark.slow
def test_program_vit_matches_pytorch_and_predicts(tmp_path):
    from stereomae.infer import predict_disparity
    model = vit(neck_dims=(16, 16, 32, 32), neck_width=32, **TINY)
    path = export_program(model, tmp_path / 'vit.pt2', iters=3)
    graph = ExportedDisparity(path)
    agree(model, graph, 3, [motorcycle(4), random_pair(96, 224)])
    l, r = motorcycle(4)
    a, b = predict_disparity(model, l, r, iters=3).disp, predict_disparity(graph, l, r, iters=3).disp
    assert (a - b).abs().max() <= TOL
    with pytest.raises(ValueError, match='was exported with iters=3'): predict_disparity(graph, l, r)  # predict's default is 32


def test_realtime_quick_runs_the_gpu_code_path_on_a_cpu():
    "`bench_realtime.py --quick`: eager, graph (no capture on a CPU) and torch.compile(fullgraph) rows, all agreeing."
    sys.path.insert(0, str(REPO / 'tests' / 'benchmarks'))
    spec = importlib.util.spec_from_file_location('bench_realtime', REPO / 'tests' / 'benchmarks' / 'bench_realtime.py')
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    rows = bench.main(quick=True)
    assert not [r for r in rows if 'error' in r], rows
    got = {(r['mode'], r['dtype']): r for r in rows}
    assert set(got) == {('eager', 'fp32'), ('eager', 'bf16'), ('graph', 'fp32'), ('graph', 'bf16'), ('compile (aot_eager)', 'fp32')}
    assert got['graph', 'fp32']['same'] == 0 and got['graph', 'bf16']['same'] == 0      # the very function the model runs
    assert got['compile (aot_eager)', 'fp32']['same'] < 1e-4
    assert 0 < got['graph', 'bf16']['diff'] < 0.1                                        # bf16: rounding, not nothing


def test_export_job_refuses_in_one_line_and_lists_its_keys(capsys):
    from stereomae.cli import main
    assert main(['export', 'model=no/such/run', 'opset=11']) == 2       # checked before the model is loaded
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'stereomae export: error: opset 11 is not supported' in err
    with pytest.raises(SystemExit): main(['export', '--help'])
    out = capsys.readouterr().out
    assert 'iters = 32' in out and 'opset = 18' in out and "format = 'onnx'" in out


# ---------------------------------------------------------------------------------------------------- 32 iterations

@pytest.mark.slow
def test_onnx_default_cnn_32_iterations(tmp_path):
    "RAFT-Stereo's default configuration (11.1 M parameters), 32 unrolled iterations."
    model = cnn()
    graph = ExportedDisparity(export_onnx(model, tmp_path / 'default.onnx', iters=32), threads=1)
    worst = agree(model, graph, 32, [motorcycle(), random_pair(128, 224), random_pair(224, 352, 1)])
    print(f'default CNN, 32 iterations: largest difference {worst:.1e} px')


@pytest.mark.slow
def test_onnx_vit_32_iterations(tmp_path):
    "A ViT model (the tiny MAE encoder, RAFT-Stereo's decoder widths), 32 unrolled iterations."
    model = vit()
    graph = ExportedDisparity(export_onnx(model, tmp_path / 'vit.onnx', iters=32), threads=1)
    worst = agree(model, graph, 32, [motorcycle(), random_pair(128, 256), random_pair(192, 320, 1)])
    print(f'ViT, 32 iterations: largest difference {worst:.1e} px')


@pytest.mark.slow
def test_export_job_writes_and_checks_an_onnx_graph(tmp_path, capsys):
    "`stereomae export model=RUN`: a one-step stage-2 run to RUN/export/disparity-2it.onnx, checked on the Motorcycle pair."
    from stereomae import builders
    from stereomae.cli import main
    opts = {k: list(v) if isinstance(v, tuple) else v for k, v in {**RAFT_STEREO_REALTIME, **TINY}.items()}
    run = builders.finetune_job(dict(runs_dir=str(tmp_path), name='rt', steps=1, batch_size=1, num_workers=0, progress=False,
                                     backbone='cnn', **opts, crop=[64, 128], train_iters=1,
                                     train_data=[dict(dataset='synthetic', n=2, size=[64, 128])])).run_dir
    assert main(['export', f'model={run}', 'iters=2']) == 0
    out = capsys.readouterr().out
    assert (run / 'export' / 'disparity-2it.onnx').is_file()
    assert float(out.split('differ by ')[1].split(' px')[0]) <= TOL


@pytest.mark.slow
def test_onnx_realtime_7_iterations_and_a_converted_opset(tmp_path):
    "The real-time configuration as it is deployed (7 iterations), written at the newest opset through the converter."
    model = cnn(**RAFT_STEREO_REALTIME)
    path = export_onnx(model, tmp_path / 'rt.onnx', iters=7, opset=EXPORT_OPSETS[-1], size=(128, 256))
    import onnx
    assert onnx.load(path).opset_import[0].version == EXPORT_OPSETS[-1]
    agree(model, ExportedDisparity(path, threads=1), 7, [motorcycle(), random_pair(128, 416)])
    assert graph_size(model) == (64, 128)
