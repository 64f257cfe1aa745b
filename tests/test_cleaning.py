"""The cleaning layer: each family of boilerplate goes, and the real sentences that resemble it stay."""

from __future__ import annotations

import pytest
from lxml.html import fromstring

from crawler.cleaning import clean_text, load_rules, noise_family, prune_boilerplate

STORY = (
    "Iran has delivered hundreds of Shahed drones to Russia by ship across the Caspian Sea, "
    "according to intelligence officials who spoke on condition of anonymity."
)
STORY_2 = (
    "The shipments began in the autumn and continued through the winter, the officials said, "
    "adding that Moscow paid partly in gold and partly with transfers of military technology."
)


def paragraphs(text: str) -> list[str]:
    return text.split("\n\n") if text else []


@pytest.mark.parametrize(
    ("line", "family"),
    [
        ("0", "counters"),
        ("12 comments", "counters"),
        ("345 views", "counters"),
        ("1.2K shares", "counters"),
        ("54 коментарів", "counters"),
        ("27672 просмотров", "counters"),
        ("3 commentaires", "counters"),
        ("USD", "tickers"),
        ("41.68 UAH ▼0.25%", "tickers"),
        ("AAPL 189.20 +1.2%", "tickers"),
        ("AP", "agency_credits"),
        ("Reuters", "agency_credits"),
        ("Photo: AFP", "agency_credits"),
        ("© AFP", "agency_credits"),
        ("Share this article", "prompts"),
        ("Share on Facebook", "prompts"),
        ("Compartir en Facebook", "prompts"),
        ("Поділитися", "prompts"),
        ("Partager cet article", "prompts"),
        ("Follow us on Twitter", "prompts"),
        ("Suivez-nous sur Facebook, Telegram et X pour ne rien manquer.", "prompts"),
        ("Підписуйтесь на наш Telegram-канал", "prompts"),
        ("Подписывайтесь на наш канал в Telegram", "prompts"),
        ("Sign up for our free newsletter", "prompts"),
        ("Abonnez-vous à notre newsletter gratuite", "prompts"),
        ("Iscriviti alla newsletter", "prompts"),
        ("We use cookies to improve your experience.", "prompts"),
        ("Nous utilisons des cookies pour mesurer l'audience.", "prompts"),
        ("Wir verwenden Cookies, um Inhalte zu personalisieren.", "prompts"),
        ("Ми використовуємо файли cookie, щоб персоналізувати контент.", "prompts"),
        ("Leave a comment", "prompts"),
        ("Subscribe to continue reading.", "paywall"),
        ("Cet article est réservé aux abonnés.", "paywall"),
        ("5 min read", "reading_time"),
        ("Temps de lecture : 3 minutes", "reading_time"),
        ("November 20, 2019 - 11:28 AMT", "timestamps"),
        ("Updated at 1:23 p.m.", "timestamps"),
        ("30 серпня 2023, 14:05", "timestamps"),
        ("2 hours ago", "relative_times"),
        ("Updated 2 hours ago · 1,204 views", "relative_times"),
        ("il y a 3 heures | 12 commentaires", "relative_times"),
        ("vor 5 Minuten", "relative_times"),
        ("3 години тому", "relative_times"),
        ("Reporting by Jane Doe; Editing by John Smith", "contributor_credits"),
        ("Associated Press writers Alan Fram and Zeke Miller contributed to this report.", "contributor_credits"),
        ("© 2024 The Demo Courier. All rights reserved.", "copyright"),
        ("Tous droits réservés.", "copyright"),
        ("jane.doe@paper.example", "bare_links"),
        ("Read also: Iran delivers drones to Russia", "read_also"),
        ("Lire aussi : L'Iran livre des drones à la Russie", "read_also"),
        ("Leggi anche: L'Iran consegna droni alla Russia", "read_also"),
        ("Lesen Sie auch: Iran liefert Drohnen an Russland", "read_also"),
        ("Lee también: Irán entrega drones a Rusia", "read_also"),
        ("Читайте також: Іран передав Росії дрони", "read_also"),
        ("Читайте также Иран передал России дроны", "read_also"),
        ("READ MORE: China plague outbreak confirmed", "read_also"),
        ("Related: The 15 weirdest galaxies in our universe", "read_also"),
        ("Tags: Iran, Russia, drones", "tags"),
        ("Home", "breadcrumbs"),
        ("Home › World › Europe", "breadcrumbs"),
        ("Головна / Новини / Світ", "breadcrumbs"),
    ],
)
def test_boilerplate_line_is_recognised(line, family):
    assert noise_family(line) == family


@pytest.mark.parametrize(
    "line",
    [
        "Read the full statement, which was published by the ministry on Monday, before judging the deal.",
        "Related talks between the two defence ministries are expected to resume in Tehran next week.",
        "More than 40 drones were launched overnight, the air force said.",
        "Follow-up deliveries of artillery shells are expected before the end of the year.",
        "Share prices of defence companies rose sharply after the announcement.",
        "The ministry said 12 comments from the public had been received about the export licence.",
        "Reuters reported that the missiles were shipped from the port of Bandar Abbas in December.",
        "AP and AFP journalists saw the convoy of trucks carrying missiles cross the border.",
        "In 2019 Russia bought 24 drones from Iran.",
        "On March 5 Russia received 2000 shells from North Korea.",
        "Iran, 2023",
        "Lire la suite du rapport permet de comprendre l'ampleur des livraisons d'obus.",
        "The subscription service was used to pay for the drones, investigators say.",
        "We use drones to monitor the front line, the commander said.",
        "Photos published by the ministry show the missiles being loaded onto a ship.",
        "i punti principali:",
        "- Un funzionario statunitense ha affermato che la Russia sta vivendo una carenza di forniture",
        "Tags were found on the shells, identifying them as North Korean.",
        "USD 300 million was paid for the 24 F-16 jets, the government said.",
        "Kyiv, 12 March 2024",
        "Compartir tecnología militar con Rusia es una línea roja, dijo el ministro.",
        "Teilen sich Russland und Iran die Kosten, sinkt der Preis pro Drohne deutlich.",
        "Register entries show that the drones were transferred free of charge, officials said.",
        "Share the burden of air defence, the minister urged allies on Monday.",
        "Home-made drones were also found in the warehouse, police said.",
        "News of the deal reached Kyiv on Monday / Tuesday night.",
        "Two hours ago, Russian forces launched drones bought from Iran at Kyiv.",
        "3 days ago the ministry signed the contract for 20 howitzers.",
    ],
)
def test_real_sentences_that_look_like_boilerplate_stay(line):
    assert noise_family(line) is None
    assert clean_text(f"{STORY}\n{line}\n{STORY_2}") == f"{STORY}\n\n{line}\n\n{STORY_2}"


def test_read_also_heading_takes_its_link_list_but_not_the_next_paragraph():
    text = f"{STORY}\nLire aussi\nL'Iran livre des drones à la Russie\nLa Corée du Nord envoie des obus\n{STORY_2}"
    assert paragraphs(clean_text(text)) == [STORY, STORY_2]
    bulleted = f"{STORY}\nRelated: Iran ships drones\n- Russia buys shells\n- Syria sends arms\n{STORY_2}"
    assert paragraphs(clean_text(bulleted)) == [STORY, STORY_2]


def test_a_wrapped_sentence_after_a_label_is_not_a_link_list():
    text = f"{STORY}\nPhotos\nwhich were released online show the drones being unloaded.\n{STORY_2}"
    assert "which were released online show the drones being unloaded." in clean_text(text)


def test_tags_heading_and_its_keyword_line_go():
    assert paragraphs(clean_text(f"{STORY}\n{STORY_2}\nTags\nIran, Russia, drones")) == [STORY, STORY_2]


def test_headline_repeated_with_other_apostrophes_and_breadcrumbs_goes():
    title = "Le Kremlin tente d’acheter des armes"
    text = f"Home MONDE {title}\n{title}\n0\nLe Kremlin tente d'acheter des armes\n{STORY}\n{STORY_2}"
    assert paragraphs(clean_text(text, [title])) == [STORY, STORY_2]


def test_section_label_above_the_headline_goes_but_a_short_line_in_the_body_stays():
    title = "Russia may transfer missile technology"
    assert paragraphs(clean_text(f"Incidents\n{title}\n{STORY}", [title])) == [STORY]
    assert paragraphs(clean_text(f"{STORY}\nIncidents\n{STORY_2}", [title])) == [STORY, "Incidents", STORY_2]


def test_truncated_teaser_repeating_the_lead_goes():
    teaser = STORY[:70] + "..."
    assert paragraphs(clean_text(f"{teaser}\nHeadline of the story\n{STORY}\n{STORY_2}", ["Headline of the story"])) == [
        STORY,
        STORY_2,
    ]
    # an ellipsis that ends a real quotation is not a teaser
    quote = "He said the deliveries would continue..."
    assert quote in clean_text(f"{quote}\n{STORY}")


def test_author_bios_at_the_end_go():
    bio = "“Nerd televisivo. Ninja di Twitter. Evangelista della birra. Difensore di Internet professionista.”"
    assert paragraphs(clean_text(f"{STORY}\n{STORY_2}\nAP\n{bio}")) == [STORY, STORY_2]
    about = "About the author\nJane Doe covers defence procurement. She previously worked in Kyiv."
    assert paragraphs(clean_text(f"{STORY}\n{STORY_2}\n{about}")) == [STORY, STORY_2]


def test_quoted_sentences_at_the_end_are_not_bios():
    quote = "“We will continue to identify and expose these transfers. They will not go unanswered.”"
    assert paragraphs(clean_text(f"{STORY}\n{quote}")) == [STORY, quote]
    short = "He said no. They left. The trucks stayed. Nobody knows why."
    assert paragraphs(clean_text(f"{STORY}\n{short}")) == [STORY, short]


def test_click_to_tweet_suffix_is_cut_from_a_real_paragraph():
    assert clean_text(f"{STORY}Click To Tweet") == STORY


def test_rules_load_from_the_reviewable_file_and_a_bad_pattern_names_its_key(tmp_path):
    rules = load_rules()
    assert {f.name for f in rules.families} >= {"counters", "tickers", "agency_credits", "prompts", "copyright"}
    broken = tmp_path / "boilerplate.toml"
    source = (load_rules.__wrapped__.__defaults__[0]).read_text(encoding="utf-8")  # type: ignore[attr-defined]
    broken.write_text(source.replace("'[\\d\\s.,]+[kKmM]?',", "'[unclosed',", 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[lines\.counters\]"):
        load_rules(broken)


PAGE = """<html><body>
<nav class="breadcrumbs"><a href="/">Home</a> › <a href="/world">World</a></nav>
<div class="ticker">USD 41.68 UAH ▼0.25%</div>
<article class="post post-share-enabled">
<h1>Iran ships drones</h1>
<div class="share-bar"><a href="#">Facebook</a> <span class="count">377</span></div>
<div class="entry-content entry-content-read-more">
<p>{story}</p><p>{story2}</p>
<aside class="read-also"><a href="#">Iran delivers missiles to Russia</a></aside>
<table><tr><th class="ticker">Ticker</th><td class="ticker">HD</td></tr></table>
</div>
<section class="author-bio"><p>Jane Doe covers defence.</p></section>
</article>
<div id="cookie-banner"><p>We use cookies.</p></div>
<div class="shared-timeshare"><p>Timeshare offers</p></div>
</body></html>"""


def test_page_furniture_is_pruned_by_class_and_id_but_content_stays():
    tree = fromstring(PAGE.format(story=STORY, story2=STORY_2))
    removed = prune_boilerplate(tree)
    text = tree.text_content()
    assert removed == 6
    for gone in ("World", "UAH", "Facebook", "Iran delivers missiles", "Jane Doe", "We use cookies"):
        assert gone not in text
    for kept in (STORY, STORY_2, "Ticker", "HD", "Timeshare offers", "Iran ships drones"):
        assert kept in text


def test_a_container_named_like_furniture_that_holds_the_story_is_kept():
    html = f'<html><body><div class="related-story"><p>{STORY}</p><p>{STORY_2}</p></div><p>x</p></body></html>'
    tree = fromstring(html)
    assert prune_boilerplate(tree) == 0
    assert STORY in tree.text_content()
