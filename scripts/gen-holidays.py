#!/usr/bin/env python3
"""Generates the Context Enrichment service's public-holiday table from the PyPI `holidays`
package: national holidays per country and, per subdivision, the differences from them, for
the years 2000-2050, names in US English where the package has them. Run by scripts/infra.sh
(setup) into ~/.cache/loom/context/; the node finds it there or at `enrichment.holidays`.

    python gen-holidays.py OUT.json
"""
import json
import sys

import holidays

YEARS = range(2000, 2051)
COUNTRIES = [
    "AR", "AT", "AU", "BE", "BG", "BR", "CA", "CH", "CL", "CN", "CO", "CZ", "DE", "DK", "EE", "EG",
    "ES", "FI", "FR", "GB", "GR", "HK", "HR", "HU", "ID", "IE", "IL", "IN", "IS", "IT", "JP", "KE",
    "KR", "LT", "LU", "LV", "MX", "MY", "NG", "NL", "NO", "NZ", "PE", "PH", "PL", "PT", "RO", "RS",
    "RU", "SE", "SG", "SI", "SK", "TH", "TR", "TW", "UA", "US", "VN", "ZA",
]


# GeoNames' English admin1 names the package's (native-language) aliases do not cover.
ENGLISH = {
    "DE": {"Bavaria": "BY", "Lower Saxony": "NI", "North Rhine-Westphalia": "NW", "Rhineland-Palatinate": "RP",
           "Saxony": "SN", "Saxony-Anhalt": "ST", "Thuringia": "TH", "Hesse": "HE",
           "Baden-Wuerttemberg": "BW", "Bremen": "HB", "Hamburg": "HH"},
    "AT": {"Carinthia": "2", "Lower Austria": "3", "Upper Austria": "4", "Styria": "6", "Tyrol": "7",
           "Vienna": "9"},
    "CH": {"Zurich": "ZH", "Geneva": "GE", "Lucerne": "LU", "Grisons": "GR", "Ticino": "TI", "Vaud": "VD"},
}


def aliases(cc):
    """Subdivision names -> codes: the package's aliases, the codes themselves, ENGLISH."""
    cls = holidays.country_holidays(cc).__class__
    out = {str(k): str(v) for k, v in (getattr(cls, "subdivisions_aliases", {}) or {}).items()}
    for code in holidays.list_supported_countries().get(cc, []):
        out.setdefault(code, code)
    out.update(ENGLISH.get(cc, {}))
    return out


def table(cc, subdiv=None):
    cls = holidays.country_holidays(cc).__class__
    lang = "en_US" if "en_US" in (getattr(cls, "supported_languages", ()) or ()) else None
    h = holidays.country_holidays(cc, subdiv=subdiv, years=YEARS, language=lang)
    return {d.isoformat(): name for d, name in sorted(h.items())}


def main(out):
    countries = {}
    supported = holidays.list_supported_countries()
    for cc in COUNTRIES:
        national = table(cc)
        subs = {}
        for s in supported.get(cc, []):
            t = table(cc, s)
            extra = {d: n for d, n in t.items() if national.get(d) != n}
            absent = sorted(d for d in national if d not in t)
            if extra or absent:
                subs[s] = {"extra": extra, "absent": absent}
            else:
                subs[s] = {}
        countries[cc] = {"national": national, "subdivisions": subs, "aliases": aliases(cc)}
    doc = {
        "source": "holidays",
        "version": holidays.__version__,
        "years": [YEARS.start, YEARS.stop - 1],
        "countries": countries,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
