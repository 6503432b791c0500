"""Exported graphs give the model's disparities: ONNX in onnxruntime and `torch.export` programs against eager PyTorch,
on the bundled Motorcycle pair and on random sizes the graph was not traced at; the export job from the command line;
and the `--quick` CPU run of the real-time benchmark (the code path a GPU runs, minus the capture).

The default run checks the command line and the real-time code path (the chapters `09b_export` and `10a_builders`
export and compare in the default run too). The flagged-slow tests: one ONNX graph with 32 unrolled iterations
(RAFT-Stereo's default layout, narrow decoder widths; about two minutes of export on one core), held to 1e-3 px on
the full Motorcycle pair and on random sizes; the ViT variant in ONNX at the newest opset, the CNN as a torch.export
program, and the export job, each at two iterations.
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
from stereomae.export import export_onnx, export_program, ExportedDisparity, graph_size, EXPORT_OPSETS

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
        with torch.no_grad(): eager = model(left, right, iters=iters).disp
        assert eager.abs().mean() > 0.05                                  # a real signal
        worst = max(worst, (eager - graph(left, right, iters=iters).disp).abs().max().item())
    assert worst <= TOL, f'the graph differs from the model by {worst:.2e} px'
    return worst


# ---------------------------------------------------------------------------------------------------- default run
# (the chapter `09b_export` runs an ONNX and a torch.export round trip of its own in the default run, the chapter
# `10a_builders` a torch.export job of a ViT run)

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
    assert 'iters = None' in out and 'opset = 18' in out and "format = 'onnx'" in out


# ---------------------------------------------------------------------------------------------------- slow: 32 iterations
# One export at 32 unrolled iterations (its cost, about two minutes on one core, grows with the graph's operations,
# not with the model's widths, so the layout is RAFT-Stereo's default with narrow decoder widths: the pairs run fast).

@pytest.fixture(scope='module')
def default_layout_32(tmp_path_factory):
    model = cnn(**TINY)
    path = export_onnx(model, tmp_path_factory.mktemp('onnx') / 'default-32.onnx', iters=32)
    return model, path


@pytest.mark.slow
def test_onnx_32_iterations_matches_pytorch_on_motorcycle_and_random_sizes(default_layout_32):
    model, path = default_layout_32
    graph = ExportedDisparity(path, threads=1)
    assert (graph.iters, graph.multiple, graph.min_size) == (32, (32, 32), (64, 64))
    import onnx
    m = onnx.load(path, load_external_data=False)
    assert m.opset_import[0].version == 18
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input] == [[1, 3, 'H', 'W']] * 2
    assert json.loads(next(p.value for p in m.metadata_props if p.key == 'stereomae'))['config']['n_gru_layers'] == 3
    # Motorcycle at full size (padded to 512x768 inside), and sizes the graph was not traced at (odd multiples of 32, a crop)
    worst = agree(model, graph, 32, [motorcycle(), random_pair(96, 160), random_pair(150, 301, 1)])
    print(f"RAFT-Stereo's default layout, 32 iterations: largest difference {worst:.1e} px")


# ---------------------------------------------------------------------------------------------------- slow: the variants

@pytest.mark.slow
def test_onnx_vit_and_program_cnn_match_pytorch_and_predict(tmp_path):
    """The ViT variant in ONNX (at the newest opset, through onnx's converter) and the CNN as a torch.export program
    traced at a size of its own, at two iterations, under `predict_disparity` too."""
    import onnx
    from stereomae.infer import predict_disparity
    model = vit(neck_dims=(16, 16, 32, 32), neck_width=32, **TINY)
    path = export_onnx(model, tmp_path / 'vit.onnx', iters=2, opset=EXPORT_OPSETS[-1])
    assert onnx.load(path, load_external_data=False).opset_import[0].version == EXPORT_OPSETS[-1]
    graph = ExportedDisparity(path, threads=1)
    agree(model, graph, 2, [motorcycle(4), random_pair(96, 224)])
    l, r = motorcycle(4)
    a, b = predict_disparity(model, l, r, iters=2).disp, predict_disparity(graph, l, r, iters=2).disp
    assert (a - b).abs().max() <= TOL
    with pytest.raises(ValueError, match='was exported with iters=2'): predict_disparity(graph, l, r)  # predict's default is 32
    cnn_model = cnn(**RAFT_STEREO_REALTIME, **TINY)
    assert graph_size(cnn_model) == (64, 128)                          # 1/8 features, 4 levels: 128 columns
    program = ExportedDisparity(export_program(cnn_model, tmp_path / 'cnn.pt2', iters=2, size=(128, 256)))
    agree(cnn_model, program, 2, [motorcycle(4), random_pair(64, 416)])


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
