"""VQ tokenizer training: reconstruction + codebook losses, optional LPIPS and PatchGAN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from argen.data import build_dataset
from argen.tokenizers import class_for_config
from argen.tokenizers.blocks import PatchDiscriminator
from argen.training.codebook_guard import CodebookGuard, vector_quantizers
from argen.training.recipes import TokenizerRecipe
from argen.training.tasks.base import Task, random_flip


def lpips_loss() -> nn.Module:
    """LPIPS (VGG) from torchmetrics; its VGG16 weights must be available locally."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        return LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=False)
    except Exception as err:
        raise RuntimeError(
            f"the perceptual loss needs VGG16 weights for LPIPS, which could not be loaded "
            f"({type(err).__name__}: {err}). Put torchvision's vgg16 weights in "
            f"$TORCH_HOME/hub/checkpoints/ or set loss.perceptual_weight=0."
        ) from None


def regulariser(stats: dict[str, torch.Tensor], cfg) -> torch.Tensor | float:
    """The terms a tokenizer's ``forward`` reports beside its reconstruction: ``kl_loss`` (KL
    autoencoders, times ``loss.kl_weight``), ``codebook_loss`` and ``commit_loss`` (vector
    quantisers, times ``loss.codebook_weight``), and ``quantizer_loss``, a term the quantiser
    weighs itself (an entropy penalty, say), added as it is."""
    if "kl_loss" in stats:
        terms = cfg.kl_weight * stats["kl_loss"]
    else:
        terms = cfg.codebook_weight * (stats.get("codebook_loss", 0.0) + stats.get("commit_loss", 0.0))
    return terms + stats["quantizer_loss"] if "quantizer_loss" in stats else terms


class TokenizerTask(Task):
    def __init__(self, recipe: TokenizerRecipe, accelerator) -> None:
        super().__init__(recipe)
        data = recipe.data
        self.dataset = build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride)
        if recipe.model.resolution != data.resolution:
            raise ValueError(
                f"model.resolution ({recipe.model.resolution}) must equal data.resolution ({data.resolution})"
            )
        if getattr(recipe.model, "frames", None) not in (None, data.frames):  # None: an image tokenizer
            raise ValueError(f"model.frames ({recipe.model.frames}) must equal data.frames ({data.frames})")
        self.model = class_for_config(recipe.model)(recipe.model)
        loss = recipe.loss
        self.extra_modules = {}
        if loss.disc_weight > 0:
            self.extra_modules["discriminator"] = PatchDiscriminator(
                recipe.model.in_channels, loss.disc_channels, loss.disc_layers
            )
        self.perceptual = lpips_loss().to(accelerator.device) if loss.perceptual_weight > 0 else None
        self.guard = None
        if loss.codebook_restart_every > 0 and vector_quantizers(self.model):
            self.guard = CodebookGuard(
                self.model, loss.codebook_restart_every, loss.codebook_restart_candidates, recipe.seed
            )
            self.checkpointed = [self.guard]

    def after_step(self, step: int, accelerator) -> dict[str, float]:
        return self.guard.after_step(step, accelerator) if self.guard is not None else {}

    def lr(self, name: str) -> float:
        if name == "discriminator" and self.recipe.loss.disc_lr is not None:
            return self.recipe.loss.disc_lr
        return self.recipe.train.lr

    def compute_losses(self, modules, batch, step):
        cfg = self.recipe.loss
        images = batch[0]
        if self.recipe.data.flip:
            images = random_flip(images)
        recon, stats = modules["model"](images)
        if images.ndim == 5:  # video clips (B, T, C, H, W): the image losses see frames
            images, recon = images.flatten(0, 1), recon.flatten(0, 1)
        distance = F.l1_loss if cfg.reconstruction == "l1" else F.mse_loss
        rec = distance(recon, images)
        loss = rec + regulariser(stats, cfg)
        logs = {"rec_loss": rec.item(), **{k: v.item() for k, v in stats.items()}}
        if self.perceptual is not None:
            p = self.perceptual(recon.clamp(-1, 1), images)
            loss = loss + cfg.perceptual_weight * p
            logs["perceptual_loss"] = p.item()
        losses = {"model": loss}
        if "discriminator" in modules and step >= cfg.disc_start:
            disc = modules["discriminator"]
            frozen = {k: v.detach() for k, v in self._unwrap(disc).named_parameters()}
            g_loss = -functional_call(self._unwrap(disc), frozen, (recon,)).mean()
            losses["model"] = loss + cfg.disc_weight * g_loss
            real, fake = disc(images), disc(recon.detach())
            losses["discriminator"] = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
            logs.update(g_loss=g_loss.item(), d_loss=losses["discriminator"].item())
        return losses, logs

    @staticmethod
    def _unwrap(module: nn.Module) -> nn.Module:
        return getattr(module, "module", module)
