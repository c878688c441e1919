"""Greedy k-center coreset selection that stays fast on millions of patches on a CPU.

PatchCore's coreset is the greedy k-center (farthest-point) sequence: repeatedly take the
point farthest from everything chosen so far. The textbook loop makes one pass over all
``N`` points per chosen centre; each pass is memory-bound, so 2M patches x 2k centres
crawl (about 0.3 s per pass here).

This implementation computes the *same* sequence in rounds. At the start of a round the
``M`` points with the largest distance-to-coreset are candidates; the greedy steps are
run among the candidates only (their mutual distances are one small matrix product) for
as long as the best candidate's updated distance is still at least the largest distance
of any point outside the candidates — then it is provably the global farthest point,
because distances only ever shrink. Up to ``batch`` centres are accepted per round and
all distances are then updated with one matrix product (compute-bound, chunked to bound
memory). Ties aside, the result equals the textbook loop (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["greedy_coreset", "random_projection"]


def random_projection(x: torch.Tensor, dim: int, random_state: int = 0) -> torch.Tensor:
    """Project ``(N, D)`` rows onto ``dim`` Gaussian random directions (scaled to keep distances).

    Returns float32; no projection (just a float32 copy) when ``D <= dim``.
    """
    if dim >= x.shape[1]:
        return x.float().clone()
    gen = torch.Generator().manual_seed(int(random_state))
    proj = torch.randn(x.shape[1], dim, generator=gen) / math.sqrt(dim)
    out = torch.empty(x.shape[0], dim)
    step = 1 << 16
    for i in range(0, x.shape[0], step):
        out[i:i + step] = x[i:i + step].float() @ proj
    return out


def _update(mind: torch.Tensor, z: torch.Tensor, sq: torch.Tensor, centres: torch.Tensor,
            chunk: int = 1 << 16) -> None:
    """``mind = min(mind, squared distance of each row of z to the nearest of centres)``, in place.

    numpy's BLAS is used for the product: for these skinny shapes (k x 32..128) it was
    about twice as fast as torch's on this CPU.
    """
    zn, sqn, mn = z.numpy(), sq.numpy(), mind.numpy()
    idx = centres.numpy()
    zct = np.ascontiguousarray(zn[idx].T)
    sqc = sqn[idx]
    for i in range(0, zn.shape[0], chunk):
        d = zn[i:i + chunk] @ zct  # (chunk, c)
        d *= -2.0
        d += sqc
        best = d.min(axis=1)
        best += sqn[i:i + chunk]
        np.minimum(mn[i:i + chunk], best, out=mn[i:i + chunk])


def greedy_coreset(x: torch.Tensor, k: int, *, projection_dim: int = 128, random_state: int = 0,
                   candidates: int = 1024, batch: int = 128) -> torch.Tensor:
    """Indices of ``k`` rows of ``x`` chosen by greedy k-center on a random projection.

    Parameters
    ----------
    x : Tensor (N, D)
        Patch features (float32 or float16).
    k : int
        Coreset size (``1 <= k <= N``).
    projection_dim : int, default 128
        Random projection used for the distances (PatchCore's Johnson-Lindenstrauss step);
        no projection when ``D <= projection_dim``.
    random_state : int
        Seeds the projection and the first centre.
    candidates, batch : int
        Round size: candidates examined and centres accepted at most per round. They
        change the speed, not the result.

    Returns
    -------
    LongTensor (k,)
        Row indices in the order chosen (each the farthest from all chosen before it).
    """
    n = x.shape[0]
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"coreset size must be between 1 and {n}; got {k}")
    z = random_projection(x, projection_dim, random_state).contiguous()
    sq = z.pow(2).sum(1)
    first = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(int(random_state))))
    chosen = [first]
    mind = torch.full((n,), float("inf"))
    _update(mind, z, sq, torch.tensor([first]))
    mind[first] = -1.0  # chosen points never come back
    m = min(int(candidates), n)
    while len(chosen) < k:
        top = min(m + 1, n)
        vals, cand = torch.topk(mind, top)
        if top == n:  # everything is a candidate: nothing outside to bound
            outside = -math.inf
            vals, cand = vals, cand
        else:
            outside = float(vals[-1])
            vals, cand = vals[:-1], cand[:-1]
        zc = z[cand]
        dcc = torch.addmm(sq[cand][:, None], zc, zc.T, alpha=-2.0).add_(sq[cand][None, :])
        cur = vals.clone()
        new = []
        while len(new) < batch and len(chosen) + len(new) < k:
            j = int(torch.argmax(cur))
            if float(cur[j]) < outside or float(cur[j]) < 0:
                break
            new.append(j)
            torch.minimum(cur, dcc[j], out=cur)
            cur[j] = -1.0
        picked = cand[torch.tensor(new, dtype=torch.long)]
        chosen.extend(int(p) for p in picked)
        _update(mind, z, sq, picked)
        mind[picked] = -1.0
    return torch.tensor(chosen[:k], dtype=torch.long)
