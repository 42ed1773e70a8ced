"""The two speed paths of optlab.optim (benchmarks/optim_step.py measures them).

- Cache blocks (the default path on CPU): tensors cut into blocks at odd positions still give
  torch's foreach and for-loop results bit for bit, with 1 and 2 threads.
- `compiled=True`: torch.compile of a one-param kernel. Not bit-exact, so: params and state agree
  with the default path to 1e-6 (relative to each tensor's largest value) after a few steps, for
  every algorithm with its options on; a new lr or step count does not recompile; params torch.compile
  cannot take (non-contiguous) and small packed params are stepped too.
The compiled tests are marked slow: about 35 s on 2 cores with a cold inductor cache, 8 s warm.
The others take about 10 s.
"""

import pytest
import torch
from torch import nn

import optlab.optim._foreach as foreach
from optlab.optim.adam import Adam
from optlab.optim.adamw import AdamW
from optlab.optim.lion import Lion
from optlab.optim.rmsprop import RMSprop
from optlab.optim.sgd import SGD

# Odd sizes: blocks of 1000 cut the big tensor at positions no SIMD width divides; 5000+ elements
# go through the compiled kernel one by one, the small ones packed together.
SHAPES = [(200_003,), (37, 5, 3), (101, 99), (7,), (1,)]
RICH = [  # every branch of each algorithm
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, maximize=True, weight_decay=1e-2)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-2, maximize=True)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2)),
    (RMSprop, torch.optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.5, weight_decay=1e-2, maximize=True)),
    (RMSprop, torch.optim.RMSprop, dict(lr=1e-3)),
    (Lion, None, dict(lr=1e-3, weight_decay=0.1, maximize=True)),
]
IDS = [f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(RICH)]


@pytest.fixture
def threads():
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


def params(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]


def train(sets, opts, steps, seed=1, on_step=None):
    """The same random grads for every param set; optional on_step(step) before each step."""
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        grads = [torch.randn(s, generator=g, dtype=sets[0][0].dtype) for s in SHAPES]
        for ps in sets:
            for p, grad in zip(ps, grads):
                p.grad = grad.clone()
        if on_step:
            on_step(step)
        for opt in opts:
            opt.step()


# With 2 threads ATen splits each op of an unblocked tensor at its middle, away from our cuts (one
# case: a second thread on a loaded 2-core machine makes torch's reference steps ~50x slower).
BLOCK_CASES = [(*c, 1) for c in RICH if c[1]] + [(*RICH[2], 2)]


@pytest.mark.parametrize(
    "ours,theirs,hp,n_threads",
    BLOCK_CASES,
    ids=[f"{c[0].__name__}-{i}-threads{c[3]}" for i, c in enumerate(BLOCK_CASES)],
)
def test_blocks_cut_anywhere_are_bit_exact(ours, theirs, hp, n_threads, threads, monkeypatch):
    threads(n_threads)
    monkeypatch.setattr(foreach, "BLOCK", 1000)
    sets = [params() for _ in range(3)]
    opts = [ours(sets[0], **hp), theirs(sets[1], foreach=True, **hp), theirs(sets[2], foreach=False, **hp)]
    train(sets, opts, steps=4)
    for other in sets[1:]:
        assert all(torch.equal(a, b) for a, b in zip(sets[0], other))


def test_blocks_keep_lists_aligned(monkeypatch):
    monkeypatch.setattr(foreach, "BLOCK", 64)
    a, b = torch.arange(150.0), torch.arange(10.0).reshape(2, 5)
    t = torch.arange(12.0).reshape(3, 4).T  # not contiguous: goes whole
    blocks = list(foreach.cache_blocks([a, b, t], [a + 1, b + 1, t + 1], [0.5, 1.5, 2.5], []))
    assert [len(first) for first, *_ in blocks] == [1, 1, 3]  # a[:64] | a[64:128] | a[128:], b, t
    assert torch.equal(
        torch.cat([x.flatten() for first, *_ in blocks for x in first]), torch.cat([a, b.flatten(), t.flatten()])
    )
    assert all(torch.equal(y, x + 1) for first, second, *_ in blocks for x, y in zip(first, second))
    assert [scalars for _, _, scalars, _ in blocks] == [[0.5], [0.5], [0.5, 1.5, 2.5]]
    assert all(empty == [] for *_, empty in blocks)
    assert blocks[2][0][2] is t
    blocks[1][0][0].fill_(-1.0)  # pieces are views: in-place updates reach the tensors
    assert (a[64:128] == -1).all() and (a[:64] >= 0).all() and (a[128:] >= 0).all()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()


@pytest.mark.slow  # the first compile in a process takes ~15 s on 2 cores; then 1-3 s per kernel
@pytest.mark.parametrize("ours,theirs,hp", RICH, ids=IDS)
def test_compiled_agrees_with_default_path(ours, theirs, hp):
    sets = [params(), params()]
    sets[1][2] = nn.Parameter(sets[0][2].detach().T.contiguous().T)  # non-contiguous: stepped uncompiled
    default, compiled = ours(sets[0], **hp), ours(sets[1], compiled=True, **hp)

    def schedule(step):  # a new lr every step, as an LR scheduler sets it, must not recompile
        for opt in (default, compiled):
            opt.param_groups[0]["lr"] = hp["lr"] * (1 - 0.1 * step)
        if step == 2:  # compiled by now (SGD's first step makes its buffers uncompiled)
            torch.compiler.set_stance("fail_on_recompile")

    try:
        train(sets, [default, compiled], steps=5, on_step=schedule)
    finally:
        torch.compiler.set_stance("default")
    for a, b in zip(sets[0], sets[1]):
        assert rel_err(b, a) <= 1e-6
        state_a, state_b = default.state[a], compiled.state[b]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert rel_err(state_b[key], state_a[key]) <= 1e-6, key
    assert not torch.equal(sets[1][0], params()[0])  # it did step


def test_compiled_switch_is_keyword_only_and_not_a_param_group_key():
    w = [nn.Parameter(torch.zeros(3))]
    opt = AdamW(w, compiled=True)
    assert opt.compiled and "compiled" not in opt.defaults and "compiled" not in opt.param_groups[0]
    with pytest.raises(TypeError):
        SGD(w, 0.1, 0.0, 0.0, 0.0, False, True)  # positional: torch's six arguments only
    fresh = AdamW(w)
    fresh.load_state_dict(opt.state_dict())
    assert not fresh.compiled  # a runtime choice of this process, not part of the checkpoint
