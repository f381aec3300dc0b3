"""One exception type per kind of failure; the CLI turns each into one line and an exit code."""


class GPT2LabError(Exception):
    """Base class: every error gpt2lab raises on purpose. The message says what to do."""

    exit_code = 1


class UsageError(GPT2LabError, ValueError):
    """Bad argument values (sampling settings, lengths, indices)."""

    exit_code = 2


class TokenizerError(GPT2LabError, ValueError):
    """Text or ids the tokenizer cannot handle, or tokenizer files that are missing or broken."""


class ModelNotFoundError(GPT2LabError, FileNotFoundError):
    """A model name or path that leads nowhere (not a folder, not in the cache, no network)."""


class CheckpointError(GPT2LabError, ValueError):
    """Weight files that are truncated, corrupted, of the wrong shape or of an unknown format."""


class ContextLengthError(UsageError):
    """A prompt (plus the tokens to generate) longer than the model's context window."""


class OutputError(GPT2LabError, OSError):
    """A file gpt2lab could not write: a full disk, no permission, a file where a folder goes.

    Checkpoints, token files, tokenizers and eval results are written under a temporary name and
    renamed only when complete, so what was there before (the previous checkpoint, an earlier
    report) is still there, unchanged, and no partial file is left behind.
    """


class ServeError(GPT2LabError):
    """The web app cannot listen where asked: the port is taken, or the address is not here."""


def check_index(what: str, value: object, size: float) -> None:
    """Raise UsageError unless ``value`` is an integer in [0, size): a layer, head, neuron..."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise UsageError(f"{what} must be an integer in [0, {size}), got {value!r}")
