"""The web app's sparse autoencoders: the served models each SAE reads, its most active
features at each position of a prompt (/api/sae/features), one feature's dashboard
(/api/sae/feature), and the SAE that an edit or a view names.

``SaeLab`` does this work for gpt2lab.web.lab's ``Lab``, which holds one and routes to it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fastapi import HTTPException

from ..errors import GPT2LabError, UsageError, check_index
from ..generate import prompt_ids
from ..model import GPT2
from ..sae import SAE, active_features, feature_report
from ..sae.autoencoder import check_model
from ..train.data import bundled_text
from ..viz.html import feature_html
from .schemas import SaeFeatureRequest, SaeFeaturesRequest

# A feature's dashboard reads this much of a bundled text (no TinyStories excerpt ships in the
# package), in windows of DASHBOARD_CONTEXT tokens: small enough to answer within a request.
DASHBOARD_TEXT = "shakespeare"
DASHBOARD_CHARS = 6_000
DASHBOARD_CONTEXT = 32


class SaeLab:
    """The SAEs of one app (name -> SAE), each for the served models whose step it reads.

    ``model`` names a served model (404 for any other) and ``ids`` tokenizes a prompt within
    the server's limits: both are the ``Lab``'s."""

    def __init__(
        self,
        models: dict[str, GPT2],
        saes: dict[str, SAE],
        model: Callable[[str], GPT2],
        ids: Callable[[GPT2, str], list[int]],
    ) -> None:
        self.models = models
        self.saes = dict(saes)
        self.owners = {name: sae_owners(models, name, sae) for name, sae in self.saes.items()}
        self.model = model
        self.ids = ids
        self._dashboard_tokens: dict[str, np.ndarray] = {}

    def sae(self, model_name: str, name: str) -> SAE:
        """SAE ``name``, if this server has it for model ``model_name``; else 404."""
        if model_name not in self.owners.get(name, []):
            have = self.names(model_name)
            raise HTTPException(
                404,
                f"unknown SAE {name!r} for model {model_name!r}: this server has "
                f"{', '.join(map(repr, have)) or 'none'} for it (gpt2lab serve --sae NAME)",
            )
        return self.saes[name]

    def names(self, model_name: str) -> list[str]:
        """The SAEs served for model ``model_name``."""
        return [name for name, owners in self.owners.items() if model_name in owners]

    def features(self, req: SaeFeaturesRequest) -> dict:
        """``active_features``: the ``k`` strongest features at each position of the prompt."""
        model = self.model(req.model)
        sae = self.sae(req.model, req.sae)
        ids = self.ids(model, req.prompt)
        rows = active_features(model, sae, ids, req.k)
        return {
            "sae": sae_json(req.sae, sae),
            "positions": [
                {"token": token, "features": [{"feature": i, "activation": a} for i, a in top]}
                for token, top in rows
            ],
        }

    def feature(self, req: SaeFeatureRequest) -> dict:
        """``feature_report`` on the start of the bundled text, drawn as the library's
        self-contained HTML dashboard."""
        model = self.model(req.model)
        sae = self.sae(req.model, req.sae)
        check_index("feature", req.feature, sae.cfg.d_sae)
        report = feature_report(
            model, sae, self.dashboard_tokens(req.model), req.feature, context=DASHBOARD_CONTEXT
        )
        return {
            "feature": req.feature,
            "contexts_from": f"the first {DASHBOARD_CHARS:,} characters of {DASHBOARD_TEXT}.txt",
            "fraction_active": report.fraction_active,
            "max_activation": report.max_activation,
            "html": feature_html(report),
        }

    def dashboard_tokens(self, name: str) -> np.ndarray:
        """The ids of the dashboards' text for model ``name``, tokenized once."""
        if name not in self._dashboard_tokens:
            text = bundled_text(DASHBOARD_TEXT).read_text(encoding="utf-8")[:DASHBOARD_CHARS]
            ids = prompt_ids(self.models[name], text)
            self._dashboard_tokens[name] = np.array(ids, dtype=np.int64)
        return self._dashboard_tokens[name]


def sae_owners(models: dict[str, GPT2], name: str, sae: SAE) -> list[str]:
    """The served models whose step ``sae`` reads (as wide as its d_in); refused if none."""
    owners, problems = [], []
    for model_name, model in models.items():
        try:
            check_model(model, sae)
        except GPT2LabError as error:
            problems.append(f"{model_name}: {error}")
        else:
            owners.append(model_name)
    if not owners:
        raise UsageError(
            f"SAE {name!r} belongs to none of the served models ({'; '.join(problems)})"
        )
    return owners


def sae_json(name: str, sae: SAE) -> dict:
    cfg = sae.cfg
    return {
        "name": name,
        "hook_name": cfg.hook_name,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "activation": cfg.activation,
        "k": cfg.k,
    }
