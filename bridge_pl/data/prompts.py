"""The prompt formats (paper_spec §C): the system prompt, the chat templates, and the RL / SFT texts.

Pure Python: the functions take any tokenizer with a chat template (duck-typed), and nothing here imports
transformers. ChatML (Qwen2.5's template) is the project tokenizer's template; `LLAMA_MINIMAL_TEMPLATE` is the
official code's replacement for Llama models. The RL and evaluation prompt ends with the literal "<think>".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "CHAT_TEMPLATE",
    "CHAT_TEMPLATES",
    "LLAMA_MINIMAL_TEMPLATE",
    "SYSTEM_PROMPT",
    "ChatTemplate",
    "format_conversation",
    "format_prompt",
]

ChatTemplate = Literal["model", "llama-minimal"]

# paper_spec §C.1, verbatim: the same for SFT and RL.
SYSTEM_PROMPT = (
    "A conversation that the assistant solves the user's problem. The assistant first thinks about the reasoning "
    "process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed "
    "within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> all the reasoning process here "
    "</think> <answer> final answer here </answer>."
)

# ChatML as in Qwen2.5; the paper's system prompt is the default when the messages bring none. The generation
# prompt opens the answer with "<think>" (paper_spec §C.2), so chat APIs (vLLM's, TRL's) prompt as training did.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n' + " + json.dumps(SYSTEM_PROMPT) + " + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>' }}{%- endif %}"
)

# paper_spec §C.2 / G.1: for Llama models the official code replaces the chat template by a minimal one (no date
# or tools header). It starts with the BOS token here, so SFT conversations and RL prompts (both tokenized
# without special tokens) begin alike: the official pipeline's likely BOS mismatch (§G.1 item 6) is avoided.
LLAMA_MINIMAL_TEMPLATE = (
    "{{- bos_token if bos_token else '' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n<think>' }}{%- endif %}"
)
CHAT_TEMPLATES = {"model": None, "llama-minimal": LLAMA_MINIMAL_TEMPLATE}  # None: the model directory's own


def format_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The RL and evaluation prompt (paper_spec §C.2): [system, user] with a generation prompt ending in "<think>".

    The project's templates end their generation prompt with it; for other templates it is appended.

    Args:
        tokenizer: Any tokenizer with a chat template (the project's, or a local Hugging Face model's).
        question: The problem text.

    Returns:
        For ChatML: "<|im_start|>system\\n{SYS}<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n"
        "<|im_start|>assistant\\n<think>".
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt if prompt.endswith("<think>") else prompt + "<think>"  # the project's templates already end so


def format_conversation(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> str:
    """The full SFT text (paper_spec §C.2): [system, user, assistant] through the chat template.

    Args:
        tokenizer: Any tokenizer with a chat template.
        question: The problem text.
        answer: The answer, starting with "<think>", so that `format_prompt` is a prefix of the result.

    Returns:
        The conversation, ending with "<|im_end|>\\n" for the project's template.
    """
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
