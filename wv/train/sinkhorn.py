"""The Sinkhorn layer of visual permutation learning (DeepPermNet, Santa Cruz et al., CVPR 2017).

A square matrix of scores Q becomes doubly stochastic by normalising its rows and its columns in
turn, S^n(Q) = C(R(S^(n-1)(Q))), S^0(Q) = exp(Q / temperature). Here every step is a logsumexp in
log space (no overflow, no division by a vanishing sum), and the whole loop is differentiated
through by autograd. The result is log S: a log-probability of tile i sitting at place j.
"""

import torch


def log_sinkhorn(scores: torch.Tensor, iterations: int = 20, temperature: float = 1.0) -> torch.Tensor:
    """scores [..., n, n] -> log of a doubly-stochastic matrix (rows and columns each sum to 1)."""
    if iterations < 1:
        raise ValueError("Sinkhorn needs at least one iteration")
    log_s = scores / temperature
    for _ in range(iterations):
        log_s = log_s - torch.logsumexp(log_s, dim=-1, keepdim=True)  # rows
        log_s = log_s - torch.logsumexp(log_s, dim=-2, keepdim=True)  # columns
    return log_s
