"""Text normalization for CV text: mojibake repair (ftfy), Unicode NFC, bullet glyphs,
whitespace. Lines are kept: a CV section is a list of lines, and the models learn that."""

from __future__ import annotations

import re
import unicodedata

# Bullet glyphs people paste from Word, PDFs and LinkedIn; all become "- ".
_BULLET = re.compile(r"^[ \t]*[•◦▪▫●○■□‣⁃∙·►▶➢➤✓✔❖\-–—*][ \t]+", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str, fix_mojibake: bool = True) -> str:
    """Repair, NFC-normalize and tidy one text. ftfy's full pass is slow, so it runs only on
    text its badness check flags as mojibake; en dashes, € and accents alone are fine."""
    if fix_mojibake and not text.isascii():
        import ftfy
        from ftfy.badness import is_bad

        if is_bad(text):
            text = ftfy.fix_text(text, normalization="NFC")
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BULLET.sub("- ", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
