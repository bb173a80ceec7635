"""Checksums and structural rules that turn a pattern match into a finding (no I/O)."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter

# Lengths of the IBANs of the countries that issue them (ISO 13616 registry, common subset).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check that payment card numbers and Canadian SINs carry."""
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer_plausible(number: str) -> bool:
    """Length and issuer prefix (IIN) of the major card networks; Luhn alone passes 1 in 10."""
    n = len(number)
    if number[0] == "4":
        return n in (13, 16, 19)  # Visa
    two, four = int(number[:2]), int(number[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # American Express
    if number.startswith("6011") or two == 65 or 644 <= int(number[:3]) <= 649:
        return 16 <= n <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    if two in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return 14 <= n <= 19  # Diners Club
    if two == 62:
        return 16 <= n <= 19  # UnionPay
    return False


def card_valid(text: str) -> bool:
    number = digits_of(text)
    return 13 <= len(number) <= 19 and card_issuer_plausible(number) and luhn_valid(number)


def iban_valid(text: str) -> bool:
    """ISO 13616: known country, its length, and the mod-97 check equal to 1."""
    iban = "".join(text.split()).upper()
    if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def us_ssn_valid(text: str) -> bool:
    """Structural rules of a US Social Security number (areas 000, 666, 9xx never issued)."""
    d = digits_of(text)
    if len(d) != 9:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return d not in ("123456789", "078051120")  # the advertised sample numbers


_NINO_BAD_PREFIXES = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def uk_nino_valid(text: str) -> bool:
    """UK National Insurance number: two letters (not the reserved pairs), six digits, A-D."""
    s = "".join(text.split()).upper()
    return len(s) == 9 and s[:2] not in _NINO_BAD_PREFIXES and s[-1] in "ABCD"


def ca_sin_valid(text: str) -> bool:
    """Canadian Social Insurance number: nine digits with a Luhn check, not starting 0 or 8."""
    d = digits_of(text)
    return len(d) == 9 and d[0] not in "08" and luhn_valid(d)


def ip_valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def shannon_entropy(text: str) -> float:
    """Bits per character; random keys score above 3.5, words and identifiers lower."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """A credential-like value: long, mixed letters and digits, high entropy."""
    has_digit = any(ch.isdigit() for ch in token)
    has_alpha = any(ch.isalpha() for ch in token)
    return len(token) >= 16 and has_digit and has_alpha and shannon_entropy(token) >= 3.3
