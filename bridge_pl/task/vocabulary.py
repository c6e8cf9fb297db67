"""The concept vocabulary of iGSM-style problems: systems, categories, sub-categories and item names.

A vocabulary is a list of *systems* (e.g. a library system). Each system is a chain of *categories*, one per
structure layer, ordered from the **lowest layer (index 0)** to the highest: in the library system layer 0 is
"Book", then "Bookshelf", "Reading Room", "Library" and "Borough". An item of a higher layer *contains* items of
the layer below, so "each Riverside Library's Poetry Shelf" reads "the number of Poetry Shelf in each Riverside
Library". Each category groups its item names into *sub-categories* (e.g. "Public Library"); a problem draws its
items of one layer from a single sub-category. Sub-category names are organisational only and never printed.

Category and item names are printed inside question sentences such as "The number of each Harbor Bakery's
Croissant Tray equals 3 more than each Elm Street Market's Bakery." and "How many Pastry does each Harbor Bakery
have?", which are parsed back by splitting on "'s", ", ", " and ", "each " and the like. The loader therefore
rejects names that could break that grammar (apostrophes, commas, periods, the grammar's own words) and reports
every problem of a file at once.

The packaged vocabulary lives next to this module in ``vocabulary.json`` (format tag ``bridge-pl-vocabulary/1``).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

FORMAT = "bridge-pl-vocabulary/1"

MIN_CATEGORIES = 2  # a problem needs at least two layers
MIN_SUBCATEGORIES = 1
MIN_ITEMS = 2
MAX_WORDS = 4
MAX_NAME_LENGTH = 32

# Whole words (case-insensitive) of the question grammar that must never appear inside a printed name.
FORBIDDEN_WORDS = frozenset(
    w.casefold()
    for w in (
        "and", "each", "of", "the", "equals", "times", "more", "than",
        "sum", "difference", "number", "How", "many", "does", "have",
    )
)  # fmt: skip

_ALLOWED_CHARS = re.compile(r"[A-Za-z0-9 -]*")
_TITLE_WORD = re.compile(r"[A-Z0-9][A-Za-z0-9]*(?:-[A-Z0-9][A-Za-z0-9]*)*")
_SYSTEM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

_TOP_KEYS = ("format", "systems")
_SYSTEM_KEYS = ("name", "categories")
_CATEGORY_KEYS = ("name", "subcategories")


@dataclass(frozen=True)
class Category:
    """One layer's category, e.g. "Library", with its item names grouped into sub-categories.

    Attributes:
        name: Singular category name printed in questions ("How many Book does each ... have?").
        subcategories: (sub-category name, item names) pairs in file order.
    """

    name: str
    subcategories: tuple[tuple[str, tuple[str, ...]], ...]

    def items(self) -> tuple[str, ...]:
        """All item names of the category, in file order."""
        return tuple(item for _, names in self.subcategories for item in names)


@dataclass(frozen=True)
class System:
    """A chain of categories, one per layer.

    Attributes:
        name: Identifier of the system, e.g. "library_system".
        categories: The categories, index 0 = lowest layer (the smallest thing).
    """

    name: str
    categories: tuple[Category, ...]


@dataclass(frozen=True)
class Vocabulary:
    """A validated set of systems.

    Attributes:
        systems: The systems, in file order.
    """

    systems: tuple[System, ...]

    def item_names(self) -> tuple[str, ...]:
        """Every item name of every system, in file order."""
        return tuple(item for system in self.systems for category in system.categories for item in category.items())

    def category_names(self) -> tuple[str, ...]:
        """Every category name of every system, in file order."""
        return tuple(category.name for system in self.systems for category in system.categories)

    def max_layers(self) -> int:
        """The largest number of layers every system can supply: the fewest categories of any system."""
        return min(len(system.categories) for system in self.systems)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> Vocabulary:
        """Build a vocabulary from its JSON form, validating everything.

        Args:
            data: The decoded JSON document (see the module docstring and ``vocabulary.json``).
            source: Where the data came from (a file path), used in error messages.

        Returns:
            The vocabulary.

        Raises:
            ValueError: The data is not a valid vocabulary; the message lists every problem found, each with its
                JSON location, what is wrong and how to fix it.
        """
        checker = _Checker()
        vocabulary = checker.vocabulary(data)
        if checker.problems:
            count = len(checker.problems)
            lines = "\n".join(f"  - {source}: {where}: {what}" for where, what in checker.problems)
            raise ValueError(f"invalid vocabulary {source} ({count} problem{'s' * (count != 1)}):\n{lines}")
        return vocabulary


def load_vocabulary(path: str | os.PathLike[str] | None = None) -> Vocabulary:
    """Load and validate a vocabulary JSON file (the packaged default when path is None).

    Args:
        path: A vocabulary JSON file; None loads the packaged ``bridge_pl/task/vocabulary.json`` (cached: every
            call returns the same object).

    Returns:
        The vocabulary.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not valid JSON or not a valid vocabulary (every problem is listed).
    """
    if path is None:
        return _packaged_vocabulary()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return _parse(text, source=path)


@functools.lru_cache(maxsize=1)
def _packaged_vocabulary() -> Vocabulary:
    """The packaged default vocabulary, loaded once."""
    resource = files("bridge_pl.task") / "vocabulary.json"
    return _parse(resource.read_text(encoding="utf-8"), source=str(resource))


def _parse(text: str, *, source: str) -> Vocabulary:
    """Decode JSON text (rejecting duplicate object keys) and validate it."""
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid vocabulary {source}: not valid JSON ({e}); fix the JSON syntax") from None
    if duplicates:
        keys = ", ".join(json.dumps(k) for k in duplicates)
        raise ValueError(
            f"invalid vocabulary {source}: duplicate JSON object key(s) {keys}; a repeated key silently replaces "
            "the earlier entry, so merge or rename them"
        )
    return Vocabulary.from_dict(data, source=source)


# ------------------------------------------------------------------------------------------------ name rules
def name_problems(name: str) -> list[str]:
    """What is wrong with a category or item name (empty when it is valid).

    Names are Title Case words of ASCII letters, digits and hyphens separated by single spaces, 1 to 4 words, at
    most 32 characters, without apostrophes, commas, periods or any word of the question grammar.

    Args:
        name: The name to check.

    Returns:
        One message per broken rule, each saying how to fix it.
    """
    if not name.strip():
        return ["name is empty; give it at least one word"]
    problems = []
    if "'" in name or "\u2019" in name:
        problems.append(
            'name contains an apostrophe; names must not contain "\'s" because the question grammar splits on it '
            "(write e.g. 'Childrens Ward' or 'Children Ward')"
        )
    if "," in name or "." in name:
        problems.append("name contains a comma or period; the question grammar splits sentences and lists on them")
    others = sorted(set(_ALLOWED_CHARS.sub("", name)) - set("'\u2019,."))
    if others:
        shown = " ".join(repr(c) for c in others)
        problems.append(f"name contains {shown}; use only ASCII letters, digits, spaces and hyphens")
    if name != name.strip() or "  " in name:
        problems.append("name has leading, trailing or doubled spaces; separate words by exactly one space")
    words = name.split()
    if len(words) > MAX_WORDS:
        problems.append(f"name has {len(words)} words; use 1 to {MAX_WORDS}")
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"name is {len(name)} characters long; shorten it to at most {MAX_NAME_LENGTH}")
    if _ALLOWED_CHARS.fullmatch(name):  # only the word shapes can still be wrong
        badly_cased = [w for w in words if not _TITLE_WORD.fullmatch(w)]
        if badly_cased:
            problems.append(
                f"word(s) {', '.join(map(repr, badly_cased))} not in Title Case; start every word (and every "
                "hyphenated part) with a capital letter or a digit, and do not end a word with a hyphen"
            )
    forbidden = sorted({w for w in re.split(r"[\s-]+", name) if w.casefold() in FORBIDDEN_WORDS})
    if forbidden:
        problems.append(
            f"name contains the word(s) {', '.join(map(repr, forbidden))}, which the question grammar uses; "
            "reword it without them"
        )
    return problems


# ------------------------------------------------------------------------------------------------ validation
def _at(location: str, key: str | int) -> str:
    """The JSON location of `key` inside `location`: ``systems[2]``, ``subcategories["Public Library"]``."""
    if isinstance(key, int):
        return f"{location}[{key}]"
    if location.endswith("subcategories"):
        return f"{location}[{json.dumps(key)}]"
    return f"{location}.{key}" if location else key


class _Checker:
    """Walks the JSON document, building the vocabulary and collecting (location, problem) pairs."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self._items: dict[str, str] = {}  # item name -> location of its first occurrence
        self._categories: dict[str, str] = {}  # category name -> location of its first occurrence
        self._systems: dict[str, str] = {}  # system name -> location of its first occurrence

    def problem(self, location: str, message: str) -> None:
        self.problems.append((location or "<top level>", message))

    def vocabulary(self, data: Any) -> Vocabulary:
        if not isinstance(data, dict):
            self.problem("", f"expected a JSON object with keys {list(_TOP_KEYS)}, got {_kind(data)}")
            return Vocabulary(())
        self._keys(data, "", _TOP_KEYS)
        if data.get("format") != FORMAT:
            self.problem("format", f"format tag is {json.dumps(data.get('format'))}; set it to {json.dumps(FORMAT)}")
        systems = data.get("systems")
        if not isinstance(systems, list) or not systems:
            self.problem("systems", f"expected a non-empty list of systems, got {_kind(systems)}")
            return Vocabulary(())
        built = tuple(self.system(s, _at("systems", i)) for i, s in enumerate(systems))
        self._cross_check()
        return Vocabulary(built)

    def system(self, data: Any, location: str) -> System:
        if not isinstance(data, dict):
            self.problem(location, f"expected a system object with keys {list(_SYSTEM_KEYS)}, got {_kind(data)}")
            return System("", ())
        self._keys(data, location, _SYSTEM_KEYS)
        name = data.get("name")
        where = _at(location, "name")
        if not isinstance(name, str) or not _SYSTEM_NAME.fullmatch(name):
            self.problem(where, f"system name {json.dumps(name)} is not an identifier; use e.g. 'library_system'")
            name = ""
        elif name in self._systems:
            self.problem(where, f"system name {name!r} repeats {self._systems[name]}; system names must be unique")
        else:
            self._systems[name] = where
        categories = data.get("categories")
        where = _at(location, "categories")
        if not isinstance(categories, list):
            self.problem(where, f"expected a list of categories (lowest layer first), got {_kind(categories)}")
            categories = []
        elif len(categories) < MIN_CATEGORIES:
            self.problem(
                where,
                f"system has {len(categories)} categor{'y' if len(categories) == 1 else 'ies'}; a problem needs at "
                f"least {MIN_CATEGORIES} layers, so list at least {MIN_CATEGORIES} categories (lowest layer first)",
            )
        return System(name, tuple(self.category(c, _at(where, i)) for i, c in enumerate(categories)))

    def category(self, data: Any, location: str) -> Category:
        if not isinstance(data, dict):
            self.problem(location, f"expected a category object with keys {list(_CATEGORY_KEYS)}, got {_kind(data)}")
            return Category("", ())
        self._keys(data, location, _CATEGORY_KEYS)
        name = self._name(data.get("name"), _at(location, "name"), "category", self._categories)
        subcategories = data.get("subcategories")
        where = _at(location, "subcategories")
        if not isinstance(subcategories, dict) or len(subcategories) < MIN_SUBCATEGORIES:
            self.problem(
                where,
                f"expected an object mapping sub-category names to item lists (at least {MIN_SUBCATEGORIES}), "
                f"got {_kind(subcategories)}",
            )
            return Category(name, ())
        built = []
        for sub, items in subcategories.items():
            sub_where = _at(where, sub)
            if not isinstance(sub, str) or not sub.strip():
                self.problem(sub_where, "sub-category name is empty; name it (it is never printed)")
            built.append((sub, self._item_list(items, sub_where)))
        return Category(name, tuple(built))

    def _item_list(self, data: Any, location: str) -> tuple[str, ...]:
        if not isinstance(data, list):
            self.problem(location, f"expected a list of item names, got {_kind(data)}")
            return ()
        if len(data) < MIN_ITEMS:
            self.problem(location, f"sub-category has {len(data)} item(s); list at least {MIN_ITEMS} item names")
        return tuple(self._name(item, _at(location, i), "item", self._items) for i, item in enumerate(data))

    def _name(self, name: Any, location: str, kind: str, seen: dict[str, str]) -> str:
        """Check a category or item name, and that it is new among the names of its kind."""
        if not isinstance(name, str):
            self.problem(location, f"{kind} name must be a string, got {_kind(name)}")
            return ""
        for message in name_problems(name):
            self.problem(location, f"{kind} name {name!r}: {message}")
        if name in seen:
            self.problem(
                location,
                f"duplicate {kind} name {name!r} (first at {seen[name]}); {kind} names must be unique across the "
                "whole vocabulary, so rename one",
            )
        else:
            seen[name] = location
        return name

    def _cross_check(self) -> None:
        """No category name may also be an item name: the question text could not tell them apart."""
        for name, location in self._categories.items():
            if name in self._items:
                self.problem(
                    location,
                    f"category name {name!r} is also an item name (at {self._items[name]}); rename one of them",
                )

    def _keys(self, data: dict[str, Any], location: str, expected: tuple[str, ...]) -> None:
        """Report missing and unknown keys of a JSON object."""
        for key in expected:
            if key not in data:
                self.problem(location, f"missing key {key!r}; expected keys {list(expected)}")
        for key in data:
            if key not in expected:
                self.problem(_at(location, key), f"unknown key {key!r}; expected keys {list(expected)}")


def _kind(value: Any) -> str:
    """A short description of a JSON value's type for error messages."""
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "nothing (null or missing)"
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)
