"""This machine's fp32 matmul rate: the ceiling every other benchmark's GFLOP/s is compared with."""
import os, time
import torch


def matmul_gflops(n: int = 1024, repeats: int = 10, dtype=torch.float32, device='cpu',
                  clock=time.perf_counter) -> float:
    "Best-of-`repeats` GFLOP/s of an n×n by n×n matrix product (2n³ flops); `clock=time.process_time`: per CPU second."
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    best = float('inf')
    for _ in range(repeats):
        if device != 'cpu': torch.cuda.synchronize()
        t0 = clock(); a @ b
        if device != 'cpu': torch.cuda.synchronize()
        best = min(best, clock() - t0)
    return 2 * n ** 3 / best / 1e9


def rss_bytes() -> int:
    "Resident memory of this process now (Linux), the baseline the benchmarks' peak-memory columns subtract."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def matmul_peak(sizes=(1024, 2048, 4096), repeats: int = 5) -> float:
    """The best fp32 rate over several sizes, each best-of-`repeats`, with the thread count the caller's model uses.

    On a shared machine one short measurement catches other jobs' bursts and reads low (then a model "beats" the
    peak); benchmarks call this again between their cases and keep the maximum of the run."""
    return max(matmul_gflops(n, repeats=repeats if n < 4096 else max(2, repeats // 2)) for n in sizes)


def main():
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads\n')
    print('| matmul | n | GFLOP/s |\n|---|---|---|')
    for n in (512, 1024, 2048, 4096):
        print(f'| fp32 CPU | {n} | {matmul_gflops(n, repeats=10 if n < 4096 else 3):.1f} |')
    if torch.cuda.is_available():
        for dt in (torch.float32, torch.bfloat16):
            print(f'| {str(dt)[6:]} {torch.cuda.get_device_name()} | 8192 | {matmul_gflops(8192, 20, dt, "cuda"):.0f} |')


if __name__ == '__main__':
    main()
