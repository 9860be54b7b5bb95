"""The moderation engine: shipped data, windows, category nesting, reproducible training, numpy inference."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hearth.engine.embedding import FakeEmbedder
from hearth.engine.moderation import CATEGORIES, PARENT, FakeModerator, NetworkModerator
from hearth.engine.moderation.categories import consistent, consistent_matrix
from hearth.engine.moderation.dataset import Example, data_path, load_examples
from hearth.engine.moderation.features import Featurizer, windows
from hearth.engine.moderation.metrics import report
from hearth.engine.moderation.network import Network
from hearth.engine.moderation.train import TrainConfig, save, train
from hearth.protocol.moderations import wire_categories


def fake_profanity() -> object:
    def fn(texts: list[str]) -> npt.NDArray[np.float64]:
        return np.array([0.95 if any(w in t.lower() for w in ("idiot", "loser", "fuck")) else 0.05 for t in texts])

    return fn


def fake_featurizer() -> Featurizer:
    return Featurizer(embedder=lambda: FakeEmbedder(dimensions=48), profanity=fake_profanity)  # type: ignore[arg-type]


def test_protocol_and_engine_agree_on_the_13_categories() -> None:
    assert len(CATEGORIES) == 13
    assert set(wire_categories()) == set(CATEGORIES)


def test_shipped_sets_are_well_formed() -> None:
    train_set = load_examples(data_path("train.jsonl"))
    eval_set = load_examples(data_path("eval.jsonl"))
    for examples in (train_set, eval_set):
        for e in examples:
            for child in e.labels:
                if child in PARENT:
                    assert PARENT[child] in e.labels, (e.text, e.labels)  # a subcategory implies its parent
    per_cat = Counter(c for e in train_set for c in e.labels)
    assert all(per_cat[c] >= 100 for c in CATEGORIES), per_cat
    assert sum(1 for e in train_set if not e.labels) >= 1500
    per_cat_eval = Counter(c for e in eval_set for c in e.labels)
    assert all(per_cat_eval[c] >= 10 for c in CATEGORIES), per_cat_eval
    kinds = Counter(e.kind for e in eval_set)
    assert kinds["lookalike"] >= 150 and kinds["benign"] >= 50
    assert {e.round for e in eval_set} == {1, 2}
    assert all(e.kind == "harmful" for e in eval_set if e.labels)
    # held out: no eval line is in the training set
    assert not {e.text.lower().strip() for e in train_set} & {e.text.lower().strip() for e in eval_set}


def test_windows_cover_long_texts() -> None:
    assert windows("short text. Another one!") == ["short text. Another one!"]
    # no sentence ends: overlapping word windows
    words = [f"w{i}" for i in range(150)]
    ws = windows(" ".join(words), size=64, stride=48)
    assert all(len(w.split()) == 64 for w in ws)
    assert ws[0].split()[0] == "w0" and ws[-1].split()[-1] == "w149"
    assert {w for win in ws for w in win.split()} == set(words)
    # sentences: one piece each, very short ones joined to the next
    text = " ".join(["This is a calm sentence about the weather today."] * 10 + ["Ok.", "I will hurt you badly tonight."])
    ws = windows(text, size=64)
    assert ws[-1] == "Ok. I will hurt you badly tonight."
    assert ws[0] == "This is a calm sentence about the weather today." and len(ws) == 11
    assert windows("word " * 70 + "end")[-1].endswith("end")


def test_parents_are_at_least_their_children() -> None:
    s = dict.fromkeys(CATEGORIES, 0.1) | {"self-harm/intent": 0.9, "self-harm": 0.2}
    out = consistent(s)
    assert out["self-harm"] == 0.9 and out["self-harm/intent"] == 0.9 and out["violence"] == 0.1
    m = np.array([[s[c] for c in CATEGORIES]], np.float32)
    assert consistent_matrix(m)[0].tolist() == pytest.approx([out[c] for c in CATEGORIES])


def test_fake_moderator() -> None:
    fake = FakeModerator()
    ok, bad = fake.classify(["all good", "I will kill-threat you"])
    assert not ok.flagged and bad.flagged
    assert bad.flags["harassment/threatening"] and bad.flags["harassment"] and not bad.flags["sexual"]
    assert fake.calls == [["all good", "I will kill-threat you"]]


def small_slice(n: int = 600) -> list[Example]:
    """The first n training lines (the file is shuffled), topped up so every category has examples."""
    lines = load_examples(data_path("train.jsonl"))
    out = lines[:n]
    for c in CATEGORIES:
        if sum(c in e.labels for e in out) < 3:
            out += [e for e in lines[n:] if c in e.labels][:3]
    return out


def test_training_is_reproducible(tmp_path: Path) -> None:
    examples = small_slice()
    cfg = TrainConfig(seed=3, hidden=8, members=2, max_iter=40)
    a = train(examples, fake_featurizer(), cfg)
    b = train(examples, fake_featurizer(), cfg)
    for name in ("w1", "b1", "w2", "b2", "thresholds"):
        assert np.array_equal(getattr(a.network, name), getattr(b.network, name)), name
    assert a.sha256 == b.sha256 and a.val_f1 == b.val_f1
    c = train(examples, fake_featurizer(), TrainConfig(seed=4, hidden=8, members=2, max_iter=40))
    assert not np.array_equal(a.network.w1, c.network.w1)

    path = tmp_path / "w.npz"
    save(a, path, embedder_id="fake-embedding")
    net, meta = Network.load(path)
    assert np.array_equal(net.w1, a.network.w1) and np.array_equal(net.thresholds, a.network.thresholds)
    assert meta["seed"] == "3" and meta["embedder_id"] == "fake-embedding" and meta["train_sha256"] == a.sha256


def test_network_moderator_scores_long_texts_by_their_worst_window(tmp_path: Path) -> None:
    examples = small_slice()
    t = train(examples, fake_featurizer(), TrainConfig(hidden=8, members=1, max_iter=60))
    save(t, tmp_path / "w.npz", embedder_id="fake-embedding")
    m = NetworkModerator(tmp_path / "w.npz", featurizer=fake_featurizer(), thresholds={"violence": 0.99})
    assert m.thresholds()["violence"] == 0.99
    bad = "you idiot loser"
    long_text = " ".join(["calm"] * 300 + bad.split() + ["calm"] * 300)
    _, s_long, s_calm = m.scores([bad, long_text, "calm " * 10])
    assert s_long.shape == (13,) and np.all((0 <= s_long) & (s_long <= 1))
    # the window holding the insult scores at least as high as the insult alone in a short text
    i = CATEGORIES.index("harassment")
    assert s_long[i] >= s_calm[i]
    [v] = m.classify([bad])
    assert set(v.scores) == set(CATEGORIES) == set(v.flags)
    assert m.classify([]) == []


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown moderation category"):
        NetworkModerator(thresholds={"violent": 0.5})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        NetworkModerator(thresholds={"violence": 0.0})


def test_report() -> None:
    truth = np.zeros((4, 13), bool)
    pred = np.zeros((4, 13), bool)
    truth[0, 0] = pred[0, 0] = True  # tp
    pred[1, 0] = True  # fp on a look-alike
    truth[2, 11] = True  # fn
    r = report(pred, truth, np.array([False, True, False, False]))
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 1, 1)
    assert (r.binary.tp, r.binary.fp, r.binary.fn) == (1, 1, 1)
    assert r.lookalike_fp_rate == 1.0 and r.per_category["violence"].recall == 0.0
