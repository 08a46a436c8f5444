"""One-thread CPU time of an optimizer step: sepconv.optimizers.Adam (tf-keras' rule) vs
torch.optim.Adam (foreach), alternated in one process, medians of 15 x 5 steps.

    PYTHONPATH=src python bench/optimizer_step.py
"""
import time, statistics, torch, sepconv
torch.set_num_threads(1)
def make(n, size):
    ps = [torch.nn.Parameter(torch.randn(size)) for _ in range(n)]
    for p in ps: p.grad = torch.randn(size)
    return ps
for n, size in ((100, 1000), (20, 100_000)):
    ps1, ps2 = make(n, size), make(n, size)
    ours = sepconv.optimizers.Adam(ps1, learning_rate=1e-3)
    theirs = torch.optim.Adam(ps2, lr=1e-3, eps=1e-7)
    for o in (ours, theirs): o.step()
    t = {"ours": [], "torch": []}
    for _ in range(15):
        for name, o in (("ours", ours), ("torch", theirs)):
            a = time.thread_time(); [o.step() for _ in range(5)]; t[name].append((time.thread_time() - a) / 5)
    mo, mt = statistics.median(t["ours"]), statistics.median(t["torch"])
    print(f"Adam, {n} params x {size}: ours {mo*1e3:.2f} ms, torch {mt*1e3:.2f} ms, ratio {mo/mt:.2f}")
