"Augmentation in DataLoader workers: each worker draws its own augmentations, reproducibly when the loader is seeded."
import torch
from stereomae.augment import StereoAugmentor, PairFlip, mim_transforms, gt_error
from stereomae.synthetic import SyntheticStereo


class Same(torch.utils.data.Dataset):
    "The same pair n times, so that any difference between items comes from the augmentation."
    def __init__(self, sample, aug, n=4): self.s, self.aug, self.n = sample, aug, n
    def __len__(self): return self.n
    def __getitem__(self, i): return self.aug(self.s)


def _run(aug, seed, workers=2):
    s = SyntheticStereo(1, size=(64, 128), seed=0)[0]
    dl = torch.utils.data.DataLoader(Same(s, aug), batch_size=1, num_workers=workers,
                                     generator=torch.Generator().manual_seed(seed))
    return torch.cat([b['left'] for b in dl])


def test_workers_draw_different_augmentations():
    aug = StereoAugmentor((48, 96), eraser_size=(10, 20), generator=0)
    out = _run(aug, seed=1)
    assert not torch.equal(out[0], out[1])  # items 0 and 1 come from different workers


def test_seeded_loader_is_reproducible():
    a = _run(StereoAugmentor((48, 96), eraser_size=(10, 20), generator=0), seed=5)
    b = _run(StereoAugmentor((48, 96), eraser_size=(10, 20), generator=0), seed=5)
    assert torch.equal(a, b)


def test_flip_then_crop_keeps_ground_truth():
    s = SyntheticStereo(2, size=(96, 160), seed=4, right_disp=True)[1]
    from stereomae.augment import PairRandomResizedCrop
    out = PairRandomResizedCrop((64, 96), scale=(0.5, 1.0), generator=2)(PairFlip(p=1.0, generator=1)(s))
    assert gt_error(out) < 0.3 * gt_error(out, offset=1.0)
    assert sorted(mim_transforms((32, 64), generator=0)({k: s[k] for k in ('left', 'right')})) == ['left', 'right']
