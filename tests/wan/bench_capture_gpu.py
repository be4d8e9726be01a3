"""What a Wan attention capture costs at real size (the figures in docs/wan.md).

Not a test: run by hand on a CUDA machine, from the repository root::

    python tests/wan/bench_capture_gpu.py        # LAYERS=2 by default; OUT=folder for bench.json

Two (``LAYERS``) blocks of Wan 2.1 1.3B's width with random weights in bfloat16, latents of a
480x832x81 video (32,760 video tokens) and 512 text positions; each pass is timed once after a
warm-up, plain and with a capture of 3 text positions' cross maps and every block's temporal
maps, at three chunk sizes, without and with a backward pass to the latents.
"""
import json
import os
import sys
import time

import torch

sys.path[:0] = [".", "plugins"]
from diffusers import WanTransformer3DModel
from videomage_wan import attention

dev, dt = "cuda", torch.bfloat16
torch.manual_seed(0)
layers = int(os.environ.get("LAYERS", "2"))
m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                          out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=layers,
                          cross_attn_norm=True, eps=1e-6).to(dev, dt).requires_grad_(False)
F, H, W = 21, 60, 104
lat = torch.randn(1, 16, F, H, W, device=dev, dtype=dt)
txt = torch.randn(1, 512, 4096, device=dev, dtype=dt)
t = torch.tensor([700.0], device=dev)
res = {"tokens": F * H * W // 4, "layers": layers}

def run(label, capture, grad, chunk=attention.CHUNK_ELEMENTS):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    x = lat.clone().requires_grad_(grad)
    t0 = time.time()
    with torch.set_grad_enabled(grad):
        if capture:
            with attention.capture(list(m.blocks), cross_tokens=[3, 4, 5], temporal=True, chunk_elements=chunk) as (store, state):
                state.grid = (1, F, H // 2, W // 2)
                out = m(x, t, txt, return_dict=False)[0]
            loss = sum(c.float().pow(2).mean() for c in store.cross) + sum(c.float().pow(2).mean() for c in store.temporal)
            rows = max(float((c.detach().sum(-1) - 1).abs().max()) for c in store.temporal)
        else:
            out = m(x, t, txt, return_dict=False)[0]; loss = out.float().pow(2).mean(); rows = None
        if grad:
            (g,) = torch.autograd.grad(loss, x); ok = bool(torch.isfinite(g).all() and g.abs().sum() > 0)
        else:
            ok = bool(torch.isfinite(loss))
    torch.cuda.synchronize()
    res[label] = {"s": round(time.time() - t0, 3), "peak_gib": round((torch.cuda.max_memory_allocated() - base) / 2**30, 2),
                  "ok": ok, "row_sum_err": rows}
    print(label, res[label], flush=True)

run("warmup", False, False)
run("plain_nograd", False, False)
run("plain_grad_warmup", False, True)
run("plain_grad", False, True)
for c in (25, 27, 28):
    run(f"capture_nograd_chunk2^{c}", True, False, 2**c)
    run(f"capture_grad_chunk2^{c}", True, True, 2**c)
os.makedirs(os.environ.get("OUT", "/tmp/out"), exist_ok=True)
json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp/out"), "bench.json"), "w"), indent=1)
