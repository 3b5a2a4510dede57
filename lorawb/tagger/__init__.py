"""Auto-tagging and captioning with local models, as caption change sets.

A backend (``backends``: WD-style ONNX taggers, transformers captioning folders, the toy
world's reader) turns images into labels with confidences; ``engine`` runs it over many
images (decode threads, batches, the per-image cache of ``cache``, progress, cancel);
``select`` turns one image's labels into tags (thresholds, exclusions, replacements, the
character's invariant features dropped); ``merge`` folds them into the caption (fill,
append, replace; the trigger first) as a ``lorawb.core.caption_ops`` operation. ``plan``
puts it together into a ``TagPlan``: the change set with its preview, applied and undone
by ``lorawb.core.caption_history`` like any bulk edit.

Nothing here downloads anything: every model is a local folder the user names. Heavy
libraries (onnxruntime, torch, transformers) are imported only by the backend that needs
them, when it is opened. No Textual here: the app and the CLI are clients.
"""

from lorawb.tagger.plan import TagPlan, plan_tags

__all__ = ["TagPlan", "plan_tags"]
