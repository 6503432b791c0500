"""Synthetic stereo and augmentation speed: ms per rendered pair (one thread and all threads; a sample is rendered on one
thread by `one_thread`, the raw `render` column is what a sample cost before, on the caller's threads), ms per augmented
sample, and samples per second through a DataLoader with 0, 1 and 2 workers. The load average is printed: spread over
threads, small operations wait for descheduled ones on a busy machine."""
import os, time
import torch
from stereomae.synthetic import SyntheticStereo, texture_bank
from stereomae.augment import StereoAugmentor


def ms_per_item(fn, n: int) -> float:
    fn(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(n): fn(i + 1)
    return (time.perf_counter() - t0) / n * 1e3


def loader_rate(ds, workers: int, batches: int = 4, batch_size: int = 4) -> float:
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers)
    it = iter(dl); next(it)  # start-up not counted
    t0 = time.perf_counter()
    for _ in range(batches): next(it)
    return batches * batch_size / (time.perf_counter() - t0)


def main():
    threads = torch.get_num_threads()
    t0 = time.perf_counter(); texture_bank(); bank_s = time.perf_counter() - t0
    print(f'torch {torch.__version__}, {threads} threads on {os.cpu_count()} cores; texture bank made in {bank_s:.2f} s '
          f'(once per process); load average {os.getloadavg()[0]:.2f}\n')
    print(f'| render | size | ms per pair, 1 thread | ms per pair, {threads} threads | raw `render`, {threads} threads (before `one_thread`) |\n|---|---|---|---|---|')
    for size in [(128, 256), (256, 512), (540, 960)]:
        ds = SyntheticStereo(64, size=size, seed=0, max_disp=size[1] * 3 // 16)
        torch.set_num_threads(1); one = ms_per_item(ds.__getitem__, 8)
        torch.set_num_threads(threads); many = ms_per_item(ds.__getitem__, 8); raw = ms_per_item(ds.render, 8)
        print(f'| SyntheticStereo | {size[0]}x{size[1]} | {one:.1f} | {many:.1f} | {raw:.1f} |')
    print('\n| augmentation | input -> crop | ms per sample |\n|---|---|---|')
    torch.set_num_threads(1)
    for size, crop in [((256, 512), (192, 384)), ((540, 960), (320, 720))]:
        s = SyntheticStereo(1, size=size, seed=0)[0]
        for sparse in (False, True):
            aug = StereoAugmentor(crop, sparse=sparse)
            print(f"| StereoAugmentor {'sparse' if sparse else 'dense'} | {size[0]}x{size[1]} -> {crop[0]}x{crop[1]} | {ms_per_item(lambda i: aug(s), 8):.1f} |")
    torch.set_num_threads(threads)
    print('\n| DataLoader (render + dense augmentation), 256x512 -> 192x384 | workers | samples/s |\n|---|---|---|')
    ds = SyntheticStereo(64, size=(256, 512), seed=0, aug=StereoAugmentor((192, 384)))
    for w in (0, 1, 2): print(f'| SyntheticStereo + StereoAugmentor | {w} | {loader_rate(ds, w):.1f} |')


if __name__ == '__main__':
    main()
