"""Privacy signals of a bid request: when any says so, the request is served without personal data.

Restricted means: no device id (so no audiences, no frequency capping by device, no device id in our tracking
URLs, in third-party macros or in stored events), and no age or gender targeting. The signals:

- `regs.coppa=1` (OpenRTB 2.6, 3.2.3);
- GDPR applies (`regs.gdpr=1`, the 2.5 `regs.ext.gdpr`, or the EU TCF v2 section, 2, among `regs.gpp_sid`) and
  the TCF v2 string (`user.consent`, the 2.5 `user.ext.consent`, or the GPP string's EU section) does not give
  our vendor id (setting `openrtb_tcf_vendor_id`) consent for purposes 1
  (store and access information on a device) and 4 (select personalised ads). Without a vendor id, no string
  can carry our consent. A publisher restriction on our vendor id for purpose 1 or 4 of type 0 (not allowed) or
  2 (legitimate interest required, so not our consent) withdraws it. The string is decoded with the `iab-tcf`
  library; one whose version field is not 2, or that ends before its last core field, gives no consent (the
  library would read the missing bits as set).
  Source: IAB Europe, TCF v2.2 Policies, Appendix A (purposes 1 and 4);
- `device.lmt=1` or `device.dnt=1` (OpenRTB 2.6, 3.2.18);
- a US opt-out: the US Privacy string (`regs.us_privacy`, or the 2.5 `regs.ext.us_privacy`) with `Y` in its
  third character (opted out of sale), or a GPP string (`regs.gpp`) whose applicable sections (`regs.gpp_sid`)
  include a US section (without `gpp_sid`, the sections the GPP header lists, for the EU section too). The US
  Privacy section (6) is read as above; the US national and state sections (7 and above) are not decoded here,
  so their presence is taken as an opt-out: the safe reading.
  Source: IAB Tech Lab, US Privacy String v1.0 (github.com/InteractiveAdvertisingBureau/USPrivacy, CCPA/
  "US Privacy String.md": version, explicit notice, opt-out sale, LSPA); Global Privacy Platform section
  specifications (github.com/InteractiveAdvertisingBureau/Global-Privacy-Platform, Sections/: 6 uspv1,
  7 usnat "registered as Section ID 7", 8 and above the US states).
"""

from __future__ import annotations

from dataclasses import dataclass

from iab_tcf import decode_v2

from adstack.serving.openrtb.model import BidRequest

_PURPOSES = (1, 4)
# Publisher restriction types that take away our legal basis, consent: 0 "purpose flatly not allowed by
# publisher", 2 "require legitimate interest" (instead of consent).
# Source: TCF v2 "Consent string and vendor list formats", core string, PubRestrictionEntry.
_REFUSING_RESTRICTIONS = frozenset({0, 2})
TCF_VERSION = 2  # Source: TCF v2 "Consent string and vendor list formats", core string, Version
EU_TCF_SECTION = 2  # GPP section "tcfeuv2": the EU's TCF v2 string
US_PRIVACY_SECTION = 6
FIRST_US_SECTION, LAST_US_SECTION = 6, 22


@dataclass(frozen=True, slots=True)
class Privacy:
    restricted: bool
    reason: str = ""


def privacy_of(request: BidRequest, *, vendor_id: int | None) -> Privacy:
    regs = request.regs
    if regs is not None and regs.coppa == 1:
        return Privacy(True, "coppa")
    device = request.device
    if device is not None and (device.lmt == 1 or device.dnt == 1):
        return Privacy(True, "lmt" if device.lmt == 1 else "dnt")
    gdpr = regs.gdpr if regs is not None and regs.gdpr is not None else (
        regs.ext.gdpr if regs is not None and regs.ext is not None else None)
    # Without `gpp_sid` the sections the GPP string itself lists are taken as applying: the safe reading.
    sections = (regs.gpp_sid or gpp_header_sections(regs.gpp or "")) if regs is not None else []
    eu_gpp = EU_TCF_SECTION in sections
    if gdpr == 1 or eu_gpp:
        user = request.user
        consent = (user.consent or (user.ext.consent if user.ext else None)) if user is not None else None
        # Under GPP the TC string is the EU section's: any section of the string that reads as one.
        gpp_sections = (regs.gpp or "").split("~")[1:] if regs is not None and eu_gpp else []
        if not (tcf_consents(consent, vendor_id) or any(tcf_consents(s, vendor_id) for s in gpp_sections[:32])):
            return Privacy(True, "gdpr")
    if regs is not None:
        us_privacy = regs.us_privacy or (regs.ext.us_privacy if regs.ext else None)
        if us_privacy and us_opted_out(us_privacy):
            return Privacy(True, "us_privacy")
        if regs.gpp and gpp_opted_out(regs.gpp, sections):
            return Privacy(True, "gpp")
    return Privacy(False)


def tcf_consents(consent: str | None, vendor_id: int | None) -> bool:
    """Whether a TCF v2 string gives `vendor_id` consent for the purposes we need; unreadable, cut short or of
    another version means no."""
    if not consent or vendor_id is None or len(consent) > 10_000:
        return False
    try:
        decoded = decode_v2(consent)
        if decoded.version != TCF_VERSION:
            return False
        # The library's bit reader reads past the end as empty, which its booleans take as true: a string that
        # ends before its last field (the publisher restrictions) is cut short, not a consent.
        reader = decoded._reader
        if reader._pointer > len(reader._consent):
            return False
        if not (decoded.is_vendor_allowed(vendor_id) and all(decoded.is_purpose_allowed(p) for p in _PURPOSES)):
            return False
        return not any(entry.purpose_id in _PURPOSES and entry.restriction_type in _REFUSING_RESTRICTIONS
                       and entry.is_in_range(vendor_id) for entry in decoded.pub_restriction_entries)
    except Exception:  # the library raises whatever its bit reader meets in a broken string
        return False


def us_opted_out(text: str) -> bool:
    """US Privacy string: version 1, then notice, opt-out of sale, LSPA; `Y` in the opt-out position."""
    return len(text) == 4 and text[0] == "1" and text[2].upper() == "Y"


_BASE64URL = {c: n for n, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
GPP_HEADER_TYPE = 3
MAX_GPP_HEADER = 256  # characters: a header lists a handful of sections


def gpp_header_sections(gpp: str) -> list[int]:
    """The section ids a GPP string's header lists; empty when the header cannot be read.

    Source: IAB Tech Lab, GPP "Consent String Specification", header: Type (6 bits, 3), Version (6 bits), Section
    IDs as a Range(Fibonacci): a 12-bit count, then per entry a range bit and Fibonacci-coded offsets from the
    previous id (a range's end from its start)."""
    header = gpp.split("~", 1)[0]
    if not header or len(header) > MAX_GPP_HEADER:
        return []
    try:
        bits = "".join(format(_BASE64URL[c], "06b") for c in header)
    except KeyError:
        return []
    if int(bits[:6] or "0", 2) != GPP_HEADER_TYPE or len(bits) < 24:
        return []
    position = 24
    count = int(bits[12:24], 2)

    def fibonacci() -> int:
        nonlocal position
        end = bits.find("11", position)
        if end < 0:
            raise ValueError("unterminated Fibonacci integer")
        value, low, high = 0, 1, 2
        for bit in bits[position:end + 1]:
            value += low if bit == "1" else 0
            low, high = high, low + high
        position = end + 2
        return value

    ids: list[int] = []
    last = 0
    try:
        for _ in range(count):
            if position >= len(bits):
                return []
            is_range = bits[position] == "1"
            position += 1
            start = last + fibonacci()
            last = start + fibonacci() if is_range else start
            ids.extend(range(start, min(last, start + 64) + 1))
    except ValueError:
        return []
    return ids


def gpp_opted_out(gpp: str, section_ids: list[int]) -> bool:
    us = [s for s in section_ids if FIRST_US_SECTION <= s <= LAST_US_SECTION]
    if not us:
        return False
    if us == [US_PRIVACY_SECTION]:
        # The GPP string is header~section~section..., sections in the order of gpp_sid's header; the US Privacy
        # section is the plain US Privacy string.
        return not any(len(p) == 4 and p[0] == "1" and not us_opted_out(p) for p in gpp.split("~")[1:])
    return True
