"""The Fine-tune tab: the press (:mod:`labeler.embedding.finetune`) as a background job
(:mod:`labeler.jobs`), with a progress bar and a Cancel button, while labelling goes on."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
