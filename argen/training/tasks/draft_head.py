"""Draft-head training (EAGLE-style): the frozen target reads each cached token sequence once;
the head learns to predict the target's next features (smooth L1) and, through the target's
own output layer, its next-token distribution (cross-entropy to the target's)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.data import TokenCacheDataset
from argen.models.draft_head import DraftHead
from argen.training.recipes import DraftHeadRecipe
from argen.training.tasks.base import Task
from argen.training.tasks.generator import token_cache

TARGET_TOKENIZER = "tokenizer"


class DraftHeadTask(Task):
    def __init__(self, recipe: DraftHeadRecipe, accelerator) -> None:
        super().__init__(recipe)
        run = Path(recipe.target)
        target = models.load(weights_of(run, None))
        self.model = DraftHead.from_target(target, recipe.layers)  # checks the target's kind
        tokenizer = tokenizers.load(run / TARGET_TOKENIZER)
        if tokenizer.config.resolution != recipe.data.resolution:
            raise ValueError(
                f"data.resolution ({recipe.data.resolution}) must equal the target's tokenizer "
                f"resolution ({tokenizer.config.resolution})"
            )
        self.dataset = TokenCacheDataset(token_cache(recipe, run / TARGET_TOKENIZER, tokenizer, accelerator))
        self.target = target.to(accelerator.device).eval().requires_grad_(False)

    def compute_losses(self, modules, batch, step):
        tokens, labels = batch
        tokens = tokens.flatten(1)  # (B, L)
        with torch.no_grad():  # the target's features, with its own condition dropout (CFG rows)
            drop = torch.rand(len(labels), device=labels.device) < self.target.config.class_dropout
            labels = torch.where(drop, torch.full_like(labels, self.target.null_class), labels)
            features = self.target.token_features(tokens, labels)  # (B, L, D)
            target_probs = self.target.output(self.target.norm(features[:, 1:])).float().softmax(-1)
        predicted, logits = modules["model"](features, tokens)
        feature_loss = F.smooth_l1_loss(predicted.float(), features[:, 1:].float())
        token_loss = -(target_probs * logits.log_softmax(-1)).sum(-1).mean()
        r = self.recipe
        loss = r.feature_weight * feature_loss + r.token_weight * token_loss
        accepted = (logits.argmax(-1) == target_probs.argmax(-1)).float().mean()
        return {"model": loss}, {
            "feature_loss": feature_loss.item(),
            "token_loss": token_loss.item(),
            "top1_match": accepted.item(),
        }
