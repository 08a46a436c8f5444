"""The library's one CPU thread policy (``sepconv.kernels.threads``) around the convolution
family's torch kernels: the forward call and, through hooks on its autograd node, the
backward's convolution run on the policy's thread count; the user's count is restored."""

from __future__ import annotations

import pytest
import torch

from sepconv import functional
from sepconv.kernels import threads


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def policy(monkeypatch):
    """A fresh policy with a fake clock as the library's, torch on two threads."""
    clock = _Clock()
    fresh = threads.ThreadPolicy(clock=clock, min_work=0, cpu_clock=None)  # tiny tensors
    monkeypatch.setattr(threads, "THREADS", fresh)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield fresh, clock
    torch.set_num_threads(before)


def _observe(y, seen):
    """Records the thread count the autograd convolution node behind ``y`` runs on (a
    pre-hook registered after the policy's runs after it)."""
    node = threads._find_node(y.grad_fn, ("ConvolutionBackward0",))
    assert node is not None
    node.register_prehook(lambda grad_outputs: seen.append(torch.get_num_threads()))


@pytest.mark.parametrize("layer", ["conv2d", "depthwise", "conv1d_causal", "transpose",
                                   "conv3d"])
def test_backward_runs_on_the_policys_threads(policy, layer):
    """Once one thread measured cheaper (a busy machine), forward and backward both run on
    one; numbers are unchanged; two threads are back after each call."""
    pol, clock = policy
    g = torch.Generator().manual_seed(0)
    if layer == "conv2d":
        x, k = torch.randn(2, 9, 9, 4, generator=g), torch.randn(3, 3, 4, 5, generator=g)
        fn = lambda x, k: functional.conv(x, k, padding="same")  # noqa: E731
    elif layer == "depthwise":
        x, k = torch.randn(2, 9, 9, 4, generator=g), torch.randn(3, 3, 4, 2, generator=g)
        fn = lambda x, k: functional.depthwise_conv(x, k, padding="same")  # noqa: E731
    elif layer == "conv1d_causal":
        x, k = torch.randn(2, 30, 4, generator=g), torch.randn(3, 4, 6, generator=g)
        fn = lambda x, k: functional.conv(x, k, padding="causal",  # noqa: E731
                                          dilation_rate=2)
    elif layer == "transpose":
        x, k = torch.randn(2, 5, 5, 4, generator=g), torch.randn(3, 3, 6, 4, generator=g)
        fn = lambda x, k: functional.conv_transpose(x, k, strides=2,  # noqa: E731
                                                    padding="same")
    else:
        x, k = torch.randn(1, 5, 5, 5, 3, generator=g), torch.randn(3, 3, 3, 3, 2, generator=g)
        fn = lambda x, k: functional.conv(x, k, strides=2, padding="same")  # noqa: E731
    expected = [t.grad for t in _grads(fn, x.double(), k.double())]
    picked = []

    def call_and_record(cost):
        # each timed region costs `cost(threads)` on the fake clock: hook the clock into
        # the node so the backward's time is charged too
        xs, ks = x.clone().requires_grad_(), k.clone().requires_grad_()
        clock.now += cost(torch.get_num_threads())
        y = fn(xs, ks)
        seen = []
        _observe(y, seen)
        node = threads._find_node(y.grad_fn, ("ConvolutionBackward0",))
        node.register_prehook(lambda g_: setattr(clock, "now",
                                                 clock.now + cost(torch.get_num_threads())))
        y.backward(torch.ones_like(y))
        picked.append(seen[0])
        assert torch.get_num_threads() == 2
        return xs.grad, ks.grad

    busy = lambda t: 1.0 if t == 1 else 20.0  # noqa: E731
    for _ in range(12):
        gx, gk = call_and_record(busy)
    assert picked[-3:] == [1, 1, 1]
    keys = {key[0] for key in pol.cost}
    assert any(key.endswith("-backward") for key in keys)
    torch.testing.assert_close(gx.double(), expected[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gk.double(), expected[1], rtol=1e-4, atol=1e-4)


def _grads(fn, x, k):
    x, k = x.clone().requires_grad_(), k.clone().requires_grad_()
    y = fn(x, k)
    y.backward(torch.ones_like(y))
    return x, k


def test_idle_machine_keeps_two_threads(policy):
    pol, clock = policy
    x = torch.randn(2, 8, 8, 3)
    k = torch.randn(3, 3, 3, 4, requires_grad=True)
    seen = []
    for _ in range(12):
        before = clock.now
        y = functional.conv(x, k, padding="same")
        clock.now = before + (5.0 if torch.get_num_threads() == 1 else 3.0)
        _observe(y, seen)
        y.sum().backward()
    assert seen[-1] == 2 and seen.count(2) >= 8


class _Boom(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("boom")


def test_a_node_that_raises_leaves_no_thread_count_behind(policy):
    """The hook after a node never runs when the node raises: the next call of the policy
    finds the stale call, restores the thread count and goes on."""
    pol, clock = policy
    key_work = 1000
    # teach the policy that one thread is cheaper for "boom"
    for _ in range(6):
        pol.run("boom", key_work, lambda: setattr(clock, "now", clock.now + (
            1.0 if torch.get_num_threads() == 1 else 9.0)))
    y = _Boom.apply(torch.ones(3, requires_grad=True))
    pol.hook_backward(y, ("_BoomBackward",), "boom", key_work)
    with pytest.raises(RuntimeError, match="boom"):
        y.sum().backward()
    assert torch.get_num_threads() == 1  # left by the pre-hook
    pol.run("other", 10, lambda: None)  # any next call restores it
    assert torch.get_num_threads() == 2
    assert not pol.lock.locked()


def test_hooks_only_where_a_backward_will_run(policy, monkeypatch):
    """The forward call is always the policy's; its backward node is hooked only when
    the result records a graph (not under no_grad, not for tensors without grad)."""
    pol, clock = policy
    hooked = []
    real = pol.hook_backward
    monkeypatch.setattr(pol, "hook_backward", lambda y, *a: hooked.append(1) or real(y, *a))
    x = torch.randn(1, 6, 6, 2)
    k = torch.randn(3, 3, 2, 2)
    functional.conv(x, k)
    with torch.no_grad():
        functional.conv(x, k.requires_grad_())
    assert hooked == [] and pol.calls  # the forwards went through the policy
    functional.conv(x, k).sum().backward()
    assert hooked == [1]
    assert threads._find_node(None, ("ConvolutionBackward0",)) is None


def test_tiny_calls_skip_the_policy(policy, monkeypatch):
    """Below min_work multiply-adds (one thread anyway) no policy call, no hook."""
    pol, clock = policy
    monkeypatch.setattr(pol, "min_work", 10 ** 9)
    k = torch.randn(3, 3, 2, 2, requires_grad=True)
    y = functional.conv(torch.randn(1, 6, 6, 2), k, padding="same")
    y.sum().backward()
    assert pol.calls == {} and k.grad is not None
