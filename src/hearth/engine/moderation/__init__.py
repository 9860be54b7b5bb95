"""Text moderation: OpenAI's 13 categories, scored by a small network over sentence embeddings.

    from hearth.engine.moderation import NetworkModerator
    m = NetworkModerator()                       # data/weights.npz, trained thresholds
    [verdict] = m.classify(["some text"])        # blocking: run it off the event loop
    verdict.flagged, verdict.scores["violence"]

`FakeModerator` is a keyword classifier with no model, for tests. Training and evaluation:
moderation/train.py (`hearth moderation train`) and bench/moderation_eval.py.
"""

from hearth.engine.moderation.categories import CATEGORIES, PARENT, check_category
from hearth.engine.moderation.classifier import DEFAULT_MODEL_ID, NetworkModerator, check_thresholds
from hearth.engine.moderation.fake import FakeModerator
from hearth.engine.moderation.interface import Classification, Moderator

__all__ = [
    "CATEGORIES",
    "DEFAULT_MODEL_ID",
    "PARENT",
    "Classification",
    "FakeModerator",
    "Moderator",
    "NetworkModerator",
    "check_category",
    "check_thresholds",
]
