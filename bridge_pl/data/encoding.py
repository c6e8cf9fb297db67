"""Text to token ids: the chat tokenizer of a model directory, SFT conversations and RL prompts, padding.

Imports transformers but neither torch's training stack nor Lightning, so evaluation and the analysis load only
this: ``bridge eval`` and the probes encode prompts with `encode_prompts`, the DataModules build on all of it.
Labels follow the Hugging Face convention the `SFTModule` expects: aligned with ``input_ids`` (not shifted; the
module shifts them) and `IGNORE_INDEX` (-100) wherever a token carries no loss.
"""

from __future__ import annotations

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
    "LossOn",
    "Truncation",
    "encode_conversations",
    "encode_prompts",
    "fit_to_length",
    "load_chat_tokenizer",
    "load_tokenizer",
    "require_model_dir",
    "pad_left",
    "pad_right",
]

IGNORE_INDEX = -100  # label of a token without loss (torch cross_entropy's default ignore_index)
MISSING_MODEL_HINT = "run `bridge model init --out DIR` or pass a local Hugging Face model directory"
LossOn = Literal["all", "answer"]
Truncation = Literal["error", "drop", "truncate"]


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
        FileNotFoundError: `path` is not a directory with a config.json.
    """
    return AutoTokenizer.from_pretrained(
        require_model_dir(path), local_files_only=True, trust_remote_code=trust_remote_code
    )


def require_model_dir(path: str | os.PathLike) -> Path:
    """`path` as a directory holding config.json, or an error naming it and the way to make one."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {str(directory)!r} does not exist: {MISSING_MODEL_HINT}")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"model directory {str(directory)!r} holds no config.json: {MISSING_MODEL_HINT}")
    return directory


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
