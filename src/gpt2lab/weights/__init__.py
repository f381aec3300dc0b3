"""Model files -> a ready GPT2: Hugging Face folders and Hub ids, OpenAI's TensorFlow checkpoints.

``load`` finds out what a name or path is, reads its config and tensors with the reader for that
format, checks every tensor's name and shape, and builds the model without a random init.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from pathlib import Path

import torch

from ..config import GPT2Config
from ..errors import CheckpointError, ModelNotFoundError, TokenizerError
from ..model import GPT2
from ..tokenizer import (
    ENDOFTEXT,
    FILE_PAIRS,
    SUPPORTED,
    TOKENIZER_JSON,
    Tokenizer,
    get_tokenizer,
)
from .families import TIED_OUTPUT, NameTable, from_hf, table_for, to_hf, with_base
from .hf import (
    GPT2_HUB_IDS,
    download,
    in_hub_cache,
    is_hf_folder,
    is_hub_id,
    load_hf_folder,
    save_hf_folder,
)
from .openai_tf import is_tf_checkpoint, load_tf_checkpoint

BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "models"  # gpt2lab.load("tiny")
SENTENCEPIECE = "tokenizer.model"  # Llama 2's, Mistral's... tokenizer (gpt2lab cannot read it)
RUN_POINTER = "latest"  # a training run folder names its newest checkpoint in this file

# Buffers some GPT-2 files carry that are not weights (the causal mask).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# GPT-2's (and our) names of the token and position embeddings, and the prefix of block tensors
_GPT2_NAMES = ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.")


def _check_sizes(
    state: dict[str, torch.Tensor], config: GPT2Config, names: tuple[str, str, str] = _GPT2_NAMES
) -> None:
    """Check the config's sizes against the file's embeddings and block count before building
    even a meta model from it. A config.json could otherwise say ``n_layer: 1000000000`` (all
    memory goes to Python objects) or ``n_embd: 2**62`` (torch's size arithmetic overflows).
    Once these agree with real tensors, every size is bounded by the file's.

    ``names``: the file's names of the token and position embeddings and its block prefix.
    """
    wte, wpe, block_prefix = names
    for name, shape in (
        (wte, [config.vocab_size, config.n_embd]),
        (wpe, [config.n_positions, config.n_embd]),
    ):
        if name in state and list(state[name].shape) != shape:
            raise CheckpointError(
                f"tensor {name} has shape {list(state[name].shape)}, the config needs {shape}"
            )
    # Fewer blocks than the file holds is cheap to build; the full check reports it.
    depth = block_prefix.count(".")
    blocks = {
        n.split(".")[depth] for n in state if n.startswith(block_prefix) and n.count(".") > depth
    }
    if config.n_layer > len(blocks):
        raise CheckpointError(
            f"the weights do not fit a {_family(config)} with this config: missing blocks "
            f"{len(blocks)} to {config.n_layer - 1} (the config says n_layer={config.n_layer}, the "
            f"weights hold {len(blocks)} blocks)"
        )


def _family(config: GPT2Config) -> str:
    """The model's kind in messages: GPT-2, or the Hugging Face model type it is saved as."""
    return "GPT-2" if config.hf_model_type == "gpt2" else f"{config.hf_model_type} model"


def _meta_parameters(config: GPT2Config) -> dict[str, torch.Tensor]:
    """The parameters of a model of this config, on the meta device: shapes only, no memory."""
    try:
        with torch.device("meta"):  # shapes only: no memory, no random init
            return dict(GPT2(config).named_parameters())
    except (RuntimeError, ValueError, OverflowError) as e:  # sizes torch cannot even represent
        raise CheckpointError(f"the config describes a model that cannot be built: {e}") from None


def _check_tensors(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], config: GPT2Config
) -> None:
    """Every expected tensor present with its shape and a float dtype, and nothing else."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"the weights do not fit a {_family(config)} with this config: {'; '.join(parts)}"
        )
    for name, want in expected.items():
        if state[name].shape != want.shape:
            raise CheckpointError(
                f"tensor {name} has shape {list(state[name].shape)}, the config needs "
                f"{list(want.shape)}"
            )
        if not state[name].is_floating_point():
            raise CheckpointError(f"tensor {name} has dtype {state[name].dtype}, expected floats")


def _check_tied(output: torch.Tensor, embedding: torch.Tensor) -> None:
    """A tied model's file may still carry its output layer: it must be the embedding."""
    if not torch.equal(output, embedding):
        raise CheckpointError(
            f"{TIED_OUTPUT} differs from the token embedding, but the config ties them "
            "(tie_word_embeddings), as GPT-2 always does"
        )


def _from_family(
    state: dict[str, torch.Tensor], config: GPT2Config, table: NameTable
) -> dict[str, torch.Tensor]:
    """A Llama, Qwen2 or GPT-1 file's tensors, checked in the file's own names (so an error
    names the tensor as the file does), then renamed and laid out as ours."""
    state = with_base(state, table)
    hf = {v: k for k, v in table.top.items()}
    wte = hf["transformer.wte.weight"]
    if config.tie_word_embeddings and TIED_OUTPUT in state and wte in state:
        _check_tied(state.pop(TIED_OUTPUT), state[wte])
    _check_sizes(state, config, (wte, hf.get("transformer.wpe.weight", ""), table.block_prefix))
    _check_tensors(state, to_hf(_meta_parameters(config), config), config)
    return from_hf(state, config)


def normalize_state_dict(
    state: dict[str, torch.Tensor], config: GPT2Config
) -> dict[str, torch.Tensor]:
    """Bring a state dict to gpt2lab's names (= HF GPT2LMHeadModel's) and check it.

    GPT-2 files: keys with or without the ``transformer.`` prefix; mask buffers dropped; a tied
    output layer must equal the token embedding. Llama, Qwen2 and GPT-1 files (their config.json
    says which) are renamed with their table in ``families``; files already in our names load
    as they are (gpt2lab's own int8 files).
    """
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"the weights are not a mapping of name -> tensor ({name!r})")
    table = table_for(config)
    if table is not None and _GPT2_NAMES[0] not in state:
        state = _from_family(state, config, table)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(_IGNORED_SUFFIXES) or (name == TIED_OUTPUT and config.tie_word_embeddings):
            continue
        prefixed = name.startswith("transformer.") or name == TIED_OUTPUT
        out[name if prefixed else f"transformer.{name}"] = tensor
    _check_sizes(out, config)
    _check_tensors(out, _meta_parameters(config), config)
    if config.tie_word_embeddings and TIED_OUTPUT in state:
        _check_tied(state[TIED_OUTPUT], out["transformer.wte.weight"])
    for name, tensor in out.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"tensor {name} contains NaN or infinite values")
    return out


def build_model(
    config: GPT2Config,
    state: dict[str, torch.Tensor],
    tokenizer: Tokenizer | None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> GPT2:
    """A GPT2 holding exactly these tensors (no random init, no extra copy)."""
    state = normalize_state_dict(state, config)
    with torch.device("meta"):
        model = GPT2(config, tokenizer)
    dtype = dtype or torch.float32
    state = {k: v.to(device=device or "cpu", dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def _tokenizer_for(folder: Path, config: GPT2Config) -> Tokenizer | None:
    """The folder's tokenizer (tokenizer.json, vocab.json + merges.txt or encoder.json +
    vocab.bpe), else GPT-2's bundled one for a GPT-2-sized vocabulary, else none.

    A tokenizer gpt2lab cannot read is an error naming what it reads (SentencePiece: Llama 2,
    Mistral...), except GPT-1's (lower-cased words ending in </w>, not byte-level): a GPT-1
    model loads without one (token ids only), with a warning saying so.
    """
    names = [TOKENIZER_JSON, *(vocab for vocab, _ in FILE_PAIRS)]
    if not any((folder / name).is_file() for name in names):
        if (folder / SENTENCEPIECE).is_file():
            raise TokenizerError(
                f"{folder / SENTENCEPIECE} is a SentencePiece tokenizer, which gpt2lab cannot "
                f"read; {SUPPORTED}, or vocab.json + merges.txt"
            )
        return get_tokenizer() if config.vocab_size == 50257 else None
    try:
        return Tokenizer.from_folder(folder)
    except TokenizerError as e:
        if config.hf_model_type != "openai-gpt":
            raise
        warnings.warn(
            f"{e}; the model is loaded without a tokenizer (model.tokenizer is None: give it "
            "token ids)",
            stacklevel=3,
        )
        return None


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder a training run's ``latest`` file points at, if there is one."""
    try:
        name = (run_dir / RUN_POINTER).read_text().strip()
    except OSError:
        return None
    return run_dir / "checkpoints" / name if name else None


def bundled_models() -> list[str]:
    """The names of the models shipped with gpt2lab (``tiny``)."""
    return sorted(p.parent.name for p in BUNDLED_MODELS.glob("*/config.json"))


def _looks_like_path(text: str) -> bool:
    """Whether a name that is no existing path was meant as one: it starts like a path, has more
    than one folder level, or has a slash yet cannot be a Hub id (``models/124M``)."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    first, slash, _ = text.partition("/")
    return bool(slash) and (Path(first).is_dir() or not is_hub_id(text))


def _unknown_name(text: str) -> ModelNotFoundError:
    """The error for a name that is no folder, no bundled model and no Hub id; it suggests the
    nearest bundled model or GPT-2 Hub id, ignoring case (``TINY``: did you mean tiny?)."""
    bundled = bundled_models()
    names = {n.lower(): n for n in [*sorted(n for n in GPT2_HUB_IDS if "/" not in n), *bundled]}
    match = difflib.get_close_matches(text.lower(), names, n=1)
    hint = (
        f"did you mean {names[match[0]]}?"
        if match
        else "pass a bundled model, a model folder or a Hub id such as gpt2 or owner/name"
    )
    return ModelNotFoundError(
        f"unknown model {text!r}: not a folder, not a bundled model ({', '.join(bundled)}) and "
        f"not a Hugging Face Hub id in the cache; {hint}"
    )


def _from_hub(text: str) -> Path:
    """``download(text)`` for a name that could as well be a missing folder (``runs/x``): its
    error says both, since offline nothing tells the two apart."""
    try:
        return download(text)
    except ModelNotFoundError as e:
        raise ModelNotFoundError(f"no such folder: {text}; as a Hub id: {e}") from None


def resolve(name_or_path: str | Path) -> Path:
    """The local folder for a model: a bundled model (``tiny``), an existing path (a training
    run folder stands for its latest checkpoint), or a Hub id fetched into the HF cache.

    Each way a name can fail has its own error: a missing path is "no such folder", a name that
    is nothing known suggests the nearest bundled model, and only a Hub id can fail on the
    network (``download``).
    """
    text = str(name_or_path)
    if text in bundled_models():
        return BUNDLED_MODELS / text
    path = Path(text).expanduser()
    if text and path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path} is a file; pass the model's folder")
        return run_checkpoint(path) or path
    if not text.strip():
        raise ModelNotFoundError("no model named: pass tiny, a model folder or a Hub id")
    if text in GPT2_HUB_IDS:
        return download(text)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        raise ModelNotFoundError(f"no such folder: {text}")
    if is_hub_id(text) or in_hub_cache(text):
        return _from_hub(text)
    raise _unknown_name(text)


def not_a_model_folder(folder: Path) -> ModelNotFoundError:
    """The error for a folder in neither format, naming the files each format needs (shared by
    ``load`` and ``verify``, so both say the same)."""
    return ModelNotFoundError(
        f"{folder} is not a model folder: expected config.json + model.safetensors "
        "(Hugging Face) or model.ckpt.index + hparams.json (OpenAI)"
    )


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    quantize: str | None = None,
) -> GPT2:
    """Load a model with its tokenizer (``model.tokenizer``), in eval mode.

    ``name_or_path``: a Hugging Face model folder (config.json + model.safetensors or
    pytorch_model.bin, sharded or not) of GPT-2, Llama, Qwen2 or GPT-1; an OpenAI TensorFlow
    checkpoint folder (model.ckpt.* + hparams.json); or a Hugging Face Hub id such as ``gpt2``
    or ``HuggingFaceTB/SmolLM2-135M`` (downloaded once into the Hugging Face cache).
    ``dtype``: of weights and activations (default float32). ``quantize="int8"``: round the
    weight matrices to int8 (see GPT2.quantize).
    """
    folder = resolve(name_or_path)
    if is_hf_folder(folder):
        config, state = load_hf_folder(folder)
    elif is_tf_checkpoint(folder):
        config, state = load_tf_checkpoint(folder)
    else:
        raise not_a_model_folder(folder)
    model = build_model(config, state, _tokenizer_for(folder, config), device=device, dtype=dtype)
    return model if quantize is None else model.quantize(quantize)


def save_pretrained(model: GPT2, path: str | Path) -> Path:
    """Write ``model`` as a Hugging Face folder with its tokenizer; ``gpt2lab.load`` and the
    ``transformers`` class of its family (``config.hf_model_type``) read it unchanged."""
    folder = Path(path)
    config = model.config
    end = model.tokenizer.special_tokens.get(ENDOFTEXT) if model.tokenizer is not None else None
    if config.eos_token_id is None and end is not None:
        # A model trained here with GPT-2's tokenizer: name its end token, so that the
        # transformers class (Llama's writes no default) stops generating there too.
        config = dataclasses.replace(config, eos_token_id=end)
    save_hf_folder(config, model.state_dict(), folder)
    if model.tokenizer is not None:
        model.tokenizer.save(folder)
    return folder
