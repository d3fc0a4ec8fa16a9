"""Country and region codes: ISO 3166-1 alpha-2, from the ISO data pycountry ships (Debian's iso-codes).

Source: packages.debian.org/en/buster/armel/python-pycountry: "pycountry provides ISO country ... definitions ...
taken from the iso-codes package"."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import pycountry
from pydantic import AfterValidator


@lru_cache(maxsize=1)
def iso_country_codes() -> frozenset[str]:
    return frozenset(country.alpha_2 for country in pycountry.countries)


def check_country_code(code: str) -> str:
    """An assigned ISO 3166-1 alpha-2 code, upper case; user-assigned codes such as "XX" are refused."""
    if code not in iso_country_codes():
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country or region code")
    return code


IsoCountryCode = Annotated[str, AfterValidator(check_country_code)]
