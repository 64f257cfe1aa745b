"""The rules engine and the shipped arms-procurement rule set, as a user sees them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from bench.rules import DEVSET, load_devset, scores
from crawler.rules import RuleFileError, format_matches, load_rules, match_text

SEEDS = DEVSET / "seeds"


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def devset():
    return load_devset()


# ---------------------------------------------------------------- the five seeds

@pytest.mark.parametrize(
    ("seed", "language", "suppliers", "recipients", "weapons"),
    [
        ("000_ae635c7d7f31c170.txt", "fr", {"Iran", "Myanmar", "Syria"}, {"Russia"}, {"munitions", "drones"}),
        ("001_ec4bd792010e60b6.txt", "fr", {"North Korea"}, {"Russia"}, {"munitions"}),
        ("002_0140a4cf203c8984.txt", "fr", {"Iran"}, {"Russia"}, {"drones", "missiles"}),
        ("003_20acd37116a2ee7f.txt", "fr", {"North Korea"}, {"Russia"}, {"artillery shells"}),
        ("004_fcade4cba2916e83.txt", "it", {"North Korea", "Iran"}, {"Russia"}, {"missiles", "artillery shells", "drones"}),
    ],
)
@pytest.mark.parametrize("known_language", [True, False])
def test_seed_is_flagged_with_who_supplies_whom(rules, seed, language, suppliers, recipients, weapons, known_language):
    text = (SEEDS / seed).read_text(encoding="utf-8")
    matches = rules.match(None, text, language if known_language else None)
    assert [m.rule for m in matches] == ["arms-procurement"]
    match = matches[0]
    assert suppliers <= set(match.suppliers)
    assert recipients <= set(match.recipients)
    assert weapons <= set(match.weapons)
    assert not set(match.suppliers) & {"United States", "Ukraine"}
    assert match.score >= 1


# ---------------------------------------------------------------- hard negatives

def test_no_hard_negative_of_the_dev_set_is_flagged(rules, devset):
    hard = [e for e in devset if e.hard]
    assert len(hard) >= 70
    flagged = [(e.id, e.hard) for e in hard if rules.match(e.title, e.text, e.lang)]
    assert flagged == []


@pytest.mark.parametrize(
    "title, text",
    [
        ("Shell to buy LNG trader", "Shell agreed to buy a Singapore LNG trader from the government for $2bn; Shell's shares rose."),
        ("Beach", "Tourists in Florida buy seashells and sea shells from stalls; the government wants to ban the sale."),
        ("AI", "The AI arms race: the US government and China buy chips as companies acquire start-ups."),
        ("Football", "Kane delivered a missile of a shot; England's coach said the club would buy a striker."),
        ("Hug", "The soldier took his daughter in his arms after Russia handed him over in a prisoner exchange."),
        ("Ypres", "Workers found unexploded First World War shells on a building site; the army's bomb disposal unit took delivery of them."),
        ("Drones", "Want to buy a camera drone for aerial photography? China's DJI sells the best drones for beginners."),
        ("Strike", "Russia launched 50 Shahed drones at Kyiv overnight; Ukraine's air defence shot down 40 drones."),
    ],
)
def test_typical_false_friends_are_not_flagged(rules, title, text):
    assert rules.match(title, text, "en") == ()


# ---------------------------------------------------------------- inflection, aliases, accents

@pytest.mark.parametrize(
    "language, text",
    [
        ("ru", "Россия получила от КНДР партию снарядов калибра 152 мм."),
        ("ru", "Иран продолжает поставки беспилотников «Герань-2» российской армии."),
        ("uk", "Росія отримує від Ірану дрони Шахед та боєприпаси."),
        ("uk", "Пхеньян передав Москві ракети KN-23, повідомила розвідка."),
        ("it", "La Russia ha acquistato droni Muhajir-6 e Shahid dall'Iran."),
        ("it", "Teheran ha consegnato a Mosca i droni Mohajer-6."),
        ("fr", "La RPDC a livré des coquilles d'artillerie à la Russie."),
        ("fr", "LA RUSSIE ACHÈTE DES OBUS DE 152 MM À LA CORÉE DU NORD."),
        ("fr", "La Russie acheterait des drones a l'Iran, selon la defense americaine."),
        ("es", "Irán suministró a Rusia drones Shahed-136 y misiles balísticos."),
        ("de", "Nordkorea hat Russland Artilleriegranaten und Raketen geliefert."),
        ("de", "Die Waffenlieferungen an die Ukraine gehen weiter, sagte die Bundesregierung."),
        ("en", "Iran has been supplying Geran-2 drones and 152mm shells to Russia's army."),
    ],
)
def test_inflected_and_aliased_forms_are_flagged(rules, language, text):
    assert [m.rule for m in rules.match(None, text, language)] == ["arms-procurement"]
    assert [m.rule for m in rules.match(None, text, None)] == ["arms-procurement"]


def test_aliases_map_to_weapon_categories(rules):
    match = rules.match(None, "Russia bought Shahed-136, Geran-2 and Mohajer-6 drones and KN-23 missiles from Iran.", "en")[0]
    assert set(match.weapons) == {"drones", "missiles"}
    assert match.suppliers == ("Iran",)
    assert match.recipients == ("Russia",)


# ---------------------------------------------------------------- explanation

@pytest.mark.parametrize(
    ("text", "suppliers", "recipients"),
    [
        ("Іран передав Росії балістичні ракети Fath-360.", ("Iran",), ("Russia",)),
        ("КНДР поставила России миллионы снарядов — разведка Южной Кореи.", ("North Korea",), ("Russia",)),
        ("North Korea delivered millions of shells to Russia - South Korean intelligence.", ("North Korea",), ("Russia",)),
        ("Argentina firma la compra de 24 cazas F-16 a Dinamarca.", ("Denmark",), ("Argentina",)),
        ("Iran hat Russland im Sommer weitere Drohnen geliefert.", ("Iran",), ("Russia",)),
        ("Iran sent Russia hundreds of drones.", ("Iran",), ("Russia",)),
        ("Iran sold drones to Russia and Belarus.", ("Iran",), ("Russia", "Belarus")),
        ("Drones supplied by Iran reached Russia.", ("Iran",), ("Russia",)),
        ("The tanks were bought by Poland from South Korea.", ("South Korea",), ("Poland",)),
    ],
)
def test_tags_read_who_supplies_whom_from_the_sentence(rules, text, suppliers, recipients):
    [match] = rules.match(None, text)
    assert (match.suppliers, match.recipients) == (suppliers, recipients)


def test_every_flag_explains_itself_with_offsets_and_a_highlighted_snippet(rules, devset):
    checked = 0
    for e in devset:
        for m in rules.match(e.title, e.text, e.lang):
            full = match_text(e.title, e.text)
            assert m.terms
            for t in m.terms:
                assert full[t.start : t.end] == t.term
            assert 0 < len(m.snippet) <= 320
            assert m.highlights
            for start, end in m.highlights:
                assert any(m.snippet[start:end] == t.term for t in m.terms)
            checked += 1
    assert checked >= 70


def test_format_matches_prints_tags_and_marks_terms(rules):
    matches = rules.match("Iran ships drones to Russia", "Iran has supplied Shahed drones to Russia, officials said.", "en")
    text = format_matches(matches)
    assert "arms-procurement" in text and "suppliers:  Iran" in text and "recipients: Russia" in text
    assert "[drones]" in text
    data = json.loads(format_matches(matches, as_json=True))
    assert data[0]["rule"] == "arms-procurement" and data[0]["weapons"] == ["drones"]
    assert format_matches(()) == "no rule matched"


def test_rule_set_pickles_for_worker_processes(rules):
    clone = pickle.loads(pickle.dumps(rules))
    text = (SEEDS / "002_0140a4cf203c8984.txt").read_text(encoding="utf-8")
    assert clone.names == rules.names == ("arms-procurement",)
    assert clone.match(None, text, "fr") == rules.match(None, text, "fr")


# ---------------------------------------------------------------- rule files and their errors

def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """
[concepts.buy]
en = ["buy*", "purchas*"]

[concepts."thing.tank"]
tag = "armour"
en = ["tank", "tanks"]
except = ["think tank*"]

[rules.tank-deal]
when = "buy SENTENCE/3 thing"
min_score = 1

[tagging]
weapons = "thing"
"""


def test_a_user_rule_file_with_proximity_and_wildcards(tmp_path):
    rules = load_rules([str(write(tmp_path, GOOD))])
    assert rules.names == ("tank-deal",)
    assert rules.match(None, "Poland buys 250 tanks.")[0].weapons == ("armour",)
    assert rules.match(None, "Poland purchased new tanks.")
    assert rules.match(None, "Poland buys fuel, trucks, rations and tanks.") == ()  # 4 words apart
    assert rules.match(None, "Poland buys time. Tanks are expensive.") == ()  # another sentence
    assert rules.match(None, "A think tank urged Poland to buy more.") == ()  # except


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("[concepts.a]\nen = [\"x\"]\nweight = = 2\n\n[rules.r]\nwhen = \"a\"\n", 3, "TOML syntax error"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"a AND b\"\n", 5, "unknown concept 'b'"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"a XOR a\"\n", 5, "bad operator 'XOR'"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"a NEAR/x a\"\n", 5, "bad operator 'NEAR/x'"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"a and a\"\n", 5, "must be written in capitals"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"a\"\nminscore = 2\n", 6, "unknown key 'minscore'"),
        ("[concepts.a]\nen = [\"x\"]\nwieght = 2\n\n[rules.r]\nwhen = \"a\"\n", 3, "unknown key 'wieght'"),
        ("[concepts.a]\nen = [\"x\",\n  \"a*\"]\n\n[rules.r]\nwhen = \"a\"\n", 3, "too short"),
        ("[concepts.a]\nen = [\"x\"]\n\n[rules.r]\nwhen = \"(a\"\n", 5, "missing ')'"),
        ("[concepts.a]\nen = [\"x\"]\n", 1, "at least one [rules.NAME]"),
    ],
)
def test_rule_file_errors_name_the_file_and_line(tmp_path, body, line, message):
    path = write(tmp_path, body)
    with pytest.raises(RuleFileError) as caught:
        load_rules([str(path)])
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


def test_unknown_rule_set_name_is_an_error():
    with pytest.raises(RuleFileError, match="no such rule file.*arms-procurement"):
        load_rules(["arms-procurment"])


# ---------------------------------------------------------------- regression gate on the dev set

@pytest.mark.parametrize("known_language", [True, False])
def test_dev_set_precision_and_recall_stay_above_0_9(rules, devset, known_language):
    assert len(devset) >= 140
    assert sum(e.label for e in devset) >= 0.4 * len(devset)
    for lang in ("en", "fr", "it", "de", "es", "uk", "ru"):
        assert sum(1 for e in devset if e.lang == lang) >= 18
    pairs = [(e.label, bool(rules.match(e.title, e.text, e.lang if known_language else None))) for e in devset]
    precision, recall, _, _, _ = scores(pairs)
    assert precision >= 0.9 and recall >= 0.9
