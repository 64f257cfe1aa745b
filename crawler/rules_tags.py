"""Who supplies whom: read supplier, recipient and weapon tags off the sentences that fired a rule.

Roles come from plain syntax that holds across the seven languages, with the words themselves
in the rule file's [tagging] concepts: a party after a "from" marker ("from Iran", "dalla Corea
del Nord", "из Ирана") is a supplier, after a "to" marker a recipient; a party next to a weapon
("Iranian drones", "missiles nord-coréens") is its origin; a party before an acquire verb is the
buyer, before a supply verb the seller; a party listed right after another ("Iran and Myanmar")
shares its role.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from crawler.rules_parse import Concept, Tagging

Occ = tuple[int, int, int]  # (first token, end token, concept index)


def read_tags(
    tagging: Tagging,
    concepts: list[Concept],
    occs: list[Occ],
    evidence: list[Occ],
    sids: list[int],
    gap: Callable[[int], str],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(suppliers, recipients, weapons) for a flag whose terms (other than parties) are `evidence`.

    `gap(i)` is the text between token i-1 and token i: a dash or a comma there breaks adjacency.
    """
    weapons = dict.fromkeys(concepts[c].tag for _, _, c in evidence if c in tagging.weapons and concepts[c].tag)
    sentences = sorted({sids[lo] for lo, _, _ in evidence})
    evidence_starts = {lo for lo, _, _ in evidence}
    by_sentence: dict[int, list[Occ]] = {}
    wanted = set(sentences)
    for occ in occs:
        s = sids[occ[0]]
        if s in wanted:
            by_sentence.setdefault(s, []).append(occ)
    supplier_votes: Counter[str] = Counter()
    recipient_votes: Counter[str] = Counter()
    headline: dict[str, str] = {}  # roles read in the first sentence (the headline when there is one)
    for s in sentences:
        for tag, role in _sentence_roles(tagging, concepts, by_sentence.get(s, []), gap, evidence_starts):
            (supplier_votes if role == "supplier" else recipient_votes)[tag] += 1
            if s == sids[0]:
                headline.setdefault(tag, role)
    # a tie between the two roles goes to the headline's reading, when it has one
    suppliers = [t for t, n in supplier_votes.most_common()
                 if n > recipient_votes[t] or (n == recipient_votes[t] and headline.get(t, "supplier") == "supplier")]
    recipients = [t for t, n in recipient_votes.most_common()
                  if n > supplier_votes[t] or (n == supplier_votes[t] and headline.get(t, "recipient") == "recipient")]
    return tuple(suppliers), tuple(recipients), tuple(t for t in weapons if t)


def _dash(text: str) -> bool:
    """A dash between words (not a hyphen inside one): credit lines and attributions follow it."""
    return " - " in text or " – " in text or "—" in text


def _adjacent(gap: Callable[[int], str], first_end: int, second_start: int) -> bool:
    """Two terms side by side, with nothing but a space or a hyphen between them."""
    return first_end == second_start and gap(second_start).strip() in ("", "-")


def _sentence_roles(
    tagging: Tagging, concepts: list[Concept], occs: list[Occ], gap: Callable[[int], str], evidence_starts: set[int]
) -> list[tuple[str, str]]:
    """Roles of the tagged parties in one sentence; verbs count only where they fired the rule."""
    occs = sorted(occs)
    party_ids = tagging.parties
    parties = [o for o in occs if o[2] in party_ids and concepts[o[2]].tag]
    if not parties:
        return []
    weapon_ids, origin_ids = tagging.weapons, tagging.origin
    weapon_occs = [o for o in occs if o[2] in weapon_ids]
    origin_occs = [o for o in occs if o[2] in origin_ids]
    weapon_ends = {o[1] for o in weapon_occs}
    source, source_after_weapon, target, neutral = tagging.source, tagging.source_after_weapon, tagging.target, tagging.neutral
    acquire, supply, join_ids = tagging.acquire, tagging.supply, tagging.joins
    # the transfer verbs that fired the rule: (first token, end token, role of the party before them)
    evidence_verbs = [
        (lo, hi, "recipient" if c in acquire else "supplier")
        for lo, hi, c in occs
        if (c in acquire or c in supply) and lo in evidence_starts
    ]
    verbs = [(lo, role) for lo, _, role in evidence_verbs]
    role_of_verb_ending = {hi: role for _, hi, role in evidence_verbs}

    markers: list[tuple[int, int, str]] = []
    for lo, hi, c in occs:
        if c in tagging.agent:
            # "supplied by Iran": the supplier; "bought by Poland": the buyer; "used by Ukraine": nobody
            markers.append((lo, hi, role_of_verb_ending.get(lo) or role_of_verb_ending.get(lo - 1) or "neutral"))
        elif c in source:
            markers.append((lo, hi, "supplier"))
        elif c in source_after_weapon and lo in weapon_ends:
            markers.append((lo, hi, "supplier"))
        elif c in target:
            # after a buy verb, "to" reads "from": "compra ... a Dinamarca", "acheter à l'Iran"
            last_verb = next((v for v in reversed(verbs) if 0 < lo - v[0] <= 6), None)
            markers.append((lo, hi, "supplier" if last_verb and last_verb[1] == "recipient" else "recipient"))
        elif c in neutral:
            markers.append((lo, hi, "neutral"))
    joins = {i for lo, hi, c in occs if c in join_ids or c in source_after_weapon for i in range(lo, hi)}

    n_parties = len(parties)
    roles: list[str | None] = []
    for lo, hi, _ in parties:
        role = _marker_role(markers, lo, [p_hi for _, p_hi, _ in parties if p_hi <= lo])
        if role is None and _dash(gap(lo)):
            role = "neutral"  # a credit line: "... balistiques - USA", "— Reuters"
        if role is None and any(_dash(gap(k)) and any(v < k for v, _ in verbs) for k in range(max(lo - 3, 1), lo)):
            role = "neutral"  # attribution after the news: "... снарядов — разведка Южной Кореи"
        if role is None and role_of_verb_ending.get(lo) == "supplier" and gap(lo).strip() == "":
            role = "recipient"  # the indirect object right after a supply verb: "передав Росії", "sold Taiwan"
        if role is None and any(
            _adjacent(gap, hi, w_lo) or _adjacent(gap, w_hi, lo)
            for w_lo, w_hi, _ in weapon_occs + origin_occs
        ):
            role = "supplier"  # origin: "Iranian drones", "missiles nord-coréens", "di fabbricazione iraniana"
        roles.append(role)

    def share_roles() -> None:
        """A party listed next to another shares its role: "Iran and Myanmar", "Egypt, Syria, Iran"."""
        for _ in range(2):
            for n in range(n_parties):
                for m in (n - 1, n + 1):
                    if 0 <= m < n_parties and roles[n] is None and roles[m] is not None:
                        a, b = sorted((parties[n], parties[m]))
                        if b[0] - a[1] <= 3 and all(i in joins for i in range(a[1], b[0])):
                            roles[n] = roles[m]

    share_roles()
    for n, (lo, hi, _) in enumerate(parties):
        if roles[n] is None:
            following = [v for v in verbs if hi <= v[0] <= hi + 12]
            next_party = parties[n + 1][0] if n + 1 < n_parties else None
            if following and (next_party is None or next_party > following[0][0]):
                roles[n] = following[0][1]  # the party closest before a verb is its subject
            elif following and roles[n + 1] is None and following[0][0] - hi <= 12:
                # two parties before the verb: subject, then indirect object ("Iran hat Russland
                # Drohnen geliefert", "Iran sent Russia drones"): the first takes the verb's role
                roles[n] = following[0][1]
                roles[n + 1] = "recipient" if following[0][1] == "supplier" else "supplier"
    share_roles()
    tagged = [(concepts[p[2]].tag or "", r) for p, r in zip(parties, roles)]
    if "supplier" in roles and "recipient" not in roles:
        # "la RPDC fournit des armes [à] la Russie": a party beside the evidence is the recipient.
        tagged = [
            (t, "recipient" if r is None and any(abs(p[0] - e) <= 6 for e in evidence_starts) else r)
            for (t, r), p in zip(tagged, parties)
        ]
    return [(t, r) for t, r in tagged if r in ("supplier", "recipient")]


def _marker_role(markers: list[tuple[int, int, str]], party_lo: int, party_ends_before: list[int]) -> str | None:
    """Role given by a marker ending at most two words (articles) before the party, with no
    other party in between ("to Russia - South Korean intelligence": the marker is Russia's)."""
    best = None
    for lo, hi, role in markers:
        if 0 <= party_lo - hi <= 2 and (best is None or hi > best[0]):
            best = (hi, role)
    if best is None or any(best[0] < end <= party_lo for end in party_ends_before):
        return None
    return best[1]
