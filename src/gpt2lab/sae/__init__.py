"""Sparse autoencoders: train one on any step's activations, read and write SAE Lens's files,
look at a feature, steer the model with it.

    from gpt2lab.sae import load_sae, feature_report, steer
    sae = load_sae("tiny-sae")  # or an `sae train` run, or SAE Lens's folder
    model.generate_text("Once upon a time", 40, edits=[steer(sae, 123, 8.0)])

``autoencoder`` (the SAE and its files), ``training`` (the recipe, the run, the measurements),
``features`` (dashboards, active features, steering).
"""

from .autoencoder import SAE, SAEConfig, activations_at, load_sae, normalize_decoder
from .features import (
    FeatureReport,
    active_features,
    feature_report,
    logit_effects,
    promoted_tokens,
    steer,
)
from .training import SAEMetrics, SAETrainConfig, evaluate_sae, splice, train_sae

__all__ = [
    "SAE",
    "FeatureReport",
    "SAEConfig",
    "SAEMetrics",
    "SAETrainConfig",
    "activations_at",
    "active_features",
    "evaluate_sae",
    "feature_report",
    "load_sae",
    "logit_effects",
    "normalize_decoder",
    "promoted_tokens",
    "splice",
    "steer",
    "train_sae",
]
