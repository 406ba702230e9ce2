# Copy of ../shared/peers/gpu_torch_knn.py (the issue-6 anchor), kept here because
# ../shared does not travel to the device machine; scripts/gpu-bench.sh prefers
# the shared original when it exists. Do not edit: refresh from the original.
# GPU anchor for the CUDA work: exact k-NN by brute force with PyTorch (x @ q.T + topk), on
# clustered data, fp32 and tf32, several batch sizes; run on the H200 next to annex's own GPU benchmark.
import time, torch, sys
torch.manual_seed(0)
dev = 'cuda'
def clustered(n, d, c=1000, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    cent = torch.randn(c, d, device=dev, generator=g) * 3
    idx = torch.randint(0, c, (n,), device=dev, generator=g)
    return cent[idx] + torch.randn(n, d, device=dev, generator=g)
def bench(fn, reps=20):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts)//2]
print(torch.__version__, torch.cuda.get_device_name(0))
# ceilings
a = torch.empty(2*1024**3//4, device=dev); b = torch.empty_like(a)
t = bench(lambda: b.copy_(a), 10); print(f"copy: {2*a.numel()*4/t/1e9:.2f} TB/s (read+write)")
del a, b
m = torch.randn(8192, 8192, device=dev)
for tf in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf
    t = bench(lambda: m @ m, 10); print(f"sgemm tf32={tf}: {2*8192**3/t/1e9:.0f} TFLOP/s")
del m
k = 10
for n, d in ((1_000_000, 128), (1_000_000, 768), (10_000_000, 128)):
    x = clustered(n, d); xn = (x*x).sum(1)
    for tf in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf
        for q in (1, 100, 1000, 10000):
            Q = clustered(q, d, seed=1)
            if q*n > 4e9:  # chunk the query batch to bound memory
                def f():
                    out = []
                    for i in range(0, q, 1000):
                        dd = xn[None, :] - 2 * (Q[i:i+1000] @ x.T)
                        out.append(torch.topk(dd, k, dim=1, largest=False).indices)
                    return out
            else:
                def f():
                    dd = xn[None, :] - 2 * (Q @ x.T)
                    return torch.topk(dd, k, dim=1, largest=False).indices
            t = bench(f, 10 if q >= 1000 else 30)
            bytes_ = n*d*4
            print(f"n={n} d={d} tf32={tf} q={q}: {t:.3f} ms  {q/t*1e3:,.0f} QPS  eff_bw={bytes_/t/1e9:.2f} TB/s  flops={2*n*d*q/t/1e9:.1f} TFLOP/s", flush=True)
    del x, xn
    torch.cuda.empty_cache()
