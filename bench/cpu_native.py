"""The C depthwise routine alone (forward + weight gradient, right after a GEMM so torch's
OpenMP threads have just worked), builds side by side (issue 15).

Usage: ``python bench/cpu_native.py A.so B.so ...`` (builds of ``_cpu_native.SOURCE``);
prints min/median/p75 ms over 25 alternating rounds, 2 threads, and 1 thread for OpenMP
builds (a name containing ``omp``).
"""
import sys, ctypes, time, statistics, torch
libs = {}
for p in sys.argv[1:]:
    lib = ctypes.CDLL(p)
    for fn in (lib.sepconv_dw_grad_weight, lib.sepconv_dw_forward):
        fn.restype = ctypes.c_int; fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9 + [ctypes.c_int]
    libs[p.rsplit('/',1)[-1]] = lib
configs = [(nm, lib, 2) for nm, lib in libs.items()] + [(nm + "/1t", lib, 1) for nm, lib in libs.items() if 'omp' in nm]
torch.set_num_threads(2)
A = torch.randn(512, 256); B = torch.randn(256, 256)
for (n, L, c, k, m) in [(64,101,64,13,1),(32,512,64,9,1),(4,1024,512,7,1),(8,1000,128,4,1)]:
    x = torch.randn(n, L, c); pad = (k-1)//2; out_len = L
    w = torch.randn(k, c*m); g = torch.randn(n, out_len, c*m); z = torch.empty(n, out_len, c*m); gw = torch.empty(k, c*m)
    res = {nm: [] for nm, _, _ in configs}
    for r in range(25):
        for nm, lib, t in configs:
            torch.mm(A, B)  # torch's pool has just worked (its threads spin-wait now)
            t0 = time.perf_counter()
            lib.sepconv_dw_forward(x.data_ptr(), w.data_ptr(), z.data_ptr(), n, L, out_len, c, m, k, 1, 1, pad, t)
            lib.sepconv_dw_grad_weight(x.data_ptr(), g.data_ptr(), gw.data_ptr(), n, L, out_len, c, m, k, 1, 1, pad, t)
            res[nm].append((time.perf_counter()-t0)*1e3)
    print(f"{n}x{L}x{c} k{k}: fwd+gw after a GEMM, min/median/p75 ms:", "  ".join(f"{nm} {min(a):.2f}/{statistics.median(a):.2f}/{sorted(a)[3*len(a)//4]:.2f}" for nm, a in res.items()), flush=True)
