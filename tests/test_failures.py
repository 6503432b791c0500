"""The kit's battery of bad inputs: 137 cases, each one call that must fail with a one-line message naming what is at fault.

Each row of `CASES` is a `Case`: an id (`module-what`), a call that takes a scratch folder `tmp` (a `pathlib.Path` in
which the row writes its bad files), the exception class expected (or a warning class, for the documented cases that
warn and go on), and a substring of the message. A row passes when the call raises (or warns) that class with a
message of one line that contains the substring.

To add rows (training, checkpoints, the command line, model sources and pairs, export): append them to `CASES` in a section of their own, and change
the count in the first line of this docstring; `test_the_docstring_states_the_count` keeps the two equal.

Below the table, the write guarantees of `stereomae.core.atomic_write` that a single call cannot show (file modes
under a umask, the previous version kept, temporary files removed) have tests of their own.
"""
import errno, math, os, re, shutil, stat, time, warnings
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from stereomae import core, io, masking, losses, metrics, infer


@dataclass(frozen=True)
class Case:
    id: str                        # module-what, unique
    call: Callable[[Path], object] # the bad call; `tmp` is a fresh scratch folder
    raises: type                   # the exception class expected, or a Warning subclass for a documented warning
    contains: str                  # a substring of the message


# ---------------------------------------------------------------------------------------------------- bad files

def pfm(tmp: Path, header: bytes, floats: int) -> Path:
    "A PFM file with `header` and `floats` little-endian floats after it."
    p = tmp / 'disp.pfm'
    p.write_bytes(header + np.arange(floats, dtype='<f4').tobytes())
    return p

def png(tmp: Path, a: np.ndarray, name: str = 'img.png', mode: str | None = None) -> Path:
    p = tmp / name
    (Image.fromarray(a, mode) if mode else Image.fromarray(a)).save(p)
    return p

def truncated_png(tmp: Path) -> Path:
    "A 16-bit KITTI disparity PNG cut in half."
    p = png(tmp, (np.arange(64 * 64).reshape(64, 64) * 7 % 60000).astype(np.uint16), 'disp.png')
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])
    return p

def falling_things(tmp: Path, depth: np.ndarray) -> Path:
    (tmp / '_camera_settings.json').write_text('{"camera_settings": [{"intrinsic_settings": {"fx": 768.2}}]}')
    return png(tmp, depth, '000000.left.depth.png')

def a_file(tmp: Path) -> Path:
    p = tmp / 'not_a_folder'; p.write_text('a file'); return p

def full_disk(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')

def write_pfm_on_full_disk(tmp: Path):
    "`write_pfm` when the disk fills while the bytes go out."
    with mock.patch.object(Path, 'write_bytes', full_disk): io.write_pfm(tmp / 'd.pfm', np.ones((2, 2)))

NO_SPACE = namedtuple('usage', 'total used free')(100, 100, 0)   # what shutil.disk_usage says of a full disk

def torch_save_on_full_disk(tmp: Path):
    "What `torch.save` raises when the disk fills, and a disk that reports no free space."
    with mock.patch('stereomae.core.shutil.disk_usage', return_value=NO_SPACE):
        with core.atomic_write(tmp / 'last.pt', what='checkpoint') as t:
            t.write_bytes(b'half')
            raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598')

class ConstantModel(torch.nn.Module):
    "Predicts 1 px everywhere: enough for the checks in front of a model."
    def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.ones(()))
    def forward(self, left, right, iters=1):
        return infer.DisparityPrediction(self.w * torch.ones_like(left[:, :1]))

def random_vgg_loss() -> losses.PerceptualLoss:
    "A perceptual loss on a randomly initialised VGG16 (its warning says so; expected here)."
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'PerceptualLoss with weights=None')
        return losses.PerceptualLoss(None, region='all')

IMG = lambda *shape: torch.full(shape, 0.5)
GEN = lambda: torch.Generator().manual_seed(0)


# ---------------------------------------------------------------------------------------------------- training runs

from dataclasses import dataclass as _dc, replace as _replace
from stereomae import train, builders, config as cfgmod, mae as maemod, data, disparity
from stereomae.train import StepOutput, Task
from stereomae.data import split_key


class Pairs(torch.utils.data.Dataset):
    "Tiny labelled pairs; sample 5 carries a NaN ground truth when `poison`."
    seedable = True
    def __init__(self, n=8, poison=False): self.n, self.poison = n, poison
    def __len__(self): return self.n
    def __getitem__(self, key):
        i, _ = split_key(key)
        left = torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(i))
        disp = torch.full((1, 8, 12), float('nan')) if self.poison and i == 5 else left.mean(0, keepdim=True)
        return dict(left=left, right=left.roll(1, -1), disp=disp, name=f'pair{i}')


class Net(torch.nn.Module):
    def __init__(self, width=4, cfg=None):
        super().__init__(); self.cfg = cfg
        torch.manual_seed(0); self.conv = torch.nn.Conv2d(6, width, 3, padding=1); self.out = torch.nn.Conv2d(width, 1, 1)
    def forward(self, left, right): return self.out(self.conv(torch.cat([left, right], 1)))


class L1(Task):
    kind = 'toy'
    def __call__(self, model, batch, train=True): return StepOutput((model(batch['left'], batch['right']) - batch['disp']).abs().mean())


@_dc
class Arch:
    width: int = 4   # the toy model's channels


def recipe(tmp, **kw):
    return train.FinetuneConfig(**{**dict(runs_dir=str(tmp), name='toy', steps=2, batch_size=2, lr=1e-2, num_workers=0, progress=False,
                                          log_every=1, checkpoint_every=2, device='cpu', precision='fp32'), **kw})


def finished(tmp, **kw):
    "A finished two-step run in `tmp`; returns its checkpoint."
    return train.fit(Net(), L1(), Pairs(), recipe(tmp), configs=(Arch(),)).checkpoint


def tiny_mae(): return maemod.build_mae('tiny')


def stage1_run(tmp):
    "A finished one-step stage-1 run; returns its weights file."
    res = builders.pretrain_job(dict(runs_dir=str(tmp), name='mim', steps=1, batch_size=2, num_workers=0, progress=False,
                                     train_data=[dict(dataset='synthetic', n=2, size=[64, 128])]))
    return res.run_dir / 'weights.safetensors'


def broken_yaml(tmp):
    (tmp / 'bad.yaml').write_text('steps: [3\n'); return tmp / 'bad.yaml'


def cut_safetensors(tmp):
    p = tmp / 'w.safetensors'; train.save_weights(p, Net()); p.write_bytes(p.read_bytes()[:60]); return p


def pickled(tmp):
    class Evil:
        def __reduce__(self): return (print, ('pickled code ran',))
    p = tmp / 'w.pth'; torch.save({'model': {'w': torch.zeros(1)}, 'x': Evil()}, p); return p



# ---------------------------------------------------------------------------------------------------- model sources and pairs

MOTO = Path(__file__).resolve().parents[1] / 'data_samples' / 'middlebury2014' / 'Motorcycle-perfect'


def raft_checkpoint(tmp, name='raftstereo-test.pth', **options):
    "A RAFT-Stereo checkpoint in the published layout, written by the kit (random weights, narrow GRUs: quick)."
    from stereomae.disparity import DisparityModel
    torch.manual_seed(0)
    sd = DisparityModel(backbone='cnn', hidden_dims=(16,), shared_backbone=True, n_downsample=3, n_gru_layers=2, **options).raft_stereo_state_dict()
    torch.save({f'module.{k}': v for k, v in sd.items()}, tmp / name); return tmp / name


def pairs_of_two_sizes(tmp):
    "A folder run: Motorcycle, and a pair whose right view is 7 columns narrower."
    for scene, cut in (('good', 0), ('bad-size', 7)):
        (tmp / scene).mkdir(); shutil.copy(MOTO / 'im0.png', tmp / scene / 'im0.png')
        right = np.asarray(Image.open(MOTO / 'im1.png')); Image.fromarray(right[:, :right.shape[1] - cut]).save(tmp / scene / 'im1.png')
    return dict(model='sgbm', left=f'{tmp}/*/im0.png', right=f'{tmp}/*/im1.png', out_dir=str(tmp / 'out'), progress=False)


def sgbm_without_opencv(tmp):
    with mock.patch.dict('sys.modules', {'cv2': None}): return builders.predict_job(dict(model='sgbm', left=str(MOTO / 'im0.png'), right=str(MOTO / 'im1.png'), out_dir=str(tmp)))


def a_calibration_of_no_kind(tmp):
    (tmp / 'cam.txt').write_text('focal 1000\nbaseline 0.1\n'); return tmp / 'cam.txt'

# ---------------------------------------------------------------------------------------------------- export

import importlib.util, json
from stereomae import export
from stereomae.disparity import DisparityModel, RAFT_STEREO_REALTIME

EXPORT_META = dict(iters=7, multiple=[32, 32], min_size=[64, 128])   # what stereomae.export writes into a graph


def tiny_disparity(**kw):
    "RAFT-Stereo's real-time layout with narrow GRUs: a model a graph can hold, built in a blink."
    return DisparityModel(**RAFT_STEREO_REALTIME, hidden_dims=(16,), feature_dim=16, motion_dim=8, head_dim=16, **kw).eval()


def tiny_onnx(tmp, meta=None):
    "A valid two-input ONNX graph (its outputs copy its inputs), with stereomae's metadata when `meta` is given."
    import onnx
    from onnx import helper, TensorProto
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 'H', 'W']) for n in ('left', 'right')]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ('disp', 'disp_low')]
    nodes = [helper.make_node('Identity', ['left'], ['disp']), helper.make_node('Identity', ['right'], ['disp_low'])]
    m = helper.make_model(helper.make_graph(nodes, 'copy', ins, outs), opset_imports=[helper.make_opsetid('', 18)], ir_version=10)
    if meta: helper.set_model_props(m, {'stereomae': json.dumps(meta)})
    onnx.save(m, tmp / 'm.onnx')
    return tmp / 'm.onnx'


def without(module, call):
    "Run `call` as if the optional package `module` were not installed."
    real = importlib.util.find_spec
    with mock.patch('importlib.util.find_spec', lambda name, *a, **k: None if name == module else real(name, *a, **k)):
        return call()


def stage2_run(tmp):
    "A finished one-step stage-2 run of a tiny CNN; returns its directory."
    opts = {k: list(v) if isinstance(v, tuple) else v for k, v in RAFT_STEREO_REALTIME.items()}
    return builders.finetune_job(dict(runs_dir=str(tmp), name='rt', steps=1, batch_size=1, num_workers=0, progress=False,
                                      backbone='cnn', hidden_dims=[16], feature_dim=16, motion_dim=8, head_dim=16, **opts,
                                      crop=[64, 128], train_iters=1, train_data=[dict(dataset='synthetic', n=2, size=[64, 128])])).run_dir


# ---------------------------------------------------------------------------------------------------- the table

CASES = [
    # io: files whose size, depth or encoding does not match what the format says
    Case('io-pfm-more-values-than-header', lambda t: io.read_pfm(pfm(t, b'Pf\n4 2\n-1\n', 16)), ValueError, 'header says 4x2 (8 values), the file holds 16'),
    Case('io-pfm-fewer-values-than-header', lambda t: io.read_pfm(pfm(t, b'Pf\n4 2\n-1\n', 5)), ValueError, 'the file holds 5'),
    Case('io-pfm-partial-value', lambda t: io.read_pfm(pfm(t, b'Pf\n4 2\n-1\n\n', 8)), ValueError, '33 bytes'),
    Case('io-pfm-zero-width', lambda t: io.read_pfm(pfm(t, b'Pf\n0 2\n-1\n', 0)), ValueError, 'header says 0x2'),
    Case('io-pfm-not-a-pfm', lambda t: io.read_pfm(pfm(t, b'P6\n2 2\n255\n', 3)), ValueError, 'is not a PFM file'),
    Case('io-pfm-missing', lambda t: io.read_pfm(t / 'nothing.pfm'), FileNotFoundError, "nothing.pfm' does not exist"),
    Case('io-kitti-8-bit', lambda t: io.read_kitti_disparity(png(t, np.full((4, 4), 200, np.uint8))), ValueError, '8-bit'),
    Case('io-kitti-8-bit-by-kind', lambda t: io.read_disparity(png(t, np.full((4, 4), 200, np.uint8)), kind='kitti'), ValueError, 'expected 16-bit grey'),
    Case('io-kitti-truncated', lambda t: io.read_kitti_disparity(truncated_png(t)), ValueError, 'truncated'),
    Case('io-kitti-write-clips', lambda t: io.write_kitti_disparity(t / 'd.png', np.full((2, 2), 300.)), UserWarning, '4 pixels above 255.996'),
    Case('io-sintel-write-nan', lambda t: io.write_sintel_disparity(t / 'd.png', np.array([[1., np.nan]])), ValueError, '1 non-finite'),
    Case('io-sintel-write-negative', lambda t: io.write_sintel_disparity(t / 'd.png', np.array([[1., -2.]])), ValueError, 'negative'),
    Case('io-sintel-write-too-large', lambda t: io.write_sintel_disparity(t / 'd.png', np.array([[1., 2000.]])), ValueError, 'up to 2000'),
    Case('io-sintel-rgba', lambda t: io.read_sintel_disparity(png(t, np.zeros((4, 4, 4), np.uint8))), ValueError, 'expected 8-bit RGB'),
    Case('io-fallingthings-8-bit-depth', lambda t: io.read_fallingthings_disparity(falling_things(t, np.full((4, 4), 9, np.uint8))), ValueError, 'expected 16-bit'),
    Case('io-write-image-float-0-255', lambda t: io.write_image(t / 'i.png', np.full((2, 2, 3), 200.)), ValueError, 'values in [200, 200]'),
    Case('io-write-image-nan', lambda t: io.write_image(t / 'i.png', np.full((2, 2), np.nan)), ValueError, 'non-finite'),
    Case('io-calib-no-cam0', lambda t: io.read_calib((t.joinpath('calib.txt').write_text('baseline=1\n'), t / 'calib.txt')[1]), ValueError, 'no 3x3 cam0'),
    Case('io-write-into-a-file', lambda t: io.write_pfm(a_file(t) / 'd.pfm', np.ones((2, 2))), OSError, "cannot write the PFM file"),
    Case('io-write-disk-full', write_pfm_on_full_disk, OSError, "cannot write the PFM file"),

    # core: input checks and writes
    Case('core-image-0x0', lambda t: core.check_image(IMG(1, 3, 0, 0), 'left'), ValueError, 'left is (1, 3, 0, 0)'),
    Case('core-image-empty-batch', lambda t: core.check_pair(IMG(0, 3, 4, 4), IMG(0, 3, 4, 4)), ValueError, 'holds no pixel'),
    Case('core-image-0-255', lambda t: core.check_image(IMG(1, 3, 2, 2) * 255), ValueError, 'must be in [0, 1]'),
    Case('core-pad-multiple-0', lambda t: core.pad_to_multiple(IMG(1, 3, 2, 2), 0), ValueError, 'multiple must be positive'),
    Case('core-write-full-disk-torch', torch_save_on_full_disk, OSError, "cannot write the checkpoint"),
    Case('core-remove-temp-missing-folder', lambda t: core.remove_stale_temp_files(t / 'no_run'), FileNotFoundError, "no_run' does not exist"),

    # masking
    Case('masking-ratio-1', lambda t: masking.make_mask('tube', 2, 196, 1.0), ValueError, 'ratio is 1.0: must be in [0, 1)'),
    Case('masking-ratio-negative', lambda t: masking.make_mask('tube', 2, 196, -0.1), ValueError, 'ratio is -0.1'),
    Case('masking-ratio-nan', lambda t: masking.make_mask('tube', 2, 196, float('nan')), ValueError, 'ratio is nan'),
    Case('masking-N-0', lambda t: masking.make_mask('independent', 2, 0), ValueError, 'N is 0'),
    Case('masking-N-float', lambda t: masking.make_mask('independent', 2, 19.5), TypeError, 'N is 19.5'),
    Case('masking-mode-unknown', lambda t: masking.make_mask('random', 2, 8), ValueError, "mode is 'random'"),
    Case('masking-hidden-view-2', lambda t: masking.make_mask('cross_view', 2, 8, hidden_view=2), ValueError, 'hidden_view is 2'),
    Case('masking-generator-int', lambda t: masking.make_mask('tube', 2, 8, 0.5, generator=0), TypeError, 'generator is int'),
    Case('masking-ratio-hides-nothing', lambda t: masking.make_mask('tube', 2, 196, 0.004), UserWarning, 'hides 0 of 196'),
    Case('masking-rows-differ', lambda t: masking.visible_indices(torch.tensor([[True, False], [False, False]])), ValueError, 'in different rows'),

    # losses
    Case('losses-mse-mask-shape', lambda t: losses.masked_mse(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.zeros(2, 5, dtype=torch.bool)), ValueError, 'mask is (2, 5)'),
    Case('losses-mse-integer-pred', lambda t: losses.masked_mse(torch.zeros(2, 4, 3, dtype=torch.long), torch.zeros(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)), TypeError, 'pred is torch.int64'),
    Case('losses-ssim-scales-0', lambda t: losses.ssim_loss(IMG(1, 3, 16, 16), IMG(1, 3, 16, 16), region='all', scales=0), ValueError, 'scales is 0'),
    Case('losses-ssim-alpha', lambda t: losses.ssim_loss(IMG(1, 3, 16, 16), IMG(1, 3, 16, 16), region='all', alpha=1.5), ValueError, 'alpha is 1.5'),
    Case('losses-ssim-no-mask', lambda t: losses.ssim_loss(IMG(1, 3, 16, 16), IMG(1, 3, 16, 16)), ValueError, "region='masked' needs a pixel mask"),
    Case('losses-perceptual-one-channel', lambda t: random_vgg_loss()(IMG(1, 1, 16, 16), IMG(1, 1, 16, 16)), ValueError, 'pred is (1, 1, 16, 16)'),
    Case('losses-perceptual-too-small', lambda t: random_vgg_loss()(IMG(1, 3, 4, 4), IMG(1, 3, 4, 4)), ValueError, 'at least 8x8'),
    Case('losses-weight-nan', lambda t: losses.ReconstructionLoss(mse=float('nan')), ValueError, "'mse': nan"),
    Case('losses-sequence-max-disp-0', lambda t: losses.sequence_loss([IMG(1, 1, 2, 2)], IMG(1, 1, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.bool), max_disp=0), ValueError, 'max_disp is 0'),
    Case('losses-sequence-gamma-0', lambda t: losses.sequence_weights(4, gamma=0.), ValueError, 'gamma is 0.0'),

    # metrics: the readers' validity rule (finite and >= 0) holds for the metrics too
    Case('metrics-gt-all-negative', lambda t: metrics.epe(np.zeros((2, 2)), np.full((2, 2), -11.)), metrics.EmptyMaskWarning, '4 negative'),
    Case('metrics-accumulator-gt-all-negative', lambda t: metrics.MetricAccumulator('sceneflow').update(np.zeros((2, 2)), np.full((2, 2), -11.)), metrics.EmptyMaskWarning, '4 negative'),
    Case('metrics-depth-range-empty', lambda t: metrics.depth_metrics(np.ones(4), np.ones(4), min_depth=10, max_depth=1), ValueError, 'min_depth is 10'),
    Case('metrics-scale-to-0', lambda t: metrics.scale_disparity(torch.ones(1, 1, 4, 4), (0, 4)), ValueError, 'size is (0, 4)'),

    # infer: predict_disparity's input checks
    Case('infer-predict-0x0', lambda t: infer.predict_disparity(ConstantModel(), IMG(1, 3, 0, 0), IMG(1, 3, 0, 0)), ValueError, 'left is (1, 3, 0, 0)'),
    Case('infer-predict-0-width', lambda t: infer.predict_disparity(ConstantModel(), np.zeros((4, 0, 3), np.uint8), np.zeros((4, 0, 3), np.uint8)), ValueError, 'left is (1, 3, 4, 0)'),
    Case('infer-predict-iters-0', lambda t: infer.predict_disparity(ConstantModel(), IMG(1, 3, 4, 4), IMG(1, 3, 4, 4), iters=0), ValueError, 'iters is 0'),
    Case('infer-predict-tile-0', lambda t: infer.predict_disparity(ConstantModel(), IMG(1, 3, 4, 4), IMG(1, 3, 4, 4), tile=(0, 64)), ValueError, 'tile is (0, 64)'),

    # data: datasets and sample keys say what they looked for
    Case('data-mix-empty', lambda t: data.Mix([]), ValueError, 'Mix: every part must be a non-empty dataset'),
    Case('data-repeat-fraction', lambda t: data.Repeat([1], 0.5), ValueError, 'k must be a positive integer, got 0.5'),
    Case('data-sample-key', lambda t: data.split_key((1, 2, 3)), TypeError, 'sample key (1, 2, 3): expected an index or (index, seed)'),
    Case('data-folder-missing-root', lambda t: data.StereoFolder(t / 'nothing', 'l/*.png', 'r/*.png'), FileNotFoundError, "nothing' does not exist or is not a folder"),
    Case('data-sampler-empty', lambda t: data.ResumableSampler(0), ValueError, 'the dataset is empty'),
    Case('data-collate-sizes', lambda t: data.collate_stereo([dict(left=IMG(3, 4, 6), right=IMG(3, 4, 6), paths={}, name='a'), dict(left=IMG(3, 5, 5), right=IMG(3, 5, 5), paths={}, name='b')]), ValueError, 'samples have sizes [(4, 6), (5, 5)]'),

    # models: the stage-2 configuration and inputs
    Case('disparity-backbone', lambda t: disparity.DisparityConfig(backbone='resnet'), ValueError, "backbone='resnet': expected one of ('vit', 'cnn')"),
    Case('disparity-corr-levels-0', lambda t: disparity.DisparityConfig(corr_levels=0), ValueError, 'corr_levels=0: expected an integer >= 1'),
    Case('disparity-gru-levels-4', lambda t: disparity.DisparityConfig(n_gru_layers=4), ValueError, 'n_gru_layers=4: expected one of (1, 2, 3)'),
    Case('disparity-hidden-dims', lambda t: disparity.DisparityConfig(hidden_dims=(1, 2)), ValueError, 'hidden_dims=(1, 2): one width per GRU level'),
    Case('disparity-cuda-sampler', lambda t: disparity.DisparityConfig(corr_implementation='cuda'), ValueError, "corr_implementation='cuda': 'reg' or 'alt'"),
    Case('disparity-pair-sizes', lambda t: disparity.DisparityModel(hidden_dims=(16,), feature_dim=16, n_gru_layers=1)(IMG(1, 3, 32, 64), IMG(1, 3, 32, 48), iters=1), ValueError, 'left is (1, 3, 32, 64), right is (1, 3, 32, 48): sizes must match'),

    # training: the recipe is checked before anything is written
    Case('train-config-lr-nan', lambda t: train.FinetuneConfig(lr=float('nan')), ValueError, 'lr=nan: must be a finite number'),
    Case('train-config-steps-0', lambda t: train.FinetuneConfig(steps=0), ValueError, 'steps=0: must be a positive integer'),
    Case('train-config-schedule', lambda t: train.FinetuneConfig(schedule='step'), ValueError, "schedule='step': expected one of"),
    Case('train-config-train-iters-0', lambda t: train.FinetuneConfig(train_iters=0), ValueError, 'train_iters=0'),
    Case('train-config-precision', lambda t: train.PretrainConfig(precision='half'), ValueError, "precision='half'"),
    Case('train-batch-larger-than-data', lambda t: train.fit(Net(), L1(), Pairs(3), recipe(t, batch_size=4)), train.SetupError, 'fewer than one global batch'),
    Case('train-resume-other-kind', lambda t: train.fit(Net(), type('P', (L1,), {'kind': 'pretrain'})(), Pairs(), recipe(t, name='x', resume=str(finished(t)))), train.SetupError, "is from a 'toy' run, this is 'pretrain'"),
    Case('train-resume-changed-lr', lambda t: (finished(t), train.fit(Net(), L1(), Pairs(), recipe(t, lr=0.5), configs=(Arch(),)))[1], train.SetupError, 'another recipe or data: lr: 0.01 -> 0.5'),
    Case('train-resume-changed-architecture', lambda t: train.fit(Net(8), L1(), Pairs(), recipe(t, resume=str(finished(t))), configs=(Arch(8),)), train.SetupError, 'another architecture: width: 4 -> 8'),
    Case('train-resume-missing-checkpoint', lambda t: train.fit(Net(), L1(), Pairs(), recipe(t, resume=str(t / 'no.pt'))), train.SetupError, "no.pt' does not exist"),
    Case('train-nonfinite-stop', lambda t: train.fit(Net(), L1(), Pairs(poison=True), recipe(t, steps=8)), train.NonFiniteLoss, "'pair5'"),
    Case('train-nonfinite-skip-too-many', lambda t: train.fit(Net(), L1(), Pairs(poison=True), recipe(t, steps=8, nonfinite='skip', max_skipped=0.0)), train.NonFiniteLoss, 'more than max_skipped=0'),
    Case('train-runs-dir-read-only', lambda t: train.fit(Net(), L1(), Pairs(), recipe(t, runs_dir='/sys/no-runs-here')), OSError, "cannot create the run directory '/sys/no-runs-here/finetune/toy'"),

    # checkpoints and weights: never executed, always named
    Case('checkpoint-foreign-file', lambda t: (torch.save({'model': {}}, t / 'c.pt'), train.load_checkpoint(t / 'c.pt')), ValueError, 'is not a stereomae training checkpoint'),
    Case('checkpoint-pickled-code', lambda t: train.load_checkpoint(pickled(t)), ValueError, "w.pth' cannot be read safely"),
    Case('weights-truncated-safetensors', lambda t: train.read_weights(cut_safetensors(t)), ValueError, "w.safetensors' cannot be read safely"),
    Case('weights-pickled-code', lambda t: train.read_weights(pickled(t)), ValueError, "w.pth' cannot be read safely"),
    Case('weights-missing', lambda t: train.read_weights(t / 'none.safetensors'), FileNotFoundError, "none.safetensors' does not exist"),
    Case('weights-metadata-truncated', lambda t: train.weights_metadata(cut_safetensors(t)), ValueError, 'is not a readable safetensors file'),

    # config files and jobs: one line before anything is built
    Case('config-yaml-syntax', lambda t: cfgmod.load_params(broken_yaml(t)), ValueError, "bad.yaml' is not valid YAML"),
    Case('config-override-not-key-value', lambda t: cfgmod.parse_overrides(['lr']), ValueError, "override 'lr' is not key=value"),
    Case('builders-unknown-key', lambda t: builders.finetune_job(dict(lrr=1)), builders.ConfigError, "unknown config key: 'lrr' (did you mean 'lr'"),
    Case('builders-unknown-dataset', lambda t: builders.build_dataset('imagenet'), KeyError, "dataset 'imagenet' unknown"),
    Case('builders-missing-root', lambda t: builders.build_dataset('sceneflow:/no/such/root'), FileNotFoundError, "root '/no/such/root' does not exist"),
    Case('builders-crop-not-multiple-of-patch', lambda t: builders.pretrain_job(dict(runs_dir=str(t), crop=[60, 128])), builders.ConfigError, 'crop is 60x128 pixels: not divisible by the patch 8x16'),
    Case('builders-init-needs-weights', lambda t: builders.finetune_job(dict(runs_dir=str(t), init='mim')), builders.ConfigError, 'init_from is empty'),
    Case('builders-finetuned-from-stage-1', lambda t: builders.finetune_job(dict(runs_dir=str(t), init='finetuned', init_from=str(stage1_run(t)))), builders.ConfigError, "needs a stage-2 (disparity) run's weights"),
    Case('builders-mim-with-cnn', lambda t: builders.finetune_job(dict(runs_dir=str(t), init='mim', init_from=str(t / 'x.safetensors'), backbone='cnn')), builders.ConfigError, "init='mim' loads ViT weights: it needs backbone='vit'"),
    Case('builders-predict-with-stage-1', lambda t: builders.disparity_model(str(stage1_run(t)), 'cpu'), ValueError, 'is a pre-training (stage 1) run'),
    Case('builders-not-a-run', lambda t: builders.load_model(t), FileNotFoundError, 'a run directory?'),

    # the stage-1 model refuses what would learn nothing
    Case('mae-config-ratio-0-masked-loss', lambda t: maemod.MaeConfig(mask_ratio=0.0), ValueError, "mask_ratio is 0 with loss_region='masked'"),
    Case('mae-mask-hides-a-whole-view', lambda t: tiny_mae()(IMG(1, 3, 64, 128), IMG(1, 3, 64, 128), mask=torch.ones(1, 2, 64, dtype=torch.bool)), ValueError, 'mask hides all 64 patches of the left view of pair 0'),

    # model sources (issue 17): what was looked for is named, and what the weights cannot tell is asked for
    Case('source-none-of-them', lambda t: builders.resolve_model(t / 'raft.pth'), FileNotFoundError, "raft.pth' is none of the model sources: no such file or folder, and not 'sgbm'"),
    Case('source-unknown-suffix', lambda t: builders.resolve_model((t.joinpath('w.h5').write_bytes(b'x'), t / 'w.h5')[1]), ValueError, "w.h5' is a .h5 file: expected a kit run directory"),
    Case('source-graph-unreadable', lambda t: builders.resolve_model((t.joinpath('w.onnx').write_bytes(b'x'), t / 'w.onnx')[1]), ValueError, "w.onnx' cannot be read by onnxruntime"),
    Case('source-graph-model-options', lambda t: builders.resolve_model(tiny_onnx(t, EXPORT_META), iters=3), ValueError, "model_options ['iters'] cannot change the exported graph"),
    Case('source-pth-not-raft-stereo', lambda t: builders.resolve_model((torch.save({'w': torch.zeros(2)}, t / 'x.pth'), t / 'x.pth')[1]), ValueError, "x.pth' is not a RAFT-Stereo checkpoint"),
    Case('source-pth-pickled-code', lambda t: builders.resolve_model(pickled(t)), ValueError, "w.pth' cannot be read safely"),
    Case('source-raft-corr-split-unknown', lambda t: builders.resolve_model(raft_checkpoint(t, corr_levels=3)), ValueError, 'reads 27 correlation channels = corr_levels·(2·corr_radius+1), which the weights cannot split: give corr_levels or corr_radius'),
    Case('source-raft-context-norm-unknown', lambda t: builders.resolve_model(raft_checkpoint(t, context_norm='instance')), ValueError, "context_norm is 'instance' (as in iRaftStereo_RVC) or 'none', which the weights cannot tell apart: give it"),
    Case('source-raft-contradicted', lambda t: builders.resolve_model(raft_checkpoint(t), n_gru_layers=3), ValueError, 'n_gru_layers=3 but the checkpoint has n_gru_layers=2'),
    Case('source-sgbm-unknown-option', lambda t: builders.resolve_model('sgbm', disparities=64), ValueError, "model_options ['disparities'] are not SGBM's"),
    Case('source-sgbm-without-opencv', sgbm_without_opencv, builders.ConfigError, "pip install 'stereomae[cv]'"),
    Case('source-run-architecture-option', lambda t: builders.resolve_model(finished(t).parents[1], hidden_dims=[8]), ValueError, "model_options ['hidden_dims'] cannot change the kit run"),

    # predict over pairs (issue 17): the pairs, the calibration and the output folder are checked before the model runs
    Case('pairs-glob-matches-nothing', lambda t: builders.predict_job(dict(model='sgbm', left=f'{t}/*/left.png', right=f'{t}/*/right.png')), builders.ConfigError, "left: the glob '"),
    Case('pairs-lists-of-different-lengths', lambda t: builders.predict_job(dict(model='sgbm', left=f'{MOTO.parents[1]}/*/*/im0.png', right=str(MOTO / 'im1.png'), out_dir=str(t))), builders.ConfigError, 'matches 1 (im1.png): every left image needs its right one'),
    Case('pairs-left-missing', lambda t: builders.predict_job(dict(model='sgbm', left=str(t / 'l.png'), right=str(MOTO / 'im1.png'))), builders.ConfigError, "l.png' is no image file, folder or glob that exists"),
    Case('pairs-one-of-two-sizes', lambda t: builders.predict_job(pairs_of_two_sizes(t)), builders.PairsFailed, '1 of 2 pairs failed (bad-size; each error is above)'),
    Case('pairs-right-with-a-data-set', lambda t: builders.predict_job(dict(model='sgbm', left='samples', right='x.png')), builders.ConfigError, "left names the data set 'samples', which gives both views: leave right empty"),
    Case('pairs-output-not-writable', lambda t: builders.predict_job(dict(model='sgbm', left=str(MOTO / 'im0.png'), right=str(MOTO / 'im1.png'), out_dir='/sys/no-predictions-here')), OSError, "cannot write in the output folder '/sys/no-predictions-here'"),
    Case('pairs-depth-without-calibration', lambda t: builders.predict_job(dict(model='sgbm', left=f'{pairs_of_two_sizes(t)["left"]}', right=f'{t}/*/im1.png', formats=['depth'])), builders.ConfigError, 'formats asks for depth but no pair has a calibration'),
    Case('pairs-calibration-of-no-kind', lambda t: infer.read_calibration(a_calibration_of_no_kind(t)), ValueError, "cam.txt' is none of the known kinds"),
    Case('pairs-depth-unit-unknown', lambda t: builders.predict_job(dict(model='sgbm', left=str(MOTO / 'im0.png'), right=str(MOTO / 'im1.png'), depth_unit='cm')), builders.ConfigError, "depth_unit is 'cm': use one of ['mm', 'm']"),
    Case('confidence-updates-of-sgbm', lambda t: infer.predict_disparity(infer.SGBM(num_disp=16), IMG(1, 3, 8, 32), IMG(1, 3, 8, 32), confidence='updates'), ValueError, "SGBM does not: use confidence=['lr']"),
    Case('confidence-threshold-without-measure', lambda t: infer.predict_disparity(ConstantModel(), IMG(1, 3, 4, 4), IMG(1, 3, 4, 4), min_confidence=0.5), ValueError, 'no confidence is computed'),
    Case('confidence-unknown-measure', lambda t: infer.predict_disparity(ConstantModel(), IMG(1, 3, 4, 4), IMG(1, 3, 4, 4), confidence=['peak']), ValueError, "confidence has ['peak']: known measures are ('lr', 'updates')"),

    # export: what a graph cannot hold, inputs a graph cannot take, a missing extra (before any tracing)
    Case('export-size-not-multiple', lambda t: export.export_onnx(tiny_disparity(), t / 'm.onnx', size=(500, 741)), ValueError, 'size is 500x741: the graph takes pairs padded to multiples of 32x32 (pad_multiple); use 512x768'),
    Case('export-size-too-small', lambda t: export.export_program(tiny_disparity(), t / 'm.pt2', size=(64, 64)), ValueError, 'a graph of this model takes at least 64x128'),
    Case('export-opset-unsupported', lambda t: export.export_onnx(tiny_disparity(), t / 'm.onnx', opset=11), ValueError, 'opset 11 is not supported'),
    Case('export-missing-onnxscript', lambda t: without('onnxscript', lambda: export.export_onnx(tiny_disparity(), t / 'm.onnx')), export.MissingExtra, "ONNX export needs onnxscript, which is not installed: pip install 'stereomae[export]'"),
    Case('export-missing-onnxruntime', lambda t: without('onnxruntime', lambda: export.ExportedDisparity(tiny_onnx(t, EXPORT_META))), export.MissingExtra, "running an ONNX graph needs onnxruntime, which is not installed: pip install 'stereomae[export]'"),
    Case('export-alt-correlation', lambda t: export.export_onnx(tiny_disparity(corr_implementation='alt'), t / 'm.onnx'), ValueError, "corr_implementation='alt' cannot be captured"),
    Case('export-stage-1-model', lambda t: export.export_program(tiny_mae(), t / 'm.pt2'), TypeError, 'model is a stage-1 StereoMAE'),
    Case('export-iters-differ', lambda t: export.ExportedDisparity(tiny_onnx(t, EXPORT_META))(IMG(1, 3, 64, 128), IMG(1, 3, 64, 128), iters=32), ValueError, 'm.onnx was exported with iters=7'),
    Case('export-pair-too-small', lambda t: export.ExportedDisparity(tiny_onnx(t, EXPORT_META))(IMG(1, 3, 32, 40), IMG(1, 3, 32, 40)), ValueError, 'padded to (32, 64): m.onnx takes at least 64x128 pixels'),
    Case('export-no-metadata', lambda t: export.ExportedDisparity(tiny_onnx(t)), ValueError, 'holds no stereomae metadata'),
    Case('export-realtime-size-differs', lambda t: export.RealtimeDisparity(tiny_disparity(), (64, 128), iters=1)(IMG(1, 3, 64, 96), IMG(1, 3, 64, 96)), ValueError, 'left is (1, 3, 64, 96): this graph was captured for (1, 3, 64, 128)'),
    Case('export-realtime-dtype', lambda t: export.RealtimeDisparity(tiny_disparity(), (64, 128), dtype='int8'), ValueError, "dtype is 'int8'"),
    Case('builders-export-opset', lambda t: builders.export_job(dict(model=str(t), opset=11)), builders.ConfigError, 'opset 11 is not supported'),
    Case('builders-export-format', lambda t: builders.export_job(dict(model=str(t), format='tflite')), builders.ConfigError, "format='tflite'"),
    Case('builders-export-missing-extra', lambda t: without('onnxscript', lambda: builders.export_job(dict(model=str(stage2_run(t))))), builders.ConfigError, "pip install 'stereomae[export]'"),
]


# ---------------------------------------------------------------------------------------------------- the runner

def test_the_docstring_states_the_count():
    n = int(re.search(r'battery of bad inputs: (\d+) cases', __doc__)[1])
    assert n == len(CASES), f'the docstring says {n} cases, the table holds {len(CASES)}: update the docstring'
    assert len({c.id for c in CASES}) == len(CASES), 'case ids must be unique'


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    if issubclass(case.raises, Warning):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter('always')
            case.call(tmp_path)
        msgs = [str(w.message) for w in seen if issubclass(w.category, case.raises)]
        assert msgs, f'{case.id}: no {case.raises.__name__}; warnings seen: {[str(w.message) for w in seen]}'
        msg = next((m for m in msgs if case.contains in m), msgs[0])
    else:
        with pytest.raises(case.raises) as info: case.call(tmp_path)
        msg = str(info.value)
    assert case.contains in msg, f'{case.id}: expected {case.contains!r} in the message: {msg}'
    assert '\n' not in msg.strip(), f'{case.id}: the message must be one line: {msg}'


# ---------------------------------------------------------------------------------------------------- writes

def only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask():
    "Set the process umask for one test, restore it after."
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize('mask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=['umask022', 'umask077', 'umask002'])
@pytest.mark.parametrize('writer', ['text', 'pfm', 'safetensors', 'torch'])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode, writer):
    "Every writer through atomic_write, including safetensors (which makes its own file 0600), ends with the umask's mode."
    from safetensors.torch import save_file
    umask(mask)
    p = tmp_path / f'out.{writer}'
    if writer == 'pfm': io.write_pfm(p, np.ones((2, 3)))
    else:
        with core.atomic_write(p) as t:
            if writer == 'text': t.write_text('x')
            elif writer == 'safetensors': save_file({'w': torch.ones(2)}, str(t))
            else: torch.save({'w': torch.ones(2)}, t)
    assert stat.S_IMODE(p.stat().st_mode) == mode, oct(p.stat().st_mode)
    assert only_file(tmp_path) == [p.name]


@pytest.mark.parametrize('interrupt', [KeyboardInterrupt, RuntimeError, OSError])
def test_a_failed_write_keeps_the_previous_version_and_no_temporary_file(tmp_path, interrupt):
    p = tmp_path / 'weights.bin'
    with core.atomic_write(p) as t: t.write_bytes(b'version 1')
    with pytest.raises(interrupt):
        with core.atomic_write(p) as t:
            t.write_bytes(b'half of version 2'); raise interrupt('stopped')
    assert p.read_bytes() == b'version 1' and only_file(tmp_path) == ['weights.bin']


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path, monkeypatch):
    p = tmp_path / 'run' / 'last.pt'
    with core.atomic_write(p, what='checkpoint') as t: t.write_bytes(b'version 1')
    monkeypatch.setattr(Path, 'write_bytes', full_disk)
    with pytest.raises(OSError) as info:
        with core.atomic_write(p, what='checkpoint') as t: t.write_bytes(b'version 2')
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC and '\n' not in msg
    assert f"cannot write the checkpoint {str(p)!r}: No space left on device" in msg and 'previous version is unchanged' in msg
    assert p.read_bytes() == b'version 1' and only_file(p.parent) == ['last.pt']


@pytest.fixture
def read_only_folder(tmp_path):
    "A folder this process cannot create files in: a 0555 folder, or for root (who may write anyway) Linux's /sys."
    d = tmp_path / 'read_only'; d.mkdir(); d.chmod(0o555)
    try:
        try: (d / 'probe').write_text('x')
        except OSError: yield d; return
        try: (Path('/sys') / 'stereomae-probe').write_text('x')    # sysfs refuses new files even to root
        except OSError: yield Path('/sys'); return
        pytest.skip('no folder here refuses this process a new file')
    finally: d.chmod(0o755)


def test_a_read_only_folder_is_one_line_naming_the_file(read_only_folder):
    p = read_only_folder / 'disp.pfm'
    with pytest.raises(PermissionError) as info: io.write_pfm(p, np.ones((2, 2)))
    msg = str(info.value)
    assert f"cannot write the PFM file {str(p)!r}" in msg and 'choose a writable folder' in msg and '\n' not in msg
    assert not p.exists()


def test_remove_stale_temp_files(tmp_path):
    "The pattern of atomic_write's temporary files (and of the kit's older mkstemp ones), nothing else, at any depth."
    import tempfile
    run = tmp_path / 'run'; (run / 'checkpoints').mkdir(parents=True)
    killed = []
    for folder, name in [(run, 'last.pt'), (run / 'checkpoints', 'step_000100.pt')]:
        with core.atomic_write(folder / name) as t: t.write_bytes(b'whole')
        fd, old = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=folder); os.close(fd)   # the older naming
        killed.append(Path(old))
        killed.append(folder / f'.{name}.q7_x0z9k.tmp'); killed[-1].write_bytes(b'half')
    others = [run / 'a.tmp', run / '.a.tmp', run / '.a.ABCDEFGH.tmp', run / '.a.abcdefg.tmp', run / 'a.abcdefgh.tmp']
    for f in others: f.write_bytes(b'user file')
    (run / '.dir.abcdefgh.tmp').mkdir()                                                          # a folder, not a file
    old = time.time() - 7200
    os.utime(killed[0], (old, old))
    assert core.remove_stale_temp_files(run, older_than=3600) == [killed[0]]
    assert core.remove_stale_temp_files(run, recursive=False) == sorted(killed[1:2])
    assert core.remove_stale_temp_files(run) == sorted(killed[2:])
    assert all(core.TEMP_FILE_PATTERN.match(k.name) for k in killed)
    left = sorted(str(p.relative_to(run)) for p in run.rglob('*'))
    assert left == sorted(['.dir.abcdefgh.tmp', 'checkpoints', 'checkpoints/step_000100.pt', 'last.pt'] + [f.name for f in others])
    with pytest.raises(NotADirectoryError, match='is a file'): core.remove_stale_temp_files(run / 'last.pt')


def test_a_bad_input_is_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    "On a nearly full disk, a writer's own ValueError stays what it is; a RuntimeError (torch.save's way) becomes ENOSPC."
    monkeypatch.setattr('stereomae.core.shutil.disk_usage', lambda folder: NO_SPACE)
    with pytest.raises(ValueError, match='bad shape'):
        with core.atomic_write(tmp_path / 'a.pt') as t: raise ValueError('bad shape')
    with pytest.raises(OSError, match="cannot write the file .*a.pt': No space left on device"):
        with core.atomic_write(tmp_path / 'a.pt') as t: raise RuntimeError('[enforce fail at inline_container.cc:672]')
    assert only_file(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- pairs

def test_a_failing_pair_is_named_and_the_others_are_written(tmp_path, capsys):
    "A folder run with one pair of two sizes: that pair's line names it and its files, the other pair is written, the job fails at the end."
    with pytest.raises(builders.PairsFailed): builders.predict_job(pairs_of_two_sizes(tmp_path))
    out = capsys.readouterr().out
    assert 'good: 741x500' in out and 'bad-size: error: ' in out and "bad-size/im1.png: left is (1, 3, 500, 741), right is (1, 3, 500, 734)" in out, out
    assert sorted(p.name for p in (tmp_path / 'out' / 'good').iterdir()) == ['disp.npy', 'disp.pfm', 'disp.png']
    assert not (tmp_path / 'out' / 'bad-size').exists()


@dataclass
class ArchLater(Arch):
    gain: float = 1.0   # a key the kit gained after the checkpoint was written; its default is the old behaviour


def test_a_key_newer_than_the_checkpoint_counts_at_its_default(tmp_path):
    "A checkpoint from before a model key existed resumes while the key keeps its default, and is refused once it does not."
    ckpt = finished(tmp_path)
    res = train.fit(Net(), L1(), Pairs(), recipe(tmp_path, steps=4, name='later', resume=str(ckpt)), configs=(ArchLater(),))
    assert res.step == 4
    with pytest.raises(train.SetupError, match=r'another architecture: gain: 1.0 -> 2.0'):
        train.fit(Net(), L1(), Pairs(), recipe(tmp_path, steps=4, name='later2', resume=str(ckpt)), configs=(ArchLater(gain=2.0),))
