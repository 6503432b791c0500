"""Protocols and bad input on hand-made cases whose answers are worked out by hand in the comments.

The chapter `09_metrics` tests each metric's definition; here every named protocol's rule (pooling, regions, valid
range, resolution scaling) gets its own small case, and `evaluate` / `predict_disparity` / `save_prediction` get the
bad inputs of issue 7: sizes that differ, an empty mask, NaN in a prediction, a calibration without a field, a pair
too large for the chosen mode.
"""
import json, math, warnings
import numpy as np
import pytest
import torch
from torch import nn

from stereomae.metrics import MetricAccumulator, EmptyMaskWarning, epe, depth_metrics
from stereomae.infer import (DisparityPrediction, evaluate, predict_disparity, save_prediction, save_disparity_png,
                             disparity_to_depth)

T = lambda *x: torch.tensor(x, dtype=torch.float32)
B = lambda *x: torch.tensor(x, dtype=torch.bool)


def report(protocol, images):
    "Feed (pred, gt, nocc) triples to a fresh accumulator and return the protocol's report."
    acc = MetricAccumulator(protocol)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', EmptyMaskWarning)
        for i, (p, g, n) in enumerate(images): acc.update(p, g, nocc=n, name=f'im{i}')
    return acc.summary()['report']


# two images of different sizes: errors 0, 0, 0, 4 (all non-occluded) and 3.5 (occluded), true disparity 10
KITTI_IMAGES = [(T(10, 10, 10, 14), T(10, 10, 10, 10), B(1, 1, 1, 1)), (T(13.5), T(10), B(0))]


def test_kitti2012_averages_images():
    r = report('kitti2012', KITTI_IMAGES)
    assert r['Out-All 3px'] == pytest.approx((25 + 100) / 2)     # per image: 1 of 4, 1 of 1
    assert r['Out-Noc 3px'] == pytest.approx(25)                 # image 2 has no non-occluded pixel: NaN, left out
    assert r['Avg-All'] == pytest.approx((1 + 3.5) / 2)          # EPE 4/4 and 3.5/1
    assert r['Out-All 2px'] == pytest.approx((25 + 100) / 2)


def test_kitti2015_pools_pixels():
    r = report('kitti2015', KITTI_IMAGES)
    assert r['D1-all'] == pytest.approx(100 * 2 / 5)             # 4 > 3 and > 0.5; 3.5 > 3 and > 0.5: 2 of 5 pixels
    assert r['D1-noc'] == pytest.approx(100 * 1 / 4)             # non-occluded: the 4 pixels of image 1
    assert r['EPE-all'] == pytest.approx((4 + 3.5) / 5)
    # the 5 % rule: an error of 4 px at d = 100 is not a D1 outlier, but RAFT-Stereo's "D1" (bad-3) counts it
    far = [(T(104), T(100), B(1))]
    assert report('kitti2015', far)['D1-all'] == 0 and report('raft_kitti', far)['D1 (bad-3)'] == 100


def test_sceneflow_and_raft_things_drop_large_disparities():
    images = [(T(12, 300, 50.5, 50), T(10, 200, 50, 50), None)]  # the 200 px pixel is left out (|d| < 192)
    assert report('raft_things', images) == pytest.approx({'EPE': 2.5 / 3, 'D1 (bad-1)': 100 / 3})
    assert report('sceneflow', images)['bad-1'] == pytest.approx(100 / 3)
    # RAFT-Stereo pools its bad-1 over pixels while its EPE is per image
    two = images + [(T(11.5), T(10), None)]
    r = report('raft_things', two)
    assert r['D1 (bad-1)'] == pytest.approx(100 * 2 / 4) and r['EPE'] == pytest.approx((2.5 / 3 + 1.5) / 2)


def test_eth3d_splits_regions_raft_eth3d_does_not():
    images = [(T(5, 7, 5, 8), T(5, 5, 5, 5), B(1, 1, 1, 0))]     # errors 0, 2, 0, 3; the last pixel is occluded
    r = report('eth3d', images)
    assert r['bad-1 noc'] == pytest.approx(100 / 3) and r['bad-1 all'] == pytest.approx(50)
    assert r['avgerr noc'] == pytest.approx(2 / 3)
    assert report('raft_eth3d', [(p, g, None) for p, g, _ in images])['D1 (bad-1)'] == pytest.approx(50)


def test_middlebury_counts_errors_at_full_resolution():
    images = [(T(20.6, 20.4), T(20, 20), B(1, 1))]               # errors 0.6 and 0.4 px at quarter resolution
    q = report('middlebury_Q', images)                           # ×4: 2.4 and 1.6 full-resolution px
    assert q['bad-2 all'] == pytest.approx(50) and q['avgerr all'] == pytest.approx(4 * 0.5)
    assert report('middlebury_F', images)['bad-2 all'] == 0
    assert report('raft_middlebury_Q', [(p, g, None) for p, g, _ in images])['D1 (bad-2)'] == 0


def test_delta_accuracy_is_strict():
    m = depth_metrics(T(2.5, 4), T(2, 4))                        # ratio exactly 1.25 is not < 1.25
    assert m['delta1'] == pytest.approx(0.5) and m['delta2'] == pytest.approx(1.0)


def test_bad_input_of_metrics():
    with pytest.raises(ValueError, match=r'pred is \(4, 5\), gt is \(4, 6\)'): epe(torch.ones(4, 5), torch.ones(4, 6))
    with pytest.raises(ValueError, match='pred has 1 non-finite'): epe(T(1, float('nan')), T(1, 1))
    with pytest.warns(EmptyMaskWarning, match='valid mask is empty'):
        assert math.isnan(epe(T(1, 2), T(1, 2), B(0, 0)))


class Constant(nn.Module):
    "A stand-in model that predicts the same disparity everywhere (NaN if asked)."
    def __init__(self, value: float): super().__init__(); self.value = value
    def forward(self, left, right, iters=1): return DisparityPrediction(torch.full_like(left[:, :1], self.value))


class NaNOnSecond(Constant):
    "Predicts 1 px on the first call, NaN everywhere afterwards."
    def __init__(self): super().__init__(1.); self.calls = 0
    def forward(self, left, right, iters=1):
        self.calls += 1; self.value = 1. if self.calls == 1 else float('nan')
        return super().forward(left, right, iters)


def sample(name='s', nocc=True, value=4.):
    g = torch.Generator().manual_seed(0)
    s = dict(left=torch.rand(1, 3, 40, 64, generator=g), right=torch.rand(1, 3, 40, 64, generator=g),
             disp=torch.full((1, 40, 64), value), valid=torch.ones(1, 40, 64, dtype=torch.bool), name=name)
    if nocc: s['nocc'] = torch.ones(1, 40, 64, dtype=torch.bool)
    return s


def test_evaluate_reports_missing_regions_as_null(tmp_path):
    "A sample without a nocc mask: its non-occluded metrics are NaN in the rows, null in JSON, counted in nan_images."
    res = evaluate(Constant(5.), [sample('a'), sample('b', nocc=False)], 'eth3d', out_dir=tmp_path, worst=1, progress=False)
    assert res.summary['nan_images']['bad1/noc'] == 1 and res.summary['report']['bad-1 noc'] == 0   # error 1 is not > 1
    assert res.summary['report']['avgerr noc'] == pytest.approx(1.0)
    saved = json.loads((tmp_path / 'metrics.json').read_text())           # strict JSON: no NaN tokens
    assert saved['rows'][1]['bad1/noc'] is None and saved['rows'][0]['bad1/noc'] == 0
    assert (tmp_path / 'rows.csv').read_text().splitlines()[0].startswith('name,n_noc')


def test_evaluate_bad_input():
    with pytest.raises(ValueError, match='dataset is empty'): evaluate(Constant(1.), [], 'eth3d', progress=False)
    s = sample('nogt'); del s['disp']
    with pytest.raises(ValueError, match=r"sample 0 \(nogt\) has no 'disp'"): evaluate(Constant(1.), [s], 'eth3d', progress=False)
    with pytest.raises(ValueError, match=r'sample 1 \(b\): pred has 2560 non-finite'):
        evaluate(NaNOnSecond(), [sample('a'), sample('b')], 'eth3d', progress=False)
    with pytest.raises(KeyError, match='unknown'): evaluate(Constant(1.), [sample()], 'kitti', progress=False)
    s = sample('small'); s['disp'] = s['disp'][..., :32]; s['valid'] = s['valid'][..., :32]
    with pytest.raises(ValueError, match=r'sample 0 \(small\).*pred is \(40, 64\), gt is \(40, 32\)'):
        evaluate(Constant(1.), [s], 'raft_eth3d', progress=False)


def test_depth_protocol_without_calibration_is_an_error():
    with pytest.raises(ValueError, match='needs focal and baseline'): evaluate(Constant(5.), [sample()], 'scared', progress=False)
    res = evaluate(Constant(5.), [sample() | dict(calib=dict(focal=100., baseline=10.))], 'scared', progress=False)
    assert res.summary['report']['MAE (mm)'] == pytest.approx(100 * 10 / 4 - 100 * 10 / 5)   # 250 mm vs 200 mm


class OutOfMemory(nn.Module):
    def forward(self, left, right, iters=1): raise RuntimeError('CUDA out of memory. Tried to allocate 20.00 GiB')


class CPUOutOfMemory(nn.Module):   # torch's CPU allocator words it differently
    def forward(self, left, right, iters=1):
        raise RuntimeError('[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you tried to allocate 4294967296 bytes.')


class Broken(nn.Module):
    def forward(self, left, right, iters=1): raise RuntimeError('mat1 and mat2 shapes cannot be multiplied')


def test_too_large_for_the_mode():
    l = torch.rand(1, 3, 40, 64)
    for model in (OutOfMemory(), CPUOutOfMemory()):
        with pytest.raises(MemoryError, match=r'out of memory on a \(40, 64\) pair: pass tile='):
            predict_disparity(model, l, l)
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied'): predict_disparity(Broken(), l, l)
    with pytest.raises(ValueError, match='use tiles, e.g. tile='): predict_disparity(Constant(1.), l, l, max_pixels=1000)
    with pytest.raises(ValueError, match='overlap horizontally'):
        predict_disparity(Constant(1.), l, l, tile=(32, 32), overlap=(8, 16), max_disp=20)
    tiled = predict_disparity(Constant(3.), l, l, tile=(32, 32), overlap=(8, 24), max_disp=20)   # rows 0, 8; columns 0, 8, 16, 24, 32
    assert tiled.tiles == 2 * 5 and torch.allclose(tiled.disp, torch.full_like(tiled.disp, 3.))


def test_calibration_missing_a_field(tmp_path):
    p = tmp_path / 'calib.txt'
    p.write_text('cam0=[1000 0 300; 0 1000 200; 0 0 1]\ndoffs=0\nwidth=600\nheight=400\n')
    with pytest.raises(ValueError, match='has no baseline'): disparity_to_depth(np.array([50.]), p)
    p.write_text('doffs=0\nbaseline=100\n')
    with pytest.raises(ValueError, match=r'calib.txt.*has no 3x3 cam0'): disparity_to_depth(np.array([50.]), p)
    with pytest.raises(ValueError, match='has no focal'): disparity_to_depth(np.array([50.]), dict(baseline=1.))
    with pytest.raises(FileNotFoundError, match='nowhere'): disparity_to_depth(np.array([50.]), tmp_path / 'nowhere.txt')
    p.write_text('cam0=[1000 0 300; 0 1000 200; 0 0 1]\ndoffs=0\n')
    assert disparity_to_depth(np.array([50.]), p, baseline=100.) == pytest.approx(2000.)   # explicit numbers fill the gap


def test_save_prediction_bad_input(tmp_path):
    d = np.full((8, 10), 5., np.float32)
    with pytest.raises(ValueError, match=r"formats has \['exr'\]"): save_prediction(tmp_path / 'x', d, formats=('exr',))
    with pytest.raises(ValueError, match='ply but there is no calibration'): save_prediction(tmp_path / 'x', d, formats=('ply',))


def test_colour_png_has_a_colour_bar(tmp_path):
    "Two disparities only in the map: the many saturated colours of the PNG come from the colour bar's gradient."
    import matplotlib.pyplot as plt
    d = np.zeros((300, 100), np.float32); d[:, 50:] = 40   # tall enough for the bar to show most of the 256 colours
    counts = {}
    for bar in (True, False):
        f = tmp_path / f'bar{bar}.png'
        if bar: save_disparity_png(f, d)
        else:     # the same drawing without its bar, to show the count tells them apart
            from stereomae.core import show_disparity
            fig, ax = plt.subplots(); show_disparity(d, ax=ax, colorbar=False); fig.savefig(f); plt.close(fig)
        img = (plt.imread(f)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
        saturated = img[img.max(1).astype(int) - img.min(1) > 80]
        counts[bar] = len(np.unique(saturated, axis=0))
    assert counts[True] > 100 > counts[False], counts
