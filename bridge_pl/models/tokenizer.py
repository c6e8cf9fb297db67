"""The project's own tokenizer: byte-level BPE trained on generated iGSM text, with ChatML prompts.

`build_tokenizer()` is the embedded default that every from-scratch model uses (no hub, no download):

* **lossless**: a byte-level BPE, so any text (any unicode) encodes and decodes back to itself;
* **one token per name**: every item and category name of the vocabulary, with its leading space
  (" Riverside Library"), is an added token, so a parameter name costs two or three tokens;
* **one token per digit**: numbers are split into single digits (the first one keeps the space before it,
  " 1", "2", "3"), and variables and operators are tokens of their own, so the arithmetic stays learnable;
* **short answers**: the BPE merges are trained on questions and answers of every style (plain CoT,
  BRIDGE, no-CoT) generated in-process from a fixed seed, and may span words, so the fixed phrases of the
  wording ("The number of each", "This gives") cost one token: about 570 tokens per SFT conversation
  (question + BRIDGE answer, op 15-20) against about 810 with word-level merges;
* **deterministic**: the same arguments give the same tokenizer JSON in any process.

The tokenizer carries the ChatML template of `bridge_pl.data.prompts` (where the prompt formats live). Its
training text is handed to it (`corpus`); by default `bridge_pl.data.corpus.training_corpus`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from bridge_pl.data.corpus import training_corpus
from bridge_pl.data.prompts import CHAT_TEMPLATE
from bridge_pl.task.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "ANSWER_TAGS",
    "EOS_TOKEN",
    "IM_START",
    "PAD_TOKEN",
    "build_tokenizer",
    "name_tokens",
    "train_backend",
]

VocabularyPath = str | os.PathLike[str] | None

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, EOS_TOKEN)
# Added but not special: they are part of the answer, so decoding with skip_special_tokens=True keeps them.
ANSWER_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
MODEL_MAX_LENGTH = 2048

# How text is cut before BPE: merges never cross these pieces. Unlike GPT-2's split, a piece may hold several
# words ("The number of each", "This gives"), so the fixed phrases of the answer wording become one token each;
# but a one-letter word stays alone (" W"), so a variable never fuses with the words around it; digits are
# one per piece (the first keeps the space before it: " 1", "2", "3"), so BPE cannot merge them into numbers;
# newlines stick to the punctuation before them (".\n").
PRETOKENIZE_PATTERN = r"(?: ?\p{L}[\p{L}']+)+| ?[\p{L}']+| ?\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def build_tokenizer(
    vocabulary: VocabularyPath = None,
    *,
    corpus: Iterable[str] | None = None,
    corpus_size: int = 500,
    vocab_size: int = 2048,
    seed: int = 0,
) -> PreTrainedTokenizerFast:
    """Build the project tokenizer (BPE trained on generated iGSM text) as a transformers tokenizer.

    Training takes a few seconds; the result for the packaged vocabulary is cached per process, and each call
    returns a fresh tokenizer object.

    Args:
        vocabulary: Vocabulary JSON file whose names become single tokens and whose problems make the corpus
            (as `GeneratorConfig.vocabulary`); None uses the packaged vocabulary.
        corpus: The BPE training text; None: `training_corpus(vocabulary, corpus_size, seed)`.
        corpus_size: Number of generated problems (each with a question and three answers) to train on. Merges
            stop once every piece of the corpus is one token; 500 problems already give the same tokens as 2000.
        vocab_size: Largest size of the whole tokenizer (bytes, merges, special tokens, answer tags, names). The
            packaged vocabulary needs 1564 (788 names, 513 merges); a smaller size drops the rarest phrases.
        seed: Problem stream of the training corpus.

    Returns:
        A fast tokenizer with eos `<|im_end|>`, pad `<|endoftext|>`, no bos, and the ChatML chat template.
    """
    if vocabulary is None and corpus is None:
        backend = Tokenizer.from_str(_default_backend_json(corpus_size, vocab_size, seed))
    else:
        backend = train_backend(vocabulary, corpus=corpus, corpus_size=corpus_size, vocab_size=vocab_size, seed=seed)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,  # else decode() rewrites " ." and " 's": not lossless
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
    )


@functools.cache
def _default_backend_json(corpus_size: int, vocab_size: int, seed: int) -> str:
    return train_backend(None, corpus_size=corpus_size, vocab_size=vocab_size, seed=seed).to_str()


def train_backend(
    vocabulary: VocabularyPath = None,
    *,
    corpus: Iterable[str] | None = None,
    corpus_size: int = 500,
    vocab_size: int = 2048,
    seed: int = 0,
) -> Tokenizer:
    """Train the `tokenizers` backend of `build_tokenizer` (uncached; same arguments, same JSON).

    Args:
        vocabulary: As in `build_tokenizer`.
        corpus: As in `build_tokenizer`.
        corpus_size: As in `build_tokenizer`.
        vocab_size: As in `build_tokenizer`.
        seed: As in `build_tokenizer`.

    Returns:
        The trained tokenizer with the special tokens, the answer tags and the name tokens added.

    Raises:
        ValueError: `vocab_size` leaves no room for merges beyond the bytes, the special tokens and the names.
    """
    names = name_tokens(load_vocabulary(vocabulary))
    bpe_size = vocab_size - len(names) - len(ANSWER_TAGS)
    min_size = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS) + 1
    if bpe_size < min_size:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the vocabulary has {len(names)} names and byte-level BPE "
            f"needs {min_size} base tokens; use vocab_size >= {min_size + len(names) + len(ANSWER_TAGS)}"
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    added = [*ANSWER_TAGS, *names]
    texts = training_corpus(vocabulary, corpus_size, seed) if corpus is None else corpus
    backend.train_from_iterator(_without(texts, added), trainer)
    backend.add_tokens([AddedToken(token, normalized=False, special=False) for token in added])
    return backend


def name_tokens(vocabulary: Vocabulary) -> list[str]:
    """Every item and category name with its leading space, once each, in vocabulary order."""
    names = [*vocabulary.item_names(), *vocabulary.category_names()]
    return list(dict.fromkeys(" " + name for name in names))


def _without(texts: Iterable[str], tokens: list[str]) -> Iterator[str]:
    """Cut the added tokens out of the training text: BPE should not spend merges on what is one token anyway."""
    pattern = re.compile(_trie_pattern(tokens))
    for text in texts:
        yield from (piece for piece in pattern.split(text) if piece)


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, longest first, that branches one character at a time.

    A flat alternation of a thousand names tries each one at every position (seconds on the corpus); the trie
    tries one branch per character.
    """
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # end of a word

    def pattern(node: dict) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(trie)
