"""A tiny, valid one-page PDF of text lines (Helvetica, WinAnsiEncoding), for the invoice PDF link.

Enough for a browser's PDF viewer and for a test to read the text back: each line is
one ``Tj`` in the page's uncompressed content stream.
"""

from __future__ import annotations


def _text(value: str) -> bytes:
    """A PDF string literal's content in WinAnsiEncoding (which has € and ×), with
    ``\\``, ``(`` and ``)`` escaped."""
    value = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return value.encode("cp1252", "replace")


def text_pdf(lines: list[str], title: str = "Invoice") -> bytes:
    """A one-page A4 PDF showing ``lines`` from the top."""
    commands = [b"BT", b"/F1 11 Tf", b"14 TL", b"56 780 Td"]
    for index, line in enumerate(lines):
        commands.append(b"(" + _text(line) + b") Tj" + (b" T*" if index < len(lines) - 1 else b""))
    commands.append(b"ET")
    stream = b"\n".join(commands)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Title (%s) /Producer (Stripe simulator) >>" % _text(title),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
