"""The packaged vocabulary and the vocabulary loader's validation."""

import copy
import json
import re
from collections import Counter

import pytest

from bridge_pl.task.vocabulary import Category, System, Vocabulary, load_vocabulary, name_problems

# Independent re-statement of the name rules, so a bad edit to vocabulary.json fails here even if the loader changes.
WORD = r"[A-Z0-9][A-Za-z0-9]*(?:-[A-Z0-9][A-Za-z0-9]*)*"  # Title Case, hyphenated parts capitalised too
NAME_RE = re.compile(rf"{WORD}(?: {WORD}){{0,3}}")  # 1 to 4 words, single spaces
GRAMMAR_WORDS = {"and", "each", "of", "the", "equals", "times", "more", "than", "sum", "difference", "number", "how",
                 "many", "does", "have"}  # fmt: skip
# The official iGSM systems must not be reused.
OFFICIAL_WORDS = {"district", "supermarket", "product", "ingredient", "zoo", "enclosure", "animal", "bone", "school",
                  "classroom", "backpack", "stationery"}  # fmt: skip


def _valid_name(name: str) -> bool:
    words = re.split(r"[ -]", name)
    return bool(NAME_RE.fullmatch(name)) and len(name) <= 32 and not GRAMMAR_WORDS & {w.lower() for w in words}


def _tiny() -> dict:
    """A small valid vocabulary document."""
    return {
        "format": "bridge-pl-vocabulary/1",
        "systems": [
            {
                "name": "bakery_system",
                "categories": [
                    {"name": "Pastry", "subcategories": {"Bread": ["Croissant", "Brioche Bun"]}},
                    {"name": "Tray", "subcategories": {"Metal Tray": ["Croissant Tray", "Cooling Rack"]}},
                    {"name": "Bakery", "subcategories": {"Shop": ["Harbor Bakery", "Elm Street Market"]}},
                ],
            },
            {
                "name": "garden_system",
                "categories": [
                    {"name": "Seed", "subcategories": {"Flower Seed": ["Poppy Seed", "Aster Seed"]}},
                    {
                        "name": "Planter",
                        "subcategories": {"Pot": ["Clay Pot", "Window Box"], "Bed": ["Raised Bed", "Herb Bed"]},
                    },
                ],
            },
        ],
    }


def _errors(data: dict) -> str:
    with pytest.raises(ValueError) as info:
        Vocabulary.from_dict(data, source="mine.json")
    return str(info.value)


# ------------------------------------------------------------------------------------------------ packaged file
def test_packaged_vocabulary_shape():
    vocab = load_vocabulary()
    assert len(vocab.systems) >= 6
    assert vocab.max_layers() >= 5
    for system in vocab.systems:
        assert len(system.categories) == 5
        for category in system.categories:
            assert 4 <= len(category.subcategories) <= 6, category.name
            subs = [sub for sub, _ in category.subcategories]
            assert len(set(subs)) == len(subs) and all(s.strip() for s in subs)
            for sub, items in category.subcategories:
                assert 6 <= len(items) <= 8, (category.name, sub)
    assert len(vocab.item_names()) == sum(len(c.items()) for s in vocab.systems for c in s.categories)


def test_packaged_vocabulary_is_cached():
    assert load_vocabulary() is load_vocabulary()


def test_packaged_names_unique_and_well_formed():
    vocab = load_vocabulary()
    items, categories = vocab.item_names(), vocab.category_names()
    assert [n for n, k in Counter(items).items() if k > 1] == []
    assert [n for n, k in Counter(categories).items() if k > 1] == []
    assert set(items).isdisjoint(categories)
    assert len({s.name for s in vocab.systems}) == len(vocab.systems)
    bad = [n for n in (*items, *categories) if not _valid_name(n)]
    assert bad == []
    reused = [n for n in (*items, *categories) if OFFICIAL_WORDS & set(n.lower().split())]
    assert reused == []
    assert all(name_problems(n) == [] for n in (*items, *categories))


def test_packaged_file_layout():
    from importlib.resources import files

    text = (files("bridge_pl.task") / "vocabulary.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data) == ["format", "systems"] and data["format"] == "bridge-pl-vocabulary/1"
    for system in data["systems"]:
        assert list(system) == ["name", "categories"]
        assert all(list(c) == ["name", "subcategories"] for c in system["categories"])
    assert text == json.dumps(data, indent=2) + "\n"  # pretty-printed, 2-space indent


def test_categories_lowest_layer_first():
    system = next(s for s in load_vocabulary().systems if s.name == "library_system")
    assert [c.name for c in system.categories] == ["Book", "Bookshelf", "Reading Room", "Library", "Borough"]
    assert "Riverside Library" in system.categories[3].items()


# ------------------------------------------------------------------------------------------------ from_dict
def test_from_dict_builds_dataclasses():
    vocab = Vocabulary.from_dict(_tiny())
    assert vocab.max_layers() == 2
    assert vocab.category_names() == ("Pastry", "Tray", "Bakery", "Seed", "Planter")
    assert vocab.item_names()[:3] == ("Croissant", "Brioche Bun", "Croissant Tray")
    planter = vocab.systems[1].categories[1]
    assert planter == Category("Planter", (("Pot", ("Clay Pot", "Window Box")), ("Bed", ("Raised Bed", "Herb Bed"))))
    assert planter.items() == ("Clay Pot", "Window Box", "Raised Bed", "Herb Bed")
    assert isinstance(vocab.systems[0], System) and vocab.systems[0].name == "bakery_system"


def test_apostrophe_rejected_with_location_and_fix():
    data = _tiny()
    data["systems"][1]["categories"][1]["subcategories"]["Pot"][1] = "Grandma's Box"
    message = _errors(data)
    assert "mine.json" in message
    assert 'systems[1].categories[1].subcategories["Pot"][1]' in message
    assert "apostrophe" in message and "'s" in message


def test_duplicate_item_rejected():
    data = _tiny()
    data["systems"][1]["categories"][0]["subcategories"]["Flower Seed"][0] = "Croissant"
    message = _errors(data)
    assert 'systems[1].categories[0].subcategories["Flower Seed"][0]' in message
    assert "duplicate item name 'Croissant'" in message
    assert 'systems[0].categories[0].subcategories["Bread"][0]' in message  # where it first appeared


def test_forbidden_word_rejected():
    data = _tiny()
    data["systems"][0]["categories"][2]["subcategories"]["Shop"][0] = "Salt And Pepper"
    message = _errors(data)
    assert 'systems[0].categories[2].subcategories["Shop"][0]' in message
    assert "'And'" in message and "grammar" in message


def test_too_few_categories_rejected():
    data = _tiny()
    del data["systems"][1]["categories"][1]
    message = _errors(data)
    assert "systems[1].categories" in message and "at least 2" in message


def test_category_equal_to_item_rejected():
    data = _tiny()
    data["systems"][1]["categories"][1]["name"] = "Croissant"
    message = _errors(data)
    assert "systems[1].categories[1].name" in message and "also an item name" in message


def test_every_problem_reported_at_once():
    data = _tiny()
    data["format"] = "something/0"
    data["systems"][0]["categories"][0]["name"] = "pastry"  # not Title Case
    data["systems"][0]["categories"][1]["subcategories"]["Metal Tray"] = ["Only One"]
    data["systems"][0]["categories"][2]["subcategories"]["Shop"][1] = "A Very Long Shop Name Here"
    data["systems"][1]["categories"][0]["subcategories"]["Flower Seed"][1] = "Aster,  Seed."
    data["systems"][1]["categories"][1]["name"] = "Tray"
    message = _errors(data)
    assert "(7 problems)" in message
    for expected in (
        "format",
        "systems[0].categories[0].name",
        "Title Case",
        'systems[0].categories[1].subcategories["Metal Tray"]',
        "at least 2 item names",
        "6 words",
        "comma or period",
        "doubled spaces",
        "duplicate category name 'Tray'",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        (" Leading", "leading"),
        ("Cafe\u00e9", "ASCII"),
        ("Lamp-", "Title Case"),
        ("Pier 7", None),
        ("Light-Up Wand", None),
        ("VIP Pavilion", None),
        ("Thirty-Two Character Name Here", None),
        ("Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "characters long"),
        ("Each Way", "grammar"),
        ("Summit Theme Park", None),  # words merely containing grammar words are fine
        ("Fish-And-Chips", "grammar"),
    ],
)
def test_name_rules(name, fragment):
    problems = name_problems(name)
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


def test_structural_problems():
    assert "expected a JSON object" in _errors([])  # type: ignore[arg-type]
    data = _tiny()
    data["systems"][0]["categories"][0]["subcategories"] = {}
    data["systems"][1]["extra"] = 1
    data["systems"][1]["name"] = "bakery_system"
    message = _errors(data)
    assert "systems[0].categories[0].subcategories" in message and "sub-category names to item lists" in message
    assert "unknown key 'extra'" in message
    assert "system name 'bakery_system' repeats systems[0].name" in message


# ------------------------------------------------------------------------------------------------ files
def test_load_custom_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(_tiny()), encoding="utf-8")
    vocab = load_vocabulary(path)
    assert vocab == Vocabulary.from_dict(_tiny())
    assert load_vocabulary(str(path)) == vocab


def test_load_custom_file_reports_path(tmp_path):
    data = copy.deepcopy(_tiny())
    data["systems"][0]["categories"][0]["name"] = "Pastry's"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_vocabulary(path)


def test_duplicate_json_keys_rejected(tmp_path):
    path = tmp_path / "dup.json"
    text = json.dumps(_tiny()).replace('"Pot": ["Clay Pot", "Window Box"]', '"Bed": ["Clay Pot", "Window Box"]')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match='duplicate JSON object key.*"Bed"'):
        load_vocabulary(path)


def test_invalid_json_rejected(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_vocabulary(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_vocabulary(path)
