"""Notebook 07's exercise check: a right load-balancing loss passes, each typical mistake is named."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from gptoss_edu.exercises.nb07 import check_balance_loss


def right(logits, indices, n_experts):
    probs = torch.softmax(logits, dim=-1)
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * probs.mean(dim=0)).sum()


def right_with_one_hot(logits, indices, n_experts):
    chosen = torch.nn.functional.one_hot(indices, n_experts).float().sum(dim=1)  # [N, E]
    f = chosen.mean(dim=0) / indices.shape[1]
    return n_experts * torch.dot(f, torch.softmax(logits, dim=-1).mean(dim=0))


def mean_over_experts(logits, indices, n_experts):
    f = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (f * torch.softmax(logits, -1).mean(0)).mean()


def bincount_without_minlength(logits, indices, n_experts):
    # Right whenever the last expert is chosen at least once.
    f = torch.bincount(indices.reshape(-1)) / indices.numel()
    return n_experts * (f * torch.softmax(logits, -1).mean(0)).sum()


def no_factor(logits, indices, n_experts):
    return right(logits, indices, n_experts) / n_experts


def per_token(logits, indices, n_experts):
    probs = torch.softmax(logits, dim=-1)
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.shape[0]
    return n_experts * (share * probs.mean(dim=0)).sum()


def raw_counts(logits, indices, n_experts):
    counts = torch.bincount(indices.reshape(-1), minlength=n_experts).float()
    return n_experts * (counts * torch.softmax(logits, dim=-1).mean(dim=0)).sum()


def logits_not_probs(logits, indices, n_experts):
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * logits.mean(dim=0)).sum()


def wrong_dim(logits, indices, n_experts):
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * torch.softmax(logits, dim=0).mean(dim=0)).sum()


def routing_weights(logits, indices, n_experts):
    top = logits.gather(1, indices)
    p = torch.zeros_like(logits).scatter_(1, indices, torch.softmax(top, dim=-1))
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * p.mean(dim=0)).sum()


def vector(logits, indices, n_experts):
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * share * torch.softmax(logits, dim=-1).mean(dim=0)


def stub(logits, indices, n_experts):
    return None


def crashes(logits, indices, n_experts):
    raise RuntimeError("shapes")


@pytest.mark.parametrize("fn", [right, right_with_one_hot])
def test_right_answers_pass(fn):
    result = check_balance_loss(fn)
    assert result.passed and repr(result).startswith("✅"), result.message


@pytest.mark.parametrize("fn,message", [
    (no_factor, "the factor E .* is missing"),
    (mean_over_experts, r"averaged over the experts \(\.mean\(\)\)"),
    (bincount_without_minlength, "minlength=n_experts"),
    (per_token, "divided the counts by the number of tokens"),
    (raw_counts, "raw counts"),
    (logits_not_probs, "raw logits"),
    (wrong_dim, r"over the tokens \(dim 0\)"),
    (routing_weights, "routing weights of the chosen experts"),
    (vector, "return one number"),
    (lambda logits, indices, n: right(logits, indices, n).item(), r"a Python float: keep the loss a torch tensor \(no \.item\(\), no NumPy\)"),
    (stub, "returned None"),
    (crashes, "raised RuntimeError: shapes"),
])
def test_typical_mistakes_are_named(fn, message):
    result = check_balance_loss(fn)
    assert not result.passed and repr(result).startswith("❌ not yet")
    assert re.search(message, result.message), result.message


def test_an_unknown_mistake_gets_the_formula():
    result = check_balance_loss(lambda lg, idx, E: right(lg, idx, E) + 0.1)
    assert not result.passed and "expected" in result.message and "mean probability" in result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_a_one_element_tensor_passes():
    # keepdim-style [1] results hold one number: the check accepts any tensor with one element.
    r = check_balance_loss(lambda lg, idx, E: right(lg, idx, E).reshape(1))
    assert r.passed, r.message


def test_top_2_hard_coded_fails():
    # Right for k = 2 only (dividing by tokens x 2): the check must try another k.
    def hard_k(logits, indices, n_experts):
        share = torch.bincount(indices.reshape(-1), minlength=n_experts) / (indices.shape[0] * 2)
        return n_experts * (share * torch.softmax(logits, dim=-1).mean(dim=0)).sum()

    r = check_balance_loss(hard_k)
    assert not r.passed and "top-4" in r.message, r.message


def test_a_near_miss_fails():
    # 0.1% off is not rounding.
    r = check_balance_loss(lambda lg, idx, E: right(lg, idx, E) * 1.001)
    assert not r.passed and "expected" in r.message


def test_a_runtime_error_that_is_no_missing_minlength_is_not_blamed_on_bincount():
    def crashes(logits, indices, n_experts):
        raise RuntimeError("shapes cannot be multiplied")
    r = check_balance_loss(crashes)
    assert not r.passed and "raised RuntimeError: shapes" in r.message and "minlength" not in r.message, r.message


# ---- found in review: a right value without the gradient the loss exists for -----------------------

def detached_p(logits, indices, n_experts):
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * torch.softmax(logits, dim=-1).detach().mean(dim=0)).sum()


def through_a_new_tensor(logits, indices, n_experts):
    return torch.tensor(right(logits, indices, n_experts).item())


def under_no_grad(logits, indices, n_experts):
    with torch.no_grad():
        return right(logits, indices, n_experts)


def leaky(logits, indices, n_experts):
    # The right value, and a gradient, but the wrong one: half of P is detached.
    p = torch.softmax(logits, dim=-1)
    p = 0.5 * p + 0.5 * p.detach()
    share = torch.bincount(indices.reshape(-1), minlength=n_experts) / indices.numel()
    return n_experts * (share * p.mean(dim=0)).sum()


@pytest.mark.parametrize("fn, message", [
    (detached_p, "no gradient flows from your loss back to the router's logits"),
    (through_a_new_tensor, "no gradient flows"),
    (under_no_grad, "no gradient flows"),
    (leaky, "its gradient with respect to the logits is not"),
    (lambda lg, idx, E: np.float64(right(lg, idx, E).item()), "you returned a NumPy number"),
])
def test_a_right_value_without_the_right_gradient_fails(fn, message):
    result = check_balance_loss(fn)
    assert not result.passed and message in result.message, result.message


def backward_inside(logits, indices, n_experts):
    loss = right(logits, indices, n_experts)
    loss.backward()  # "to see the gradient reach the router"
    return loss


def backward_retained(logits, indices, n_experts):
    loss = right(logits, indices, n_experts)
    loss.backward(retain_graph=True)
    return loss


def grad_inside(logits, indices, n_experts):
    loss = right(logits, indices, n_experts)
    torch.autograd.grad(loss, logits)
    return loss


@pytest.mark.parametrize("fn", [backward_inside, backward_retained, grad_inside])
def test_a_function_that_backpropagates_itself_gets_a_verdict_not_a_traceback(fn):
    """Training calls backward once on the sum of losses; a backward inside would double the router's gradient."""
    result = check_balance_loss(fn)
    assert not result.passed and "the value is right" in result.message
    assert "backward" in result.message


def test_one_hot_without_num_classes_gets_advice_for_one_hot_too():
    """The advice named only bincount's minlength, to a learner who had counted with F.one_hot."""
    def one_hot_count(logits, indices, n_experts):
        f = torch.nn.functional.one_hot(indices).sum((0, 1)).float() / indices.numel()
        return n_experts * (f * logits.softmax(-1).mean(0)).sum()

    r = check_balance_loss(one_hot_count)
    assert not r.passed and "F.one_hot num_classes=n_experts" in r.message and "minlength=n_experts" in r.message
