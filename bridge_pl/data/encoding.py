"""Text to token ids: the chat tokenizer of a model directory, SFT conversations and RL prompts, padding.

Imports transformers but neither torch's training stack nor Lightning, so evaluation and the analysis load only
this: ``bridge eval`` and the probes encode prompts with `encode_prompts`, the DataModules build on all of it.
Labels follow the Hugging Face convention the `SFTModule` expects: aligned with ``input_ids`` (not shifted; the
module shifts them) and `IGNORE_INDEX` (-100) wherever a token carries no loss.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning_utilities.core.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from bridge_pl.data.prompts import CHAT_TEMPLATES, ChatTemplate, format_conversation, format_prompt

__all__ = [
    "IGNORE_INDEX",
    "MISSING_MODEL_HINT",
    "TOKENIZER_FILES",
    "WEIGHT_FILES",
    "LossOn",
    "ModelDirError",
    "Truncation",
    "check_length_fits_model",
    "check_model_dir",
    "encode_conversations",
    "encode_prompts",
    "fit_to_length",
    "load_chat_tokenizer",
    "load_tokenizer",
    "max_position_embeddings",
    "require_model_dir",
    "pad_left",
    "pad_right",
]

IGNORE_INDEX = -100  # label of a token without loss (torch cross_entropy's default ignore_index)
MISSING_MODEL_HINT = "run `bridge model init --out DIR` or pass a local Hugging Face model directory"
LossOn = Literal["all", "answer"]
Truncation = Literal["error", "drop", "truncate"]
# What transformers' from_pretrained reads (sharded checkpoints through their index), in its order of preference.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# A fast tokenizer's file, a sentencepiece model, or the vocabularies slow tokenizers convert from (*.tiktoken too).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
REMOTE_CODE_HINT = (
    "set `model.init_args.trust_remote_code: true` in the YAML (bridge fit) or pass --trust-remote-code "
    "(bridge eval), if you trust that code"
)


class ModelDirError(FileNotFoundError, ValueError):
    """A model directory that cannot be loaded (missing, incomplete, or needing remote code); the message says the fix.

    A FileNotFoundError for the callers that catch a missing directory, a ValueError for the command lines,
    which report ValueErrors as one line of bad input.
    """


def _rank_zero(log: Callable[[str], Any], message: str) -> None:
    """Log `message` on global rank 0 only: Lightning's rank once a run has imported it, else the launcher's RANK."""
    if getattr(rank_zero_only, "rank", None) is not None:
        log(message)
    elif int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:
        return
    elif log is rank_zero_warn:
        warnings.warn(message, stacklevel=3)  # points at the caller of the function that warns
    else:
        print(message, file=sys.stderr)  # no Lightning logger configured: a plain notice


# ------------------------------------------------------------------------------------------------ tokenizers
def load_tokenizer(path: str | os.PathLike, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved in a local model directory (no download).

    Args:
        path: Directory with the tokenizer files (tokenizer.json, tokenizer_config.json, chat template).
        trust_remote_code: Allow tokenizer code shipped inside the directory.

    Raises:
        ModelDirError: `path` is not a directory with a config.json and tokenizer files (see `check_model_dir`).
    """
    directory = check_model_dir(path, weights=False, trust_remote_code=trust_remote_code)
    return AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)


def require_model_dir(path: str | os.PathLike) -> Path:
    """`path` as a directory holding config.json, or an error naming it and the way to make one."""
    return check_model_dir(path, weights=False, tokenizer=False)


def check_model_dir(
    path: str | os.PathLike, *, weights: bool = True, tokenizer: bool = True, trust_remote_code: bool = False
) -> Path:
    """`path` as a loadable local model directory, checked from its file names and config.json only (fast).

    Args:
        path: The model directory.
        weights: Require weights (`WEIGHT_FILES`).
        tokenizer: Require tokenizer files (`TOKENIZER_FILES` or a ``*.tiktoken`` file).
        trust_remote_code: Whether modelling code shipped in the directory may run.

    Returns:
        The directory as a Path.

    Raises:
        ModelDirError: One line naming every problem and its fix: no such directory, no (valid) config.json, no
            weights, no tokenizer, or a model type only the directory's own code knows without trust_remote_code.
    """
    directory = Path(path).expanduser()
    where = f"model directory {str(directory)!r}"
    if not directory.is_dir():
        raise ModelDirError(f"{where} does not exist: {MISSING_MODEL_HINT}")
    if not (directory / "config.json").is_file():
        raise ModelDirError(f"{where} holds no config.json: {MISSING_MODEL_HINT}")
    config = _read_config(directory)
    issues = []
    if weights and not any((directory / name).is_file() for name in WEIGHT_FILES):
        issues.append(_no_weights(directory))
    if tokenizer and not _has_tokenizer_files(directory):
        issues.append(
            "holds no tokenizer (tokenizer.json, tokenizer.model or vocab files): copy the tokenizer of the model "
            "it came from into it (`tokenizer.save_pretrained(DIR)`), or write a new model with the project "
            "tokenizer with `bridge model init --out DIR`"
        )
    if not trust_remote_code and _needs_remote_code(config):
        issues.append(
            f"ships its own modelling code (config.json auto_map; model_type {config.get('model_type')!r} is "
            f"unknown to transformers), which runs only with trust_remote_code: {REMOTE_CODE_HINT}"
        )
    if trust_remote_code and (missing := _missing_code_files(directory, config)):
        issues.append(
            f"lacks the modelling code its config.json auto_map names ({', '.join(missing)}): copy those files from "
            "the model it came from into it (nothing is downloaded)"
        )
    if issues:
        raise ModelDirError(f"{where} " + "; it ".join(issues))
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    """The parsed config.json of a model directory, or a ModelDirError saying where it is broken."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelDirError(
            f"{directory / 'config.json'} cannot be read as JSON ({err}); restore it from the model it came from"
        ) from err
    if not isinstance(config, dict):
        raise ModelDirError(f"{directory / 'config.json'} is not a JSON object; restore it from the model it came from")
    return config


def _no_weights(directory: Path) -> str:
    """The fix for a directory without weights: a LoRA adapter directory gets its own advice."""
    what = f"holds no weights ({', '.join(WEIGHT_FILES)})"
    if (directory / "adapter_config.json").is_file():
        return f"{what}, only a LoRA adapter: merge it into its base model (peft merge_and_unload) and save_pretrained"
    return (
        f"{what}: point to the directory that save_pretrained wrote (e.g. runs/<run>/hf_model), copy the weights "
        "into it, or write a new model with `bridge model init --out DIR`"
    )


def _has_tokenizer_files(directory: Path) -> bool:
    """Whether a directory holds something a tokenizer can be built from (permissive: transformers decides)."""
    return any(p.name in TOKENIZER_FILES or p.suffix == ".tiktoken" for p in directory.iterdir())


def _needs_remote_code(config: dict[str, Any]) -> bool:
    """Whether config.json maps to modelling code of its own for a model type this transformers does not know.

    A known model type with an auto_map (many hub models ship both) loads with transformers' own classes.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return bool(config.get("auto_map")) and config.get("model_type") not in CONFIG_MAPPING


def _missing_code_files(directory: Path, config: dict[str, Any]) -> list[str]:
    """The code files config.json's auto_map refers to that the directory lacks ("repo--module" ones live elsewhere)."""
    references = []
    for value in (config.get("auto_map") or {}).values():
        references += value if isinstance(value, list) else [value]
    modules = {ref.rpartition(".")[0] for ref in references if isinstance(ref, str) and "." in ref}
    files = sorted(module.replace(".", "/") + ".py" for module in modules)
    return [name for name in files if "--" in name or not (directory / name).is_file()]


def max_position_embeddings(path: str | os.PathLike) -> int | None:
    """The longest sequence a model directory's config.json allows (max_position_embeddings), None if it says none."""
    try:
        config = json.loads((Path(path).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the tokenizer or model loader reports a missing or broken config.json
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_length_fits_model(path: str | os.PathLike, key: str, length: int, fix: str = "") -> None:
    """Refuse a configured token length (`key`) longer than the model directory's max_position_embeddings.

    Args:
        path: The model directory (config.json is read as plain JSON).
        key: The YAML key of the length, e.g. "data.max_length".
        length: Its value.
        fix: Extra advice appended to the message.

    Raises:
        ValueError: Naming the key, both numbers, the config file and the fix.
    """
    limit = max_position_embeddings(path)
    if limit is not None and length > limit:
        raise ValueError(
            f"{key}={length} exceeds the model's max_position_embeddings={limit} "
            f"({Path(path) / 'config.json'}): set {key} to at most {limit}{fix}"
        )


def load_chat_tokenizer(
    path: str, key: str = "data.tokenizer_path", chat_template: ChatTemplate = "model", trust_remote_code: bool = False
) -> tuple[PreTrainedTokenizerBase, int]:
    """The tokenizer of a local model directory and the id to pad with (eos when it has no pad token).

    Args:
        path: Model directory holding the tokenizer files and a chat template.
        key: The YAML key that named `path`, for error messages.
        chat_template: "model": the directory's own template; "llama-minimal": the paper's minimal Llama template
            (paper_spec §C.2), which replaces it.
        trust_remote_code: Allow tokenizer code shipped inside the directory.

    Raises:
        ValueError: No such directory, no chat template, or neither a pad nor an eos token.
    """
    try:
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # FileNotFoundError included
        raise ValueError(f"{key}: {err}") from err
    if CHAT_TEMPLATES[chat_template] is not None:
        tokenizer.chat_template = CHAT_TEMPLATES[chat_template]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{key}={path!r}: the tokenizer has no chat template, which renders the prompts (paper_spec §C.2); "
            "use a model directory whose tokenizer_config.json has a chat_template (e.g. an Instruct model's)"
        )
    if tokenizer.pad_token_id is not None:
        return tokenizer, tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{key}={path!r}: the tokenizer has neither a pad nor an eos token to pad with")
    _rank_zero(
        rank_zero_info,
        f"{key}={path!r}: the tokenizer has no pad token; padding with its eos token {tokenizer.eos_token!r} "
        f"(id {tokenizer.eos_token_id}). Padded positions get attention 0 and no loss, so real eos tokens still train.",
    )
    return tokenizer, tokenizer.eos_token_id


# ------------------------------------------------------------------------------------------------ encoding
def encode_prompts(tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt examples of rows: rendered text, token ids (no special tokens added), ground truth, op count, index."""
    texts = [format_prompt(tokenizer, row["query"]) for row in rows]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [
        {
            "input_ids": list(token_ids),
            "prompt": text,
            "ground_truth": str(row["final_answer"]),
            "num_ops": row["num_ops"] if isinstance(row.get("num_ops"), int) else -1,
            "index": number,
        }
        for number, (row, text, token_ids) in enumerate(zip(rows, texts, ids, strict=True))
    ]


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], loss_on: LossOn = "all"
) -> list[dict[str, list[int]]]:
    """Token ids and labels of (question, answer) conversations rendered by the chat template.

    Tokenized with ``add_special_tokens=False``: the chat template decides about a BOS token, so the RL
    prompt (`format_prompt`) is a prefix of the SFT conversation token for token.

    Args:
        tokenizer: A tokenizer with a chat template.
        pairs: (question, answer) texts; answers start with "<think>".
        loss_on: "all": every token but the first carries a label (the paper: system prompt and question
            included; the first token is never predicted, so its label is -100 and counts stay exact).
            "answer": only the assistant's answer, from its first token ("<think>") to the end.

    Returns:
        One ``{"input_ids", "labels"}`` dict per conversation.
    """
    if not pairs:
        return []  # the tokenizer refuses an empty batch
    texts = [format_conversation(tokenizer, question, answer) for question, answer in pairs]
    offsets = loss_on == "answer" and tokenizer.is_fast
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)
    examples = []
    for number, ((question, answer), text) in enumerate(zip(pairs, texts, strict=True)):
        ids = list(encoded["input_ids"][number])
        labels = [IGNORE_INDEX, *ids[1:]]
        if loss_on == "answer":
            start = _answer_token(tokenizer, text, question, answer, encoded, number, offsets)
            labels[:start] = [IGNORE_INDEX] * start
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _answer_token(tokenizer, text: str, question: str, answer: str, encoded, number: int, offsets: bool) -> int:
    """Index of the first token of the answer inside the tokenized conversation `text`."""
    prefix = format_prompt(tokenizer, question).removesuffix("<think>")  # [system, user] + generation prompt
    boundary = len(prefix) if text.startswith(prefix) else text.rfind(answer)
    if boundary < 0:
        raise ValueError("the chat template does not keep the answer text verbatim; use loss_on: all")
    if offsets:  # the first token that ends after the boundary (robust to merges across it)
        spans = encoded["offset_mapping"][number]
        return next((i for i, (_, end) in enumerate(spans) if end > boundary), len(spans))
    return len(tokenizer(text[:boundary], add_special_tokens=False)["input_ids"])


def fit_to_length(
    examples: list[dict[str, list[int]]], max_length: int, mode: Truncation, key: str
) -> tuple[list[dict[str, list[int]]], dict[str, Any]]:
    """Apply the over-length policy: raise, drop or cut examples longer than `max_length` (never silently).

    Args:
        examples: ``{"input_ids", "labels"}`` dicts.
        max_length: Longest allowed example.
        mode: "error" raises; "drop" skips them; "truncate" keeps their first `max_length` tokens. Both
            of the latter warn with the count.
        key: YAML key of the data they came from (error and warning text).

    Returns:
        The kept examples and a report: mode, max_length, examples, over_length, longest, dropped, truncated.

    Raises:
        ValueError: With mode "error", stating how many are too long, the longest length and the fix.
    """
    lengths = [len(e["input_ids"]) for e in examples]
    over = [i for i, n in enumerate(lengths) if n > max_length]
    report = {
        "mode": mode,
        "max_length": max_length,
        "examples": len(examples),
        "over_length": len(over),
        "longest": max(lengths, default=0),
        "dropped": 0,
        "truncated": 0,
    }
    if not over:
        return examples, report
    what = f"{len(over)} of {len(examples)} examples are longer than data.max_length={max_length} tokens"
    if mode == "error":
        raise ValueError(
            f"{key}: {what} (longest: {report['longest']}). Raise data.max_length to at least {report['longest']}, "
            "or set data.truncation to drop (skip them) or truncate (cut them at max_length)"
        )
    if mode == "drop":
        skip = set(over)
        examples = [e for i, e in enumerate(examples) if i not in skip]
        report["dropped"] = len(over)
        done = f"dropped {len(over)}"
    else:
        examples = [_truncated(e, max_length) for e in examples]
        report["truncated"] = len(over)
        done = f"cut {len(over)} to their first {max_length} tokens (their endings are not trained)"
    _rank_zero(rank_zero_warn, f"{key}: {what} (longest: {report['longest']}); data.truncation={mode}: {done}")
    return examples, report


def _truncated(example: dict[str, list[int]], max_length: int) -> dict[str, list[int]]:
    return {key: value[:max_length] for key, value in example.items()}


# ------------------------------------------------------------------------------------------------ padding
def pad_right(sequences: Sequence[Sequence[int]], value: int, length: int | None = None) -> torch.Tensor:
    """Stack sequences into a (B, T) long tensor, filling the end of the shorter ones with `value`.

    Args:
        sequences: B lists of ints.
        value: The fill value (a pad id, 0 for a mask, -100 for labels).
        length: T; default the longest sequence. Must be at least that.

    >>> pad_right([[1, 2, 3], [4]], 0).tolist()
    [[1, 2, 3], [4, 0, 0]]
    """
    width = _width(sequences, length)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences], dtype=torch.long)  # (B, T)


def pad_left(sequences: Sequence[Sequence[int]], value: int, length: int | None = None) -> torch.Tensor:
    """Stack sequences into a (B, T) long tensor, filling the start of the shorter ones with `value`.

    Left padding keeps every prompt's last token in the last column, where generation continues.

    >>> pad_left([[1, 2, 3], [4]], 0).tolist()
    [[1, 2, 3], [0, 0, 4]]
    """
    width = _width(sequences, length)
    return torch.tensor([[value] * (width - len(s)) + list(s) for s in sequences], dtype=torch.long)  # (B, T)


def _width(sequences: Sequence[Sequence[int]], length: int | None) -> int:
    longest = max((len(s) for s in sequences), default=0)
    if length is not None and length < longest:
        raise ValueError(f"cannot pad to length {length}: the longest sequence has {longest} tokens")
    return longest if length is None else length
