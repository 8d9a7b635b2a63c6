"""Notebook 07's exercise: the load-balancing loss that keeps a router from favouring a few experts."""

from __future__ import annotations

from typing import Callable

import torch

from ..moe import load_balancing_loss
from . import CheckResult, failed, not_a_function, passed

BalanceLoss = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _loss(probs: torch.Tensor, counts: torch.Tensor, E: int) -> torch.Tensor:
    return E * (counts * probs.mean(dim=0)).sum()


def _typical_mistakes(logits: torch.Tensor, indices: torch.Tensor, E: int) -> dict[str, torch.Tensor]:
    N, k = indices.shape
    probs = torch.softmax(logits, dim=-1)
    counts = torch.bincount(indices.reshape(-1), minlength=E).float()
    share = counts / (N * k)
    top, _ = logits.topk(k, dim=-1)
    chosen = torch.zeros(N, E).scatter_(1, indices, torch.softmax(top, dim=-1))
    return {
        "your loss is E times too small: either the factor E (the number of experts) is missing, or you "
        "averaged over the experts (.mean()) where the formula sums. With E x sum, perfectly even routing "
        "scores 1 whatever the number of experts": _loss(probs, share, E) / E,
        "you divided the counts by the number of tokens: divide by the number of choices (tokens x k), "
        "so the shares sum to 1": _loss(probs, counts / N, E),
        "you used the raw counts: use each expert's share of the choices (counts / (tokens x k))":
            _loss(probs, counts, E),
        "you averaged the raw logits: average the router's probabilities, softmax(logits) over the experts":
            _loss(logits, share, E),
        "your softmax runs over the tokens (dim 0): the probabilities are over the experts (dim -1)":
            _loss(torch.softmax(logits, dim=0), share, E),
        "you averaged the routing weights of the chosen experts: use the softmax over all experts, so "
        "every expert's probability (chosen or not) gets a gradient": _loss(chosen, share, E),
    }


def check_balance_loss(fn: BalanceLoss) -> CheckResult:
    """Try ``fn(logits [N, E], indices [N, k], n_experts)`` against gptoss_edu.moe.load_balancing_loss."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    gen = torch.Generator().manual_seed(7)
    # The last case's last two experts are never chosen, as happens to a router in training: a count
    # of the choices must still have a slot (zero) for each of them.
    for n_tokens, E, k, idle in ((24, 8, 2, 0), (40, 32, 4, 0), (30, 8, 2, 2)):
        logits = torch.randn(n_tokens, E, generator=gen) * 1.5
        logits[:, 0] += 1.0  # a favoured expert, so the loss is well above its value for even routing, 1
        if idle:
            logits[:, -idle:] -= 20.0
        indices = logits.topk(k, dim=-1).indices
        # The loss is for its gradient: the router learns from it. So it must reach the logits, and be right.
        mine, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        want = load_balancing_loss(theirs, indices, E)
        try:
            got = fn(mine, indices.clone(), E)
        except Exception as e:  # the learner's code: say what went wrong, don't crash the notebook
            if idle and isinstance(e, RuntimeError) and "size of tensor" in str(e):
                return failed(f"not yet: with experts {E - idle}..{E - 1} never chosen your function raised "
                              f"RuntimeError: {e}. A count over the experts stops at the highest index it sees: "
                              "give torch.bincount minlength=n_experts (or F.one_hot num_classes=n_experts), so an "
                              "idle expert gets a count of 0")
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None: did you forget to `return` the loss?")
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            what = ("a NumPy number" if type(got).__module__ == "numpy" else f"a Python {type(got).__name__}")
            return failed(f"not yet: you returned {what}: keep the loss a torch tensor (no .item(), no NumPy), "
                          "because training adds it to the loss and backpropagates through it")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return failed(f"not yet: return one number (a 0-d tensor), got {shape}")
        if torch.isclose(got.detach().float().reshape(()), want.detach(), rtol=1e-5, atol=1e-6):
            if not got.requires_grad:
                return failed("not yet: the value is right, but no gradient flows from your loss back to the router's "
                              "logits (torch.tensor(...) around a number, .item(), .detach() or torch.no_grad() cut "
                              "it): the loss is only useful through that gradient")
            if mine.grad is not None:  # the learner's function ran backward itself
                return failed("not yet: the value is right, but your function called .backward() on it: return the "
                              "loss without backpropagating (training adds it to the model's loss, then calls "
                              "backward once for both)")
            try:
                (mine_grad,) = torch.autograd.grad(got.float().reshape(()), mine, allow_unused=True)
            except RuntimeError as e:  # the graph was freed: torch.autograd.grad(loss, ...) inside the function
                return failed(f"not yet: the value is right, but its gradient could not be taken ({e}): return the "
                              "loss without calling backward or torch.autograd.grad on it")
            (want_grad,) = torch.autograd.grad(want, theirs)
            if mine_grad is None or not torch.allclose(mine_grad, want_grad, rtol=1e-4, atol=1e-7):
                return failed("not yet: the value is right, but its gradient with respect to the logits is not: "
                              "the mean probabilities P_e must come from softmax(logits) without a detach; only the "
                              "shares of choices f_e carry no gradient")
            continue
        for message, wrong in _typical_mistakes(logits, indices, E).items():
            if torch.isclose(got.detach().float().reshape(()), wrong, rtol=1e-5, atol=1e-6):
                return failed("not yet: " + message + ".")
        return failed(f"not yet: with {E} experts and top-{k} your loss is {float(got.detach()):.4g}, expected "
                      f"{float(want.detach()):.4g}: E x sum over experts of (share of choices) x (mean probability)")
    return passed("your loss matches gptoss_edu.moe.load_balancing_loss: E x sum_e f_e P_e, "
                  "1 when the routing is perfectly even.")
